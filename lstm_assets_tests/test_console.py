"""The runs' console logger cuts the stack trace of a dg.Failure only; other errors print whole."""

from __future__ import annotations

import logging

from lstm_assets.defs.console import FailureWithoutStack

STACK = '\n\nStack Trace:\n  File "x.py", line 1, in f\n    raise Thing\n'


def _filtered(msg: str) -> str:
    record = logging.LogRecord("dagster", logging.ERROR, __file__, 1, msg, None, None)
    assert FailureWithoutStack().filter(record)
    return record.getMessage()


def test_failure_line_loses_its_stack_trace_only() -> None:
    failure = ('j - run - STEP_FAILURE - Execution of step "symbol_data" failed.\n\n'
               "dagster._core.definitions.events.Failure: [BAD] data/raw/BAD.csv: the close "
               "column holds text")
    assert _filtered(failure + STACK) == ('j - run - STEP_FAILURE - Execution of step '
                                          '"symbol_data" failed. [BAD] data/raw/BAD.csv: the '
                                          'close column holds text')
    bug = 'j - run - STEP_FAILURE - Execution of step "x" failed.\n\nValueError: boom' + STACK
    assert _filtered(bug) == bug  # an unexpected error keeps its stack trace
    assert _filtered("[SYN001] raw_features ok (0.1 s)") == "[SYN001] raw_features ok (0.1 s)"
