"""The Dagster code location: assets, checks, jobs, sensors and resources, assembled."""


import dagster as dg

from lstm_assets.defs import assets
from lstm_assets.defs.resources import LstmSettings, default_paths

symbol_chain_job = dg.define_asset_job(
    "symbol_chain_job",
    selection=dg.AssetSelection.assets(
        assets.raw_features, assets.clean_frames, assets.sequence_tensors, assets.lstm_model,
        assets.evaluation_report,
    ),
    partitions_def=assets.symbols_partitions,
    description="Everything for one symbol: raw file -> clean -> sequences -> model -> report.",
)

leaderboard_job = dg.define_asset_job(
    "leaderboard_job", selection=dg.AssetSelection.assets(assets.leaderboard)
)

defs = dg.Definitions(
    assets=[
        assets.raw_features, assets.clean_frames, assets.sequence_tensors, assets.lstm_model,
        assets.evaluation_report, assets.leaderboard,
    ],
    asset_checks=[assets.beats_majority_baseline],
    jobs=[symbol_chain_job, leaderboard_job],
    resources={"settings": LstmSettings(), "paths": default_paths()},
)
