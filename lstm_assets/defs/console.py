"""The runs' console logger: Dagster's default one, less the stack traces of ``dg.Failure``;
and the progress ``lstm-assets run`` shows (:class:`RunProgress`), fed by that logger.

This project raises ``dg.Failure`` only after it has said why: an input error logs its file,
problem and fix, an unexpected error logs its own traceback at ERROR (``defs/ranges.py``). The
Failure's stack trace (Dagster's internals down to that ``raise``) adds ~20 lines to the console
per failed step and again for the run, and tells the reader nothing. So on the console a Failure
is one line, its description, without its stack trace; the run's event log (the UI) keeps
everything. Any other error prints in full.

While a :class:`RunProgress` is open (``lstm-assets run`` runs its jobs in-process), the logger
also passes the text of every INFO message to it: the per-stage ``[SYM] <asset> ok`` lines of
``defs/ranges.py`` and the epoch lines of the model step (``defs/assets.py``); the console itself
still prints only what its ``log_level`` lets through.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from typing import IO, Any

import dagster as dg

FAILURE_MARK = "dagster._core.definitions.events.Failure: "
STACK_MARK = "\n\nStack Trace:"
DATA_VERSION_MISMATCH = "Data version mismatch for asset"
"""Dagster warns so when runs of several partitions of one asset go on at once (``lstm-assets
run`` with one symbol per core): the step compares its partition's data version with another
partition's. Nothing is wrong (each partition's version is recorded with its materialization),
so the console leaves it out; the run's event log in the UI keeps it."""


