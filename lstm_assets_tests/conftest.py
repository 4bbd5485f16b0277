"""Shared fixtures: tiny settings and small demo data sets made once per session."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from lstm_assets.core.demo import DemoSpec, generate
from lstm_assets.core.settings import Settings

TINY = Settings(lookback=10, hidden_size=8, num_layers=1, max_epochs=2, batch_size=64,
                bootstrap_samples=50, device="cpu", num_threads=1)


@pytest.fixture
def tiny() -> Settings:
    return TINY


@pytest.fixture(scope="session")
def demo_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 signal-mode demo symbols x 4 years (one of them with defects)."""
    root = tmp_path_factory.mktemp("demo")
    generate(root / "raw", DemoSpec(symbols=3, years=4, seed=11, defect_share=0.34))
    return root / "raw"


@pytest.fixture(autouse=True)
def _project_env_restored():
    """The CLI exports its chosen folders (``LSTM_RAW_DIR``, ``LSTM_WAREHOUSE_DIR``,
    ``DAGSTER_HOME``) for the processes it starts; a test that calls it in-process must not
    leave them set for the tests after it."""
    keys = [k for k in os.environ if k.startswith(("LSTM_", "DAGSTER_"))]
    saved = {k: os.environ[k] for k in keys}
    yield
    for k in [k for k in os.environ if k.startswith(("LSTM_", "DAGSTER_"))]:
        if k not in saved:
            del os.environ[k]
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _fresh_definitions_load_context():
    """Dagster keeps process-wide definitions-load state (a load context and a defs-state
    storage) that can outlive a test's temporary instance and point at its deleted files; reset
    both so each test loads definitions on its own.

    First, collect garbage: without it, a full run can fail with "unable to open database
    file" on a ``/tmp/tmp...`` instance folder in the middle of a test whose own instance is
    open. The likely cause, not confirmed (no leaking object was found): an instance context
    left in a reference cycle by an earlier test exits when the cyclic collector happens to
    run, and its exit puts back the defs-state storage current when it was entered, maybe that
    of an instance whose folder is gone. Collected here, such an exit happens before the reset
    below, not inside a later test.
    """
    yield
    gc.collect()
    from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext
    from dagster._core.storage.defs_state import base

    DefinitionsLoadContext._instance = None  # noqa: SLF001
    base._current_storage.set(None)  # noqa: SLF001
