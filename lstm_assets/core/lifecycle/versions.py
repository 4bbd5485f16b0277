"""Model versions and which one serves: champion / challenger.

Every model a training run produces is kept under ``model_versions/<SYMBOL>/<VERSION>``, where
``VERSION`` is the first 16 hex digits of the SHA-256 of the model file's bytes (the same bytes
as the ``.safetensors`` file, so a version is its content). Beside it a ``.json`` record says what
it was trained on (the raw file's content hash, the sequence fingerprint, the settings, the code
version), its scores, and the promotion decision.

The serving model is ``lstm_model/<SYMBOL>.safetensors``: what evaluation, signals and the UI
read. A new model (the challenger) replaces it only when it is not significantly worse than the
serving one (the champion) on the most recent windows neither trained on
(:func:`challenger_decision`); otherwise the champion keeps serving and its files are not
rewritten. :func:`promote` rolls back or forward to any kept version, byte for byte.
:func:`prune` keeps the newest ``keep`` versions and never the serving one.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from lstm_assets.core.model import content_version, read_model_config_bytes, write_model
from lstm_assets.core.research.stats import newey_west_se
from lstm_assets.core.storage import (
    AnyPath,
    Warehouse,
    exists,
    read_bytes,
    read_json,
    remove,
    write_bytes,
    write_json,
)

VERSIONS_ASSET = "model_versions"


@lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of the package's Python sources (what a model was trained with)."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _folder(wh: Warehouse, symbol: str) -> AnyPath:
    # the symbol's serving path is validated by Warehouse (no path escapes): reuse its name
    return wh.base / VERSIONS_ASSET / wh.model(symbol).name[: -len(".safetensors")]


def version_path(wh: Warehouse, symbol: str, version: str, suffix: str = ".safetensors"
                 ) -> AnyPath:
    if not (len(version) == 16 and all(c in "0123456789abcdef" for c in version)):
        raise ValueError(f"not a model version: {version!r} (16 hex digits; "
                         "`lstm-assets models SYMBOL` lists them)")
    return _folder(wh, symbol) / f"{version}{suffix}"


def serving_version(wh: Warehouse, symbol: str) -> str | None:
    """The version of the serving model (None: the symbol has none)."""
    path = wh.model(symbol)
    return content_version(read_bytes(path)) if exists(path) else None


def save_version(wh: Warehouse, symbol: str, blob: bytes, record: dict[str, Any]) -> str:
    """Keep a model file's bytes and its record; returns the version."""
    version = content_version(blob)
    path = version_path(wh, symbol, version)
    if not exists(path):
        write_bytes(path, blob)
    write_json(version_path(wh, symbol, version, ".json"),
               {**record, "version": version, "symbol": symbol})
    return version


def _records(wh: Warehouse, symbol: str) -> list[dict[str, Any]]:
    """Every kept version's record, oldest first."""
    folder = _folder(wh, symbol)
    if not exists(folder):
        return []
    out = [read_json(path) for path in folder.glob("*.json")]
    return sorted(out, key=lambda r: (str(r.get("created_at")), str(r.get("version"))))


def list_versions(wh: Warehouse, symbol: str, serving: str | None = None
                  ) -> list[dict[str, Any]]:
    """Every kept version's record, oldest first, with ``serving`` set on the serving one
    (``serving``: its version when the caller knows it; else read from the serving file)."""
    records = _records(wh, symbol)
    if records and serving is None:
        serving = serving_version(wh, symbol)
    for rec in records:
        rec["serving"] = rec.get("version") == serving
    return records


def find_version(wh: Warehouse, symbol: str, fingerprint: str) -> dict[str, Any] | None:
    """The newest kept version trained on these inputs and settings (None: there is none)."""
    hits = [r for r in _records(wh, symbol) if r.get("fingerprint") == fingerprint]
    return hits[-1] if hits else None


