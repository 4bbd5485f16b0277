"""The runs' console logger: Dagster's default one, less the stack traces of ``dg.Failure``.

This project raises ``dg.Failure`` only after it has said why: an input error logs its file,
problem and fix, an unexpected error logs its own traceback at ERROR (``defs/ranges.py``). The
Failure's stack trace (Dagster's internals down to that ``raise``) adds ~20 lines to the console
per failed step and again for the run, and tells the reader nothing. So on the console a Failure
is one line, its description, without its stack trace; the run's event log (the UI) keeps
everything. Any other error prints in full.
"""

from __future__ import annotations

import logging

import dagster as dg

FAILURE_MARK = "dagster._core.definitions.events.Failure: "
STACK_MARK = "\n\nStack Trace:"


class FailureWithoutStack(logging.Filter):
    """Cut the stack trace from a record whose error is a ``dg.Failure``."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
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
    return log
