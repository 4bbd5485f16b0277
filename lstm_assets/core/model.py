"""The LSTM classifier, and saving/loading it without pickle.

A saved model is one ``.safetensors`` file: the weights, plus a JSON config in the safetensors
header (feature list, scaler mean/scale, label rule, lookback, architecture, library versions,
training summary). It is written atomically as one file, so a reader sees the old model or the
new one, never a mix; loading it can never run code. A ``.json`` copy of the config sits beside it
for people.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import load as load_bytes
from safetensors.torch import save
from torch import nn

from lstm_assets.core.sequences import CLIP
from lstm_assets.core.settings import CLASSES
from lstm_assets.core.storage import local_file, read_bytes, write_bytes, write_json


class LSTMClassifier(nn.Module):
    """Stacked LSTM over a window; the last step's hidden state -> dropout -> linear -> logits."""

    input_weight_key = "lstm.weight_ih_l0"
    """The first layer's input weights (gates x hidden, features): the group lasso's target."""

    def __init__(self, n_features: int, hidden_size: int = 128, num_layers: int = 2,
                 dropout: float = 0.2, n_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden_size, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(self.drop(out[:, -1]))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def library_versions() -> dict[str, str]:
    out = {}
    for pkg in ("lstm_assets", "torch", "numpy", "pandas", "scikit-learn", "pyarrow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def model_bytes(state: dict[str, torch.Tensor], config: dict[str, Any]) -> bytes:
    """The model file's bytes: safetensors weights with ``config`` in the header."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    return save(tensors, metadata={"config": json.dumps(config)})


def save_model(path: Path, state: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    write_model(path, model_bytes(state, config), config)


def write_model(path: Path, blob: bytes, config: dict[str, Any]) -> None:
    """Write a model file's bytes and its readable ``.json`` config beside it (both atomic)."""
    write_bytes(path, blob)
    write_json(path.with_suffix(".json"), config)


def read_model_config(path: Path) -> dict[str, Any]:
    with local_file(path) as local, safe_open(str(local), framework="pt") as fh:
        meta = fh.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path}: not an lstm_assets model (no config in the header)")
    return json.loads(meta["config"])


def content_version(blob: bytes) -> str:
    """A model file's version: the first 16 hex digits of its bytes' SHA-256."""
    return hashlib.sha256(blob).hexdigest()[:16]


def read_model_config_bytes(blob: bytes) -> dict[str, Any]:
    """The config in a model file's bytes (the safetensors header: 8-byte length, then JSON)."""
    n = int.from_bytes(blob[:8], "little")
    meta = json.loads(blob[8:8 + n]).get("__metadata__") or {}
    if "config" not in meta:
        raise ValueError("not an lstm_assets model (no config in the header)")
    return json.loads(meta["config"])


@dataclass
class LoadedModel:
    """A model read back from disk with everything needed to predict from raw features."""

    net: LSTMClassifier
    config: dict[str, Any]
    version: str = ""
    """The model file's content version (:func:`content_version` of its bytes)."""

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> LoadedModel:
        blob = read_bytes(path)  # one read (one download when the model is in a store)
        config = read_model_config_bytes(blob)
        state = load_bytes(blob)
        arch = config["architecture"]
        net = LSTMClassifier(len(config["features"]), arch["hidden_size"], arch["num_layers"],
                             arch["dropout"])
        net.load_state_dict(state)
        net.to(device).eval()
        return cls(net, config, content_version(blob))

    @property
    def lookback(self) -> int:
        return int(self.config["lookback"])

    def scale(self, frame: pd.DataFrame) -> np.ndarray:
        """Scale a clean frame's features with the scaler stored in the model."""
        raw = frame[self.config["features"]].to_numpy(dtype=np.float64)
        mean = np.asarray(self.config["scaler"]["mean"])
        scale = np.asarray(self.config["scaler"]["scale"])
        return np.clip((raw - mean) / scale, -CLIP, CLIP).astype(np.float32)

    def predict_proba(self, X: np.ndarray, end_rows: np.ndarray) -> np.ndarray:
        return predict_proba(self.net, X, end_rows, self.lookback)


@torch.no_grad()
def predict_proba(net: nn.Module, X: np.ndarray | torch.Tensor, end_rows: np.ndarray,
                  lookback: int, chunk: int = 4096) -> np.ndarray:
    """Class probabilities for the windows ending at ``end_rows`` of the scaled matrix ``X``."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    Xt = torch.as_tensor(X, device=device)
    offsets = torch.arange(-lookback + 1, 1, device=device)
    rows = torch.as_tensor(np.asarray(end_rows, dtype=np.int64), device=device)
    out = []
    for i in range(0, len(rows), chunk):
        idx = rows[i:i + chunk]
        out.append(torch.softmax(net(Xt[idx[:, None] + offsets]).float(), dim=1))
    net.train(was_training)
    if not out:
        return np.zeros((0, len(CLASSES)), dtype=np.float32)
    return torch.cat(out).cpu().numpy()
