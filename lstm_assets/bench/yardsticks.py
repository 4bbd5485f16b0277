"""The yardsticks the figures are read against: FLOPs per window (counted analytically), the
machine's measured matmul rate, and what the machine is and how busy it was."""

from __future__ import annotations

import math
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from lstm_assets.core.settings import CLASSES

DEFAULT_THREADS = torch.get_num_threads()
"""torch's own default thread count in this process (before the bench changes it)."""


def lstm_flops_per_sequence(n_features: int, hidden: int, layers: int, lookback: int,
                            n_classes: int = len(CLASSES), train: bool = True) -> float:
    """FLOPs to push one window through the LSTM classifier (x3 with the backward pass).

    Per time step and layer the gates cost ``2 * 4H * (I + H)`` (two matmuls, multiply-add = 2)
    plus the biases and ~10 element-wise ops per hidden unit; the head ``2 * H * C``. The
    backward pass costs about twice the forward (gradients for inputs and for weights).
    """
    per_step = 0.0
    width = n_features
    for _ in range(layers):
        per_step += 2 * 4 * hidden * (width + hidden) + 2 * 4 * hidden + 10 * hidden
        width = hidden
    fwd = lookback * per_step + 2 * hidden * n_classes
    return 3 * fwd if train else fwd


def matmul_gflops(n: int = 1024, repeats: int = 8, device: str = "cpu",
                  dtype: torch.dtype = torch.float32, seconds: float = 0.0) -> float:
    """Rate of an n x n x n matmul (the practical arithmetic limit), in GFLOP/s.

    ``seconds == 0``: the best of ``repeats`` single products (a burst). ``seconds > 0``: the
    mean rate of back-to-back products over at least that long (sustained), which a shared CPU
    sees the way it sees a training epoch, so the two compare fairly.
    """
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(2):
        a @ b
    sync()
    if seconds > 0:
        count, t0 = 0, time.perf_counter()
        while count < 2 or time.perf_counter() - t0 < seconds:
            a @ b
            sync()
            count += 1
        return count * 2 * n**3 / (time.perf_counter() - t0) / 1e9
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def cpu_bf16_supported() -> bool:
    """Whether oneDNN runs bf16 on this CPU (the CPU autocast figure is measured only then)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _cpu_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on, and how busy the machine was."""
    info: dict[str, Any] = {
        "cpu": _cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "platform": platform.platform(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover - psutil is a dependency
        pass
    return info


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        return None
