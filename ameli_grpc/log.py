"""structlog set-up. Log lines carry no personal data: no NIR, password, code, token or
full email (SPEC §6). Exceptions are logged as their type and stack frames only,
because a driver's message can quote the query parameters (a NIR, an email).
"""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType
from typing import Any

import structlog

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def configure_logging(log_format: str = "console", level: int = logging.INFO) -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_exception,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def redact_exception(
    _logger: Any, _name: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Replace ``exc_info`` by the exception's type and frames, without its message."""
    exc_info = event.pop("exc_info", None)
    if exc_info:
        info = exc_info if isinstance(exc_info, tuple) else sys.exc_info()
        if info[0] is not None:
            event["exception"] = describe_exception(info)
    return event


def describe_exception(info: ExcInfo) -> str:
    kind, _error, tb = info
    frames = traceback.extract_tb(tb)[-8:]
    where = " <- ".join(
        f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames)
    )
    return f"{kind.__module__}.{kind.__qualname__} at {where}"
