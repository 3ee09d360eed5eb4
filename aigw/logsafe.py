"""The process log never quotes a client's bytes: exceptions are logged by class name only.

aiohttp's server logs a malformed request with a traceback whose message quotes the request
line, `?key=...` included (and an exception message may quote a header value). Its logger is
replaced by `aigw.http`, whose filter keeps the exception's class and drops its text.
"""

from __future__ import annotations

import logging


class NoExceptionText(logging.Filter):
    """Replace a record's traceback with the exception's class name."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record; only its exception details go."""
        if record.exc_info:
            exc = record.exc_info[1]
            record.msg = f"{record.msg} ({type(exc).__name__})"
            record.exc_info = None
            record.exc_text = None
        return True


def http_logger() -> logging.Logger:
    """The logger handed to aiohttp's request handler (the filter is added once)."""
    log = logging.getLogger("aigw.http")
    if not any(isinstance(f, NoExceptionText) for f in log.filters):
        log.addFilter(NoExceptionText())
    return log
