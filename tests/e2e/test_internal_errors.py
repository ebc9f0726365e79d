"""An unexpected failure is INTERNAL for the caller, with nothing of its cause; serving goes on."""

from __future__ import annotations

import grpc
import pytest
import structlog
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ameli_grpc.log import configure_logging
from tests.e2e.harness import ServiceUnderTest, nir

SECRET_DETAIL = "boom: password=hunter2 nir=180017511200169"


async def test_a_bug_is_internal_without_internals(
    service: ServiceUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crashing adapter gives INTERNAL with a generic French message, then the server serves."""
    await service.add_account(nir(101))
    assert service.container is not None

    async def crash(*_args: object) -> bool:
        raise RuntimeError(SECRET_DETAIL)

    monkeypatch.setattr(service.container.ports.hasher, "verify", crash)
    with (
        structlog.testing.capture_logs() as logs,
        pytest.raises(grpc.aio.AioRpcError) as raised,
    ):
        await service.login(nir(101))
    error = raised.value
    assert error.code() == grpc.StatusCode.INTERNAL
    # from_call reads only code(), details() and trailing_metadata(), which an AioRpcError has;
    # its stub asks for a synchronous grpc.Call.
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    message = error_details_pb2.LocalizedMessage()
    assert status.details[0].Unpack(message)
    assert message.message == (
        "Une erreur technique est survenue. Merci de réessayer dans quelques instants."
    )
    everything_sent = f"{error.details()} {error.trailing_metadata()}"
    assert "hunter2" not in everything_sent
    assert "RuntimeError" not in everything_sent
    assert any(entry["event"] == "unexpected_error" for entry in logs)

    monkeypatch.undo()
    assert (await service.login(nir(101))).WhichOneof("result") == "code_required"


def test_logged_exceptions_keep_their_type_and_frames_but_not_their_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A driver's message may quote a NIR or an email: the log keeps only type and frames."""
    configure_logging("json")
    try:
        try:
            raise ValueError(SECRET_DETAIL)
        except ValueError:
            structlog.get_logger("test").exception("unexpected_error")
    finally:
        structlog.reset_defaults()
    line = capsys.readouterr().err
    assert "builtins.ValueError at" in line
    assert "test_internal_errors.py" in line
    assert "hunter2" not in line
    assert "180017511200169" not in line
