"""Jobs: the per-symbol chain, the cross-symbol assets."""

from __future__ import annotations

import warnings

import dagster as dg

from lstm_assets.defs.assets import SYMBOL_ASSETS, symbols_partitions

# The chain mixes two backfill policies on purpose (see defs/assets.py); Dagster warns about it
# whenever it resolves the job. Asset backfills use each asset's own policy.
warnings.filterwarnings("ignore", message=r"Asset job .* varying BackfillPolicies")

symbol_chain_job = dg.define_asset_job(
    "symbol_chain_job",
    selection=dg.AssetSelection.assets(*SYMBOL_ASSETS),
    partitions_def=symbols_partitions,
    description="Everything for one symbol (or a range of symbols): raw file -> clean -> "
                "sequences -> model (cold, warm or skipped) -> report, with the data checks.",
)

leaderboard_job = dg.define_asset_job(
    "leaderboard_job", selection=dg.AssetSelection.assets("leaderboard"),
    description="The cross-symbol leaderboard.",
)

signals_job = dg.define_asset_job(
    "signals_job", selection=dg.AssetSelection.assets("latest_signals", "signal_outcomes"),
    description="Next-day signals of every symbol that has a model, then the live scorecard of "
                "past signals.",
)
