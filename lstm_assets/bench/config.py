"""What a bench run measures and how big: the sections, the keys the JSON always has, and
:class:`BenchSize`. No torch here, so the CLI can build its ``--help`` without loading it."""

from __future__ import annotations

from dataclasses import dataclass, field

from lstm_assets.core.settings import Settings

SECTIONS: tuple[str, ...] = ("training", "retrain", "data", "memory", "signals", "scaling",
                             "gpu")
"""The sections in the order they run."""

REQUIRED_KEYS: tuple[str, ...] = (
    "train_speedup_vs_reference", "train_val_loss", "reference_val_loss", "train_gflops",
    "machine_matmul_gflops", "warm_vs_cold_train_time_ratio", "warm_minus_cold_test_accuracy",
    "unchanged_symbol_train_seconds", "data_stages_seconds", "data_stages_symbols",
    "data_stages_years", "bare_read_scale_seconds", "data_stages_vs_bare_read",
    "peak_rss_ratio", "signals_seconds", "gpu_train_all_symbols_seconds",
)
"""Keys the JSON always has (a number, or null where not measured)."""

VAL_LOSS_TOLERANCE = 0.01
"""Validation losses within this (nats) count as equal: seeds move them by about as much."""


@dataclass(frozen=True)
class BenchSize:
    """How big each section runs. ``full()`` is the issue's size; ``quick()`` fits in ~2 min;
    ``tiny()`` in well under a minute (for tests and a check that the command works).

    ``settings`` are the project's settings for the CPU sections (device ``cpu``: the GPU
    section sets its own device, so a GPU box reports both)."""

    name: str
    settings: Settings = field(default_factory=Settings)
    train_years: int = 20
    train_epochs: int = 2
    rounds: int = 5
    retrain_symbols: int = 3
    retrain_years: int = 20
    data_symbols: int = 164
    data_years: int = 20
    scale_symbols: tuple[int, ...] = (1, 8, 32, 164)
    scale_years: tuple[int, ...] = (5, 10, 20)
    scale_years_symbols: int = 32
    memory_years: tuple[int, ...] = (20, 80)
    """The first is the reported symbol; a longer one gives the marginal (data-driven) growth."""
    memory_epochs: int = 1
    memory_reference: bool = True
    matmul_n: int = 1024
    matmul_seconds: float = 1.0
    gpu_symbols: int = 164
    gpu_years: int = 20
    gpu_epochs: int = 3
    gpu_large_batch: int = 1024
    gpu_group_size: int = 164

    @classmethod
    def full(cls, settings: Settings | None = None) -> BenchSize:
        return cls("full", settings or Settings(device="cpu"))

    @classmethod
    def quick(cls, settings: Settings | None = None) -> BenchSize:
        return cls("quick", settings or Settings(device="cpu"), train_years=5, train_epochs=1,
                   rounds=3, retrain_symbols=1, retrain_years=5, data_symbols=16, data_years=5,
                   scale_symbols=(1, 4, 16), scale_years=(3, 5), scale_years_symbols=4,
                   memory_years=(5, 20), matmul_n=512, matmul_seconds=0.5, gpu_symbols=16,
                   gpu_years=5, gpu_epochs=2, gpu_large_batch=512, gpu_group_size=16)

    @classmethod
    def tiny(cls) -> BenchSize:
        """A few seconds of work per section with a tiny model."""
        s = Settings(lookback=10, hidden_size=8, num_layers=1, max_epochs=3, batch_size=64,
                     bootstrap_samples=50, device="cpu", num_threads=1)
        return cls("tiny", s, train_years=3, train_epochs=1, rounds=1, retrain_symbols=1,
                   retrain_years=3, data_symbols=3, data_years=3, scale_symbols=(1, 3),
                   scale_years=(2, 3), scale_years_symbols=2, memory_years=(3,),
                   memory_reference=False,
                   matmul_n=256, matmul_seconds=0.1, gpu_symbols=3, gpu_years=3, gpu_epochs=1,
                   gpu_large_batch=256, gpu_group_size=3)

    @classmethod
    def named(cls, name: str) -> BenchSize:
        """``full``, ``quick`` or ``tiny``."""
        makers = {"full": cls.full, "quick": cls.quick, "tiny": cls.tiny}
        if name not in makers:
            raise ValueError(f"unknown bench size {name!r}; known: {', '.join(makers)}")
        return makers[name]()
