"""The core never imports dagster (a GPU box runs it without dagster installed)."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import lstm_assets.core

CORE = Path(lstm_assets.core.__file__).parent


def test_core_sources_do_not_import_dagster() -> None:
    for f in sorted(CORE.glob("*.py")):
        text = f.read_text()
        assert not re.search(r"^\s*(import|from)\s+dagster", text, re.M), f


def test_importing_every_core_module_loads_no_dagster() -> None:
    mods = [f"lstm_assets.core.{m.name}" for m in pkgutil.iter_modules([str(CORE)])]
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "assert 'dagster' not in sys.modules, [m for m in sys.modules if 'dagster' in m]\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
