"""The Dagster layer: thin assets over ``lstm_assets.core``."""