def promote(wh: Warehouse, symbol: str, version: str, reason: str) -> dict[str, Any]:
    """Make a kept version the serving model (its bytes, unchanged); returns its record."""
    src = version_path(wh, symbol, version)
    if not exists(src):
        known = ", ".join(r["version"] for r in _records(wh, symbol))
        if not known:
            raise FileNotFoundError(f"{symbol} has no kept model versions in {wh.base}: an "
                                    "unknown symbol, or none trained there yet")
        raise FileNotFoundError(f"{symbol} has no model version {version} (kept: {known})")
    blob = read_bytes(src)
    if content_version(blob) != version:
        raise ValueError(f"{src}: its bytes do not hash to {version}; the file is damaged")
    record = read_json(version_path(wh, symbol, version, ".json"))
    write_model(wh.model(symbol), blob, read_model_config_bytes(blob))
    now = datetime.now(UTC).isoformat()
    record = {**record, "promoted_at": now,
              "promotions": [*record.get("promotions", []), {"at": now, "reason": reason}]}
    write_json(version_path(wh, symbol, version, ".json"), record)
    return record


def prune(wh: Warehouse, symbol: str, keep: int, serving: str | None = None) -> list[str]:
    """Remove all but the newest ``keep`` versions (never the serving one, ``serving`` when the
    caller knows it); returns the removed versions."""
    if keep <= 0:
        return []
    records = list_versions(wh, symbol, serving)
    removable = [r for r in records if not r["serving"]]
    n_remove = max(0, len(records) - keep)
    removed = []
    for rec in removable[:n_remove]:
        for suffix in (".safetensors", ".json"):
            remove(version_path(wh, symbol, rec["version"], suffix))
        removed.append(rec["version"])
    return removed


def challenger_decision(champion_loss: np.ndarray, challenger_loss: np.ndarray,
                        champion_correct: np.ndarray, challenger_correct: np.ndarray,
                        level: float) -> dict[str, Any]:
    """Is the challenger significantly worse than the champion on the same windows?

    The per-window log-loss difference (challenger minus champion) is tested for a mean above
    zero, one-sided, with a Newey-West standard error (neighbouring windows overlap). The
    challenger is promoted unless that p-value is below ``level`` (0: always promote). Both
    models' accuracy and log loss on those windows are returned beside the decision.
    """
    d = np.asarray(challenger_loss, np.float64) - np.asarray(champion_loss, np.float64)
    n = int(d.size)
    se, _ = newey_west_se(d) if n >= 2 else (float("nan"), 0)
    mean = float(d.mean()) if n else float("nan")
    t = mean / se if n >= 2 and se > 0 else float("nan")
    p = float(sps.norm.sf(t)) if np.isfinite(t) else (0.0 if n and mean > 0 else 1.0)
    worse = bool(level > 0 and n >= 2 and p < level)
    figures = {
        "windows": n, "level": level,
        "champion": {"log_loss": float(np.mean(champion_loss)) if n else None,
                     "accuracy": float(np.mean(champion_correct)) if n else None},
        "challenger": {"log_loss": float(np.mean(challenger_loss)) if n else None,
                       "accuracy": float(np.mean(challenger_correct)) if n else None},
        "log_loss_diff": mean, "log_loss_diff_se": float(se), "t": float(t),
        "p_worse": p,
    }
    if n < 2:
        reason = (f"only {n} window(s) that neither model trained on: too few to test, "
                  "the challenger is promoted")
    elif worse:
        reason = (f"challenger significantly worse than the serving model on the {n} most "
                  f"recent windows neither trained on: log loss "
                  f"{figures['challenger']['log_loss']:.4f} vs "
                  f"{figures['champion']['log_loss']:.4f}, accuracy "
                  f"{figures['challenger']['accuracy']:.1%} vs "
                  f"{figures['champion']['accuracy']:.1%} (one-sided p {p:.3g} < {level})")
    else:
        reason = (f"challenger not significantly worse on the {n} most recent windows neither "
                  f"trained on: log loss {figures['challenger']['log_loss']:.4f} vs "
                  f"{figures['champion']['log_loss']:.4f}, accuracy "
                  f"{figures['challenger']['accuracy']:.1%} vs "
                  f"{figures['champion']['accuracy']:.1%} (one-sided p {p:.3g}"
                  f"{'' if level > 0 else ', promotion test off'})")
    return {"promote": not worse, "reason": reason, **figures}
