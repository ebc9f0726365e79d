"""structlog set-up. Log lines carry no personal data: no NIR, password, code, token or
full email (SPEC §6). Exceptions are logged as their type and stack frames only,
because a driver's message can quote the query parameters (a NIR, an email).

The standard library's ``logging`` (asyncio, the drivers, Alembic) goes through
the same renderer, so that ``AMELI_LOG_FORMAT=json`` means JSON lines only; it
stays at WARNING whatever ``AMELI_LOG_LEVEL`` says, since a driver's INFO or
DEBUG lines may quote the queries' parameters. gRPC's C core is silenced in
JSON mode before grpc is imported (``ameli_grpc/__init__.py``).
"""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType
from typing import Any

import structlog

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
LEVELS["error"] = logging.ERROR
_LIBRARY_LEVEL = logging.WARNING


def configure_logging(
    log_format: str = "console", level: int | str = logging.INFO, *, cache_loggers: bool = False
) -> None:
    """Our lines at ``level`` (a number, or ``AMELI_LOG_LEVEL``'s name), the libraries' from
    WARNING, all rendered alike: JSON lines when ``log_format`` is ``json``.

    ``cache_loggers``: each module's logger is built once, on its first line, rather than
    on every line (the server's hot path). Only for a process that will not configure
    logging again: a cached logger keeps this configuration (and defeats
    ``structlog.testing.capture_logs``)."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            redact_exception,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            LEVELS[level] if isinstance(level, str) else level
        ),
        # One write() per line (line and newline together): the workers share stderr, and
        # print()'s two writes could interleave two JSON lines into one.
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=cache_loggers,
    )
    _route_standard_logging(renderer, timestamper)


class _LibraryHandler(logging.Handler):
    """The root handler this module installs (replaced, not added, on each configuration).

    It writes to whatever ``sys.stderr`` is at the time, as structlog's lines do.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # logging must never break the caller: the standard fallback
            self.handleError(record)


def _route_standard_logging(
    renderer: structlog.typing.Processor, timestamper: structlog.typing.Processor
) -> None:
    handler = _LibraryHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                timestamper,
                redact_exception,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for installed in [h for h in root.handlers if isinstance(h, _LibraryHandler)]:
        root.removeHandler(installed)
    root.addHandler(handler)
    root.setLevel(_LIBRARY_LEVEL)


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
