"""Mail and SMS written to a local directory instead of the network (one replica, dev).

Each message becomes one file, written atomically (temporary file, then
``os.replace``) so a reader never sees half a message. File names carry a UTC
timestamp and a random id, never the recipient. The files themselves hold the
code, as a delivered email would, and are created readable by their owner only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import structlog

from ameli_grpc.adapters.outages import map_outages
from ameli_grpc.adapters.security_code_email import build_security_code_email
from ameli_grpc.domain.masking import mask_email, mask_phone
from ameli_grpc.domain.messages import provisional_code_sms

_log = structlog.get_logger(__name__)

EMAIL_SUFFIX = ".eml"
SMS_SUFFIX = ".sms.txt"


def outbox_file_name(suffix: str, now: datetime | None = None) -> str:
    """``20230105T140500.123456Z-<32 hex>.eml``: sortable by time, no personal data."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex}{suffix}"


def _write_atomically(directory: Path, name: str, data: bytes) -> Path:
    """Blocking: write ``data`` as ``directory/name`` in one step (run it in a thread)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # A dot-prefixed temporary name: watchers of "*.eml" never pick up a partial file.
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        target = directory / name
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return target


async def _write(directory: Path, suffix: str, data: bytes, what: str) -> Path:
    name = outbox_file_name(suffix)
    with map_outages("outbox", OSError, describe=lambda error: f"cannot write the {what}"):
        return await asyncio.to_thread(_write_atomically, directory, name, data)


class OutboxMailer:
    """``Mailer`` writing each security-code email as an ``.eml`` file."""

    def __init__(self, outbox_dir: Path, sender: str) -> None:
        self._outbox_dir = Path(outbox_dir)
        self._sender = sender

    async def send_security_code(self, to: str, code: str, valid_minutes: int) -> None:
        message = build_security_code_email(self._sender, to, code, valid_minutes)
        path = await _write(self._outbox_dir, EMAIL_SUFFIX, message.as_bytes(), "email")
        _log.info(
            "security_code_email_sent",
            transport="outbox",
            to=mask_email(to),
            outbox_file=path.name,
        )


class OutboxSmsSender:
    """``SmsSender`` writing each provisional-code SMS as a ``.sms.txt`` file."""

    def __init__(self, outbox_dir: Path) -> None:
        self._outbox_dir = Path(outbox_dir)

    async def send_provisional_code(self, phone: str, code: str, valid_minutes: int) -> None:
        recipient = phone.strip()
        if not recipient or not recipient.isprintable():
            raise ValueError("the phone number is empty or holds control characters")
        text = provisional_code_sms(code, timedelta(minutes=valid_minutes))
        content = f"To: {recipient}\nDate: {format_datetime(datetime.now(UTC))}\n\n{text}\n"
        path = await _write(self._outbox_dir, SMS_SUFFIX, content.encode("utf-8"), "SMS")
        _log.info(
            "provisional_code_sms_sent",
            transport="outbox",
            to=mask_phone(recipient),
            outbox_file=path.name,
        )
