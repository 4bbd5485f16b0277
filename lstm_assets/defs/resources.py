"""Resources: pipeline settings (built from the core dataclass) and where files live."""

from __future__ import annotations

import dataclasses
from typing import Any

import dagster as dg
import pydantic

from lstm_assets.core.config import RAW_DIR, TRUTH_DIR, WAREHOUSE_DIR, ProjectConfig
from lstm_assets.core.settings import Settings
from lstm_assets.core.stages import Layout


def _settings_fields() -> dict[str, Any]:
    hints = {f.name: f.type for f in dataclasses.fields(Settings)}
    types = {"int": int, "float": float, "str": str, "bool": bool}
    return {name: (types[str(t)], f.default)
            for name, t, f in zip(hints, hints.values(), dataclasses.fields(Settings), strict=True)}


# One config class for every knob, with the core's defaults (so a default is written once).
# Set any of them in the launchpad under resources.settings.config, e.g. max_epochs: 5.
_SettingsBase = pydantic.create_model(  # type: ignore[call-overload]
    "LstmSettingsBase", __base__=dg.ConfigurableResource, **_settings_fields()
)


class LstmSettings(_SettingsBase):  # type: ignore[misc, valid-type]
    """Every pipeline knob (labels, cleaning, split, model, training, evaluation)."""

    def to_core(self) -> Settings:
        return Settings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Settings)})


class PathsResource(dg.ConfigurableResource):
    """Folders: raw input files, the artifact warehouse, and the demo generator's ground truth.

    Defaults come from LSTM_RAW_DIR / LSTM_WAREHOUSE_DIR / LSTM_TRUTH_DIR, else ``data/...``
    relative to the working directory (the project root when started from the README).
    """

    raw_dir: str = RAW_DIR
    warehouse_dir: str = WAREHOUSE_DIR
    truth_dir: str = TRUTH_DIR

    def layout(self) -> Layout:
        return Layout.from_dirs(self.raw_dir, self.warehouse_dir, self.truth_dir)


def default_paths() -> PathsResource:
    """The folders from LSTM_RAW_DIR / LSTM_WAREHOUSE_DIR / LSTM_TRUTH_DIR, read now."""
    cfg = ProjectConfig.from_env()
    return PathsResource(raw_dir=cfg.raw_dir, warehouse_dir=cfg.warehouse_dir,
                         truth_dir=cfg.truth_dir)


def settings_from_env() -> LstmSettings:
    """The default settings, with overrides from ``LSTM_SETTINGS`` (JSON), e.g.
    ``LSTM_SETTINGS='{"max_epochs": 5, "device": "cpu"}'`` for every run of a ``dagster dev``;
    the variable is read now and checked by ``core.config.parse_settings``. Launchpad config
    (``resources.settings.config``) still overrides per run."""
    return LstmSettings(**ProjectConfig.from_env().settings)