class FailureWithoutStack(logging.Filter):
    """Cut the stack trace from a record whose error is a ``dg.Failure``; drop the data version
    warning of concurrent partitions (:data:`DATA_VERSION_MISMATCH`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if DATA_VERSION_MISMATCH in msg:
            return False
        if FAILURE_MARK in msg and STACK_MARK in msg:
            head = msg.split(STACK_MARK, 1)[0].replace("\n\n" + FAILURE_MARK, " ")
            record.msg, record.args = head, ()
        return True


@dg.logger(
    config_schema=dg.colored_console_logger.config_schema.as_field(),
    description="Dagster's colored console logger; dg.Failure lines without a stack trace.",
)
def console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    log = dg.colored_console_logger.logger_fn(init_context)  # a new logger each time
    for handler in log.handlers:
        handler.addFilter(FailureWithoutStack())
    _attach_sink(log)
    return log


# ---- progress of `lstm-assets run` -------------------------------------------------------------

STAGE_SHARE = {"raw_features": 0.02, "clean_frames": 0.03, "sequence_tensors": 0.02,
               "lstm_model": 0.83, "evaluation_report": 0.10}
"""Each stage's rough share of a symbol's time (training dominates), for the time-left estimate."""
DATA_SHARE = STAGE_SHARE["raw_features"] + STAGE_SHARE["clean_frames"] + STAGE_SHARE[
    "sequence_tensors"]

_STAGE_OK = re.compile(r"^\[(?P<sym>[^\]]+)\] (?P<stage>\w+) ok \(")
_EPOCH = re.compile(r"^\[(?P<sym>[^\]]+)\] epoch (?P<epoch>\d+):.*?val_acc (?P<acc>[\d.]+)")
_GROUP_EPOCH = re.compile(r"^group of (?P<n>\d+): epoch (?P<epoch>\d+) .*?(?P<left>\d+) still "
                          r"training")

_sink: Callable[[str], None] | None = None
"""Where the console logger also sends each message's text (INFO and up) while a
:class:`RunProgress` is open; None otherwise (the logger then is Dagster's, unchanged)."""


class _SinkHandler(logging.Handler):
    """Passes the original text of each run message to the progress sink."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        super().__init__(level=logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        try:
            self.sink(str(meta.get("orig_message") or record.getMessage()))
        except Exception:  # noqa: BLE001 - progress display never fails a run
            self.handleError(record)


def set_sink(sink: Callable[[str], None] | None) -> None:
    """Where the console logger sends each INFO message's text from now on (None: nowhere).
    :class:`RunProgress` sets itself; a worker of ``run_workers`` sets its queue to the parent."""
    global _sink
    _sink = sink


def _attach_sink(log: logging.Logger) -> None:
    """With a sink open, INFO messages reach it; the console handlers keep their own level."""
    if _sink is None:
        return
    level = log.level
    for handler in log.handlers:
        handler.setLevel(max(handler.level, level))
    log.setLevel(min(level, logging.INFO))
    log.addHandler(_SinkHandler(_sink))


def format_seconds(seconds: float) -> str:
    """``45s``, ``8m05s``, ``1h02m``: a duration as the progress lines show it."""
    s = max(int(round(seconds)), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class RunProgress:
    """What ``lstm-assets run`` shows while it works: the stage and symbol running, epochs as
    they go, and an estimate of the time left.

    On a terminal, a tqdm bar over the symbols (advanced by each stage's rough share of a
    symbol's time, :data:`STAGE_SHARE`, and by epochs within training) with the running
    symbol, stage and epoch beside it. Elsewhere (a CI log) plain lines: one per finished
    symbol with the time left, and while a symbol trains an epoch line at most every
    ``every_s`` seconds. Messages come from the run's console logger (the per-stage and
    per-epoch lines the steps log at INFO) while the progress is open (``with``).
    """

    def __init__(self, symbols: list[str], *, expected_epochs: int, file: IO[str] | None = None,
                 tty: bool | None = None, every_s: float = 15.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.symbols = list(symbols)
        self.expected_epochs = max(1, expected_epochs)
        self.file = file if file is not None else sys.stdout
        self.tty = self.file.isatty() if tty is None else tty
        self.every_s, self.clock = every_s, clock
        self.done: dict[str, float] = dict.fromkeys(self.symbols, 0.0)
        self.partial: dict[str, float] = dict.fromkeys(self.symbols, 0.0)
        self.current, self.stage, self.epoch = "", "", ""
        self.t0 = self.last_line = clock()
        self.bar: Any = None

    def __enter__(self) -> RunProgress:
        from tqdm import tqdm

        if self.tty:
            self.bar = tqdm(total=len(self.symbols), file=self.file, smoothing=0.0,
                            unit="symbol", dynamic_ncols=True,
                            bar_format="{l_bar}{bar:24}| {n:.1f}/{total} symbols "
                                       "[{elapsed}<{remaining}]{postfix}")
        set_sink(self.message)
        return self

    def __exit__(self, *exc: object) -> None:
        set_sink(None)
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # ---- what is known ---------------------------------------------------------------------

    def fraction(self) -> float:
        """Work done, in symbols (0 .. number of symbols)."""
        return sum(min(1.0, self.done[s] + self.partial[s]) for s in self.symbols)

    def seconds_left(self) -> float | None:
        """Elapsed time x work left / work done; None until some work is done."""
        done = self.fraction()
        if done < 0.02:
            return None
        return (self.clock() - self.t0) * (len(self.symbols) - done) / done

    def eta_text(self) -> str:
        left = self.seconds_left()
        return "time left unknown yet" if left is None else f"about {format_seconds(left)} left"

    # ---- events ----------------------------------------------------------------------------

    def begin(self, symbol: str, stage: str = "raw_features") -> None:
        """A run for ``symbol`` starts (at ``stage``)."""
        self.current, self.stage, self.epoch = symbol, stage, ""
        self._refresh()

    def message(self, text: str) -> None:
        """A run message (from the console logger): stage done, an epoch, a group's epoch."""
        if m := _STAGE_OK.match(text):
            self._stage_done(m["sym"], m["stage"])
        elif m := _EPOCH.match(text):
            self._epoch(m["sym"], int(m["epoch"]), f"epoch {m['epoch']} val_acc {m['acc']}")
        elif m := _GROUP_EPOCH.match(text):
            for sym in self.symbols:  # those whose data is done and model is not
                if DATA_SHARE - 1e-9 <= self.done[sym] < DATA_SHARE + 1e-9:
                    self._epoch(sym, int(m["epoch"]), "")
            self.current, self.stage = f"{m['n']} symbols", "lstm_model"
            self.epoch = f"epoch {m['epoch']}, {m['left']} still training"
            self._plain_epoch_line(f"models together: epoch {m['epoch']}, {m['left']} of "
                                   f"{m['n']} still training")
            self._refresh()

    def symbol_done(self, index: int, symbol: str, ok: bool, seconds: float,
                    error: str = "") -> None:
        """A symbol's run ended: its line, with the time left."""
        if symbol in self.done:
            self.done[symbol], self.partial[symbol] = 1.0, 0.0
        left = f"; {self.eta_text()}" if index < len(self.symbols) else ""
        head = f"[{index}/{len(self.symbols)}] {symbol}:"
        self.line(f"{head} ok ({seconds:.0f}s{left})" if ok
                  else f"{head} FAILED ({seconds:.0f}s{left}): {error}")
        self._refresh()

    def line(self, text: str) -> None:
        """A line of output that stays (above the bar on a terminal)."""
        self.last_line = self.clock()
        if self.bar is not None:
            self.bar.write(text, file=self.file)
        else:
            print(text, file=self.file, flush=True)

    # ---- internals -------------------------------------------------------------------------

    def _stage_done(self, sym: str, stage: str) -> None:
        if sym not in self.done or stage not in STAGE_SHARE:
            return
        self.done[sym] += STAGE_SHARE[stage]
        if stage == "lstm_model":
            self.partial[sym] = 0.0
        order = list(STAGE_SHARE)
        nxt = order.index(stage) + 1
        self.current, self.stage, self.epoch = sym, order[nxt] if nxt < len(order) else "", ""
        self._refresh()

    def _epoch(self, sym: str, epoch: int, text: str) -> None:
        if sym not in self.partial:
            return
        share = STAGE_SHARE["lstm_model"]
        self.partial[sym] = share * min(0.95, epoch / max(self.expected_epochs, epoch + 1))
        if text:
            self.current, self.stage, self.epoch = sym, "lstm_model", text
            self._plain_epoch_line(f"  {sym} lstm_model: {text}; {self.eta_text()}")
            self._refresh()

    def _plain_epoch_line(self, text: str) -> None:
        if self.bar is None and self.clock() - self.last_line >= self.every_s:
            self.line(text)

    def _refresh(self) -> None:
        if self.bar is None:
            return
        self.bar.update(self.fraction() - self.bar.n)
        what = " ".join(x for x in (self.current, self.stage, self.epoch) if x)
        self.bar.set_postfix_str(what, refresh=True)
