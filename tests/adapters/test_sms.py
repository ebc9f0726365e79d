"""The provisional-code SMS of the advisor reset, written to the outbox."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ameli_grpc.adapters.outbox import OutboxSmsSender
from ameli_grpc.domain.errors import DependencyUnavailable
from ameli_grpc.domain.messages import provisional_code_sms
from tests.support.mail import files_in

PHONE = "06 12 34 56 78"
CODE = "K7P2Q9XW"


async def test_sms_is_written_as_a_text_file(tmp_path: Path) -> None:
    """The SMS lands in its own .sms.txt file with the recipient, the code and its lifetime."""
    directory = tmp_path / "outbox"
    await OutboxSmsSender(directory).send_provisional_code(PHONE, CODE, 60)

    (written,) = files_in(directory)
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{32}\.sms\.txt", written.name)
    content = written.read_text(encoding="utf-8")
    assert content.startswith(f"To: {PHONE}\n")
    assert provisional_code_sms(CODE, timedelta(minutes=60)) in content
    assert "code provisoire" in content
    assert "60 minutes" in content


def test_sms_text_fits_one_sms() -> None:
    """The SMS text fits in a single 160-character SMS and says "minute" for one."""
    assert len(provisional_code_sms("A" * 12, timedelta(minutes=600))) <= 160
    assert "Valable 1 minute," in provisional_code_sms(CODE, timedelta(minutes=1))


async def test_sms_log_shows_the_masked_phone_only(tmp_path: Path) -> None:
    """The SMS is logged with the masked phone and the file name, never the code or the number."""
    with capture_logs() as logs:
        await OutboxSmsSender(tmp_path).send_provisional_code(PHONE, CODE, 60)

    (written,) = files_in(tmp_path)
    assert len(logs) == 1
    assert logs[0]["to"] == "06******78"
    assert logs[0]["outbox_file"] == written.name
    for secret in (CODE, PHONE, "0612345678"):
        assert secret not in repr(logs)


async def test_sms_outbox_that_cannot_write_is_unavailable(tmp_path: Path) -> None:
    """An SMS outbox that cannot be written raises DependencyUnavailable."""
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the directory should be")

    with pytest.raises(DependencyUnavailable) as raised:
        await OutboxSmsSender(blocker).send_provisional_code(PHONE, CODE, 60)

    assert isinstance(raised.value.__cause__, OSError)


@pytest.mark.parametrize("phone", ["", "   ", "0612345678\nTo: 0700000000"])
async def test_malformed_phone_is_refused(tmp_path: Path, phone: str) -> None:
    """An empty phone number or one holding a line break is refused before anything is written."""
    with pytest.raises(ValueError, match="phone"):
        await OutboxSmsSender(tmp_path).send_provisional_code(phone, CODE, 60)

    assert files_in(tmp_path) == []
