"""``lstm-assets run`` with several symbols at once, each run in its own worker process.

A fit of this model uses one CPU core (``Settings.num_threads``), so on a CPU machine
``lstm-assets run`` runs one symbol's chain per core at a time: ``jobs`` worker processes
(``spawn``, so no Dagster or torch state is shared), each executing ``symbol_chain_job`` for one
partition in-process on the same Dagster instance, as the daemon's run workers would. The
``gpu`` pool's limit (``instance.gpu_pool_limit``) is the same number, so the training steps do
not wait for each other. Each worker passes its run messages (the console logger's progress
sink, ``defs/console.py``) to the parent through a queue; the parent feeds them to
:class:`~lstm_assets.defs.console.RunProgress`, so the terminal shows every running symbol's
stages and epochs and one time-left estimate. Results are those of one run per symbol: each
run seeds its own training, so the models do not depend on how many ran at once.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_mod
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

_queue: Any = None
"""In a worker: where its run messages go (set by :func:`_init_worker`)."""
_job: Any = None


def _init_worker(messages: Any) -> None:
    global _queue
    from lstm_assets.defs import console

    _queue = messages
    console.set_sink(lambda text: messages.put(("msg", text)))


def _run_symbol(symbol: str, run_config: dict[str, Any]) -> tuple[bool, str]:
    """One symbol's chain, in a worker: (success, failure message)."""
    global _job
    import dagster as dg

    if _job is None:
        from lstm_assets.definitions import defs

        _job = defs.resolve_job_def("symbol_chain_job")
    _queue.put(("begin", symbol))
    with dg.DagsterInstance.get() as instance:
        res = _job.execute_in_process(partition_key=symbol, instance=instance,
                                      run_config=run_config, raise_on_error=False)
    return res.success, "" if res.success else failure_message(res)


def failure_message(res: Any) -> str:
    """Why a run failed, in one line: the first failed step's description or error."""
    for ev in res.all_events:
        if ev.is_step_failure and ev.step_failure_data and ev.step_failure_data.user_failure_data:
            return ev.step_failure_data.user_failure_data.description or "failed"
        if ev.is_step_failure and ev.step_failure_data and ev.step_failure_data.error:
            return ev.step_failure_data.error.message.strip().splitlines()[-1]
    return "failed (see the run in the UI)"


def run_in_workers(symbols: list[str], run_config: dict[str, Any], progress: Any,
                   jobs: int) -> dict[str, str]:
    """Each symbol's chain as one run, ``jobs`` at a time in worker processes; a line per
    finished symbol. Returns the failed symbols and why."""
    ctx = multiprocessing.get_context("spawn")
    messages = ctx.Queue()
    failed: dict[str, str] = {}
    started: dict[str, float] = {}
    finished = 0

    def drain() -> None:
        while True:
            try:
                kind, text = messages.get_nowait()
            except queue_mod.Empty:
                return
            if kind == "begin":
                started[text] = time.perf_counter()
                progress.begin(text)
            else:
                progress.message(text)

    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(messages,)) as pool:
        pending: dict[Future[tuple[bool, str]], str] = {
            pool.submit(_run_symbol, sym, run_config): sym for sym in symbols}
        try:
            while pending:
                done, _ = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                drain()
                for fut in done:
                    sym = pending.pop(fut)
                    try:
                        ok, msg = fut.result()
                    except BrokenProcessPool as exc:
                        ok, msg = False, f"its worker process died ({exc})"
                    if not ok:
                        failed[sym] = msg or "failed"
                    finished += 1
                    seconds = time.perf_counter() - started.get(sym, time.perf_counter())
                    progress.symbol_done(finished, sym, ok, seconds, failed.get(sym, ""))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    drain()
    return failed
