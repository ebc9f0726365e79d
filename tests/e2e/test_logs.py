"""The operators' logs (SPEC §9): the per-call line, the start-up summary, JSON in json mode."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
import pytest
import structlog
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from ameli_grpc.config import Settings
from ameli_grpc.log import configure_logging
from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import ADVISOR_KEY, MOBILE_KEY, PORTAL_KEY, nir, refused
from tests.e2e.replicas import environment
from tests.support.mail import free_port, self_signed_tls
from tests.support.waiting import wait_for


async def test_the_rpc_line_tells_code_reason_caller_peer_and_worker(
    make_service: ServiceFactory,
) -> None:
    """One line per call: the gRPC code, the refusal's reason (empty on success), the caller's
    name, the gateway's address, the process id, the request id and the duration."""
    service = await make_service()
    await service.add_account(nir(1))
    with structlog.testing.capture_logs() as logs:
        await service.login(nir(1))
        await refused(service.login(nir(1), password="faux"))
    ok, wrong = [line for line in logs if line["event"] == "rpc"]

    assert (ok["code"], ok["reason"], ok["outcome"]) == ("OK", "", "OK")
    assert (wrong["code"], wrong["reason"]) == ("UNAUTHENTICATED", "INVALID_CREDENTIALS")
    for line in (ok, wrong):
        assert line["method"] == "CheckCredentials"
        assert line["caller"] == "test-portal"
        assert line["peer"].startswith(("ipv4:127.0.0.1:", "ipv6:[::1]:"))
        assert line["pid"] == os.getpid()
        assert line["request_id"]
        assert line["duration_ms"] >= 0


async def test_the_serving_line_summarises_the_adapters_without_secrets(
    make_service: ServiceFactory, backend: str, tmp_path: Path
) -> None:
    """At start, one line names the store, database, mailer, SMS, RFI, TLS, the callers of each
    role and the metrics address; no key and no password is in it."""
    metrics = f"127.0.0.1:{free_port()}"
    with structlog.testing.capture_logs() as logs:
        service = await make_service(metrics_listen=metrics)
    (serving,) = [line for line in logs if line["event"] == "serving"]
    settings = service.settings

    database = make_url(settings.database_url)
    if backend == "redis_postgres":
        assert serving["store"].startswith("redis://")
        assert serving["database"] == (
            f"postgresql://{database.host}:{database.port}/{database.database}"
        )
    else:
        assert serving["store"] == "memory"
        assert serving["database"] == f"sqlite:///{database.database}"
    assert serving["mailer"] == f"smtp://{settings.smtp_host}:{settings.smtp_port}"
    assert serving["sms"] == f"outbox:{tmp_path / 'outbox'}"
    assert serving["rfi"] == "sql"
    assert serving["tls"] == "off"
    assert serving["callers"] == {
        "portal": {"count": 1, "names": ["test-portal"]},
        "mobile": {"count": 1, "names": ["test-mobile"]},
        "advisor": {"count": 1, "names": ["advisor-1"]},
    }
    assert serving["metrics"] == metrics
    text = json.dumps(serving)
    for secret in (PORTAL_KEY, MOBILE_KEY, ADVISOR_KEY, settings.secret_key.get_secret_value()):
        assert secret not in text
    if database.password:
        assert database.password not in text


@pytest.mark.skipif(
    shutil.which("openssl") is None and os.environ.get("CI") != "true",
    reason="openssl is not installed",
)
async def test_json_mode_writes_json_lines_only(tmp_path: Path) -> None:
    """`serve` in json mode with TLS, met by cleartext and garbage clients (which gRPC's C core
    would report in plain text): every line on stderr is a JSON object."""
    self_signed_tls(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    env = environment(
        {
            "listen": address,
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'json.db'}",
            "secret_key_file": tmp_path / "secret.key",
            "outbox_dir": tmp_path / "outbox",
            "tls_cert_file": tmp_path / "cert.pem",
            "tls_key_file": tmp_path / "key.pem",
            "portal_api_keys": PORTAL_KEY,
            "log_format": "json",
            "allow_outbox": "true",
        }
    )
    env.pop("GRPC_VERBOSITY", None)
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(  # noqa: ASYNC220 - our own CLI; starting it is instant
            [sys.executable, "-m", "ameli_grpc.cli", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:

            def output() -> str:
                stderr.seek(0)
                return stderr.read().decode(errors="replace")

            await wait_for(lambda: '"event": "serving"' in output(), 30.0, what="serving")
            await _cleartext_and_garbage(address)
            await _one_tls_call(address, (tmp_path / "cert.pem").read_bytes())
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.to_thread(process.wait), 15.0)
        lines = output().splitlines()

    for line in lines:
        assert line.startswith("{"), line
        assert isinstance(json.loads(line), dict), line
    events = [json.loads(line)["event"] for line in lines]
    assert "serving" in events
    assert "rpc" in events


def test_the_log_level_filters_our_lines_and_libraries_stay_at_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """AMELI_LOG_LEVEL=warning drops our info lines; a library's INFO line (a driver could
    quote its parameters) is dropped even at debug, its warnings come out as JSON."""
    try:
        configure_logging("json", "warning")
        structlog.get_logger("test").info("dropped")
        structlog.get_logger("test").warning("kept")
        configure_logging("json", "debug")
        structlog.get_logger("test").debug("shown")
        logging.getLogger("sqlalchemy.engine").info("SELECT ... ('1800175120000',)")
        logging.getLogger("asyncio").warning("a library's %s", "warning")
    finally:
        structlog.reset_defaults()
        configure_logging()  # the console renderer for whatever logs after this test
        structlog.reset_defaults()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("kept", "warning"),
        ("shown", "debug"),
        ("a library's warning", "warning"),
    ]
    assert lines[2]["logger"] == "asyncio"


def test_a_bad_log_level_is_refused() -> None:
    """AMELI_LOG_LEVEL takes debug, info, warning or error, in any case."""
    assert Settings(log_level="WARNING").log_level == "warning"
    with pytest.raises(ValidationError, match="log_level"):
        Settings(log_level="loud")


async def _cleartext_and_garbage(address: str) -> None:
    """A gateway that forgot TLS, then bytes that are not even HTTP/2."""
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await auth_pb2_grpc.AuthServiceStub(channel).GetLockStatus(
                auth_pb2.GetLockStatusRequest(nir=nir(1)), timeout=2
            )
    host, port = address.rsplit(":", 1)
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()


async def _one_tls_call(address: str, cert: bytes) -> None:
    roots = grpc.ssl_channel_credentials(cert)
    async with grpc.aio.secure_channel(address, roots) as channel:
        await auth_pb2_grpc.AuthServiceStub(channel).GetLockStatus(
            auth_pb2.GetLockStatusRequest(nir=nir(1)),
            metadata=(("authorization", f"Bearer {PORTAL_KEY}"),),
        )
