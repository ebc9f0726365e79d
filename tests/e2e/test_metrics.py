"""Prometheus metrics (SPEC §9): real calls through the stubs, then ``/metrics`` over HTTP."""

from __future__ import annotations

import socket
from pathlib import Path

import grpc
import pytest
from ameli.auth.v1 import auth_pb2

from ameli_grpc.config import ConfigurationError, Settings, load_settings
from ameli_grpc.observability import start_observability
from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import (
    ADVISOR_KEY,
    EMAIL,
    MOBILE_KEY,
    PASSWORD,
    PORTAL_KEY,
    ServiceUnderTest,
    nir,
    refused,
)
from tests.e2e.metrics_scrape import only, scrape
from tests.e2e.replicas import server_process
from tests.support.mail import free_port


async def metered(make_service: ServiceFactory) -> tuple[ServiceUnderTest, int]:
    """A service that serves its own ``/metrics``, and the port it serves them on."""
    port = free_port()
    service = await make_service(metrics_listen=f"127.0.0.1:{port}")
    assert service.container is not None
    assert service.container.metrics_port == port
    return service, port


async def test_calls_logins_codes_locks_and_refusals_are_counted(
    make_service: ServiceFactory, backend: str
) -> None:
    """A login by code, a mobile login, four wrong passwords and a call without a key show up
    in the gRPC counters and histogram, the login counters, the refusals and the gauges."""
    service, port = await metered(make_service)
    await service.add_account(nir(1))
    await service.add_account(nir(2))
    login_id = (await service.login(nir(1))).code_required.login_id
    code = await service.request_code(login_id)
    await service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code=code))
    await service.login(nir(1), channel=auth_pb2.CHANNEL_MOBILE_APP)
    wrong = [(await refused(service.login(nir(2), password="faux"))).reason for _ in range(4)]
    keyless = await refused(
        service.stub(None).GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(1)))
    )

    scraped = await scrape(port)

    assert wrong == ["INVALID_CREDENTIALS"] * 2 + ["PASSWORD_ATTEMPTS_LOCKED"] * 2
    assert keyless.code == grpc.StatusCode.UNAUTHENTICATED
    assert scraped.rpc("grpc_server_started_total", "CheckCredentials") == 6
    handled = {
        dict(labels)["grpc_code"]: value
        for labels, value in only(scraped, "grpc_server_handled_total").items()
        if dict(labels)["grpc_method"] == "CheckCredentials"
    }
    assert handled == {"OK": 2, "UNAUTHENTICATED": 2, "FAILED_PRECONDITION": 2}
    assert scraped.rpc("grpc_server_handling_seconds_count", "CheckCredentials") == 6
    assert scraped.rpc("grpc_server_handling_seconds_bucket", "CheckCredentials", le="+Inf") == 6
    assert scraped.rpc("grpc_server_handled_total", "RequestCode", grpc_code="OK") == 1
    assert scraped.rpc("grpc_server_handled_total", "VerifyCode", grpc_code="OK") == 1
    assert scraped.rpc("grpc_server_handled_total", "GetLockStatus", grpc_code="UNAUTHENTICATED")
    assert scraped.value("ameli_auth_refusals_total", reason="INVALID_CREDENTIALS") == 2
    assert scraped.value("ameli_auth_refusals_total", reason="PASSWORD_ATTEMPTS_LOCKED") == 2
    assert scraped.value("ameli_auth_refusals_total", reason="CALLER_NOT_ALLOWED") == 1
    assert scraped.value("ameli_auth_logins_total", method="email_code") == 1
    assert scraped.value("ameli_auth_logins_total", method="password") == 1
    assert scraped.value("ameli_codes_sent_total") == 1
    assert only(scraped, "ameli_locks_total") == {frozenset({("kind", "password")}): 1}
    assert scraped.value("ameli_hash_queue_depth") == 0
    # 4 verifies (2 right, 2 wrong; the locked ones verify nothing), and any hash of an account
    jobs = scraped.value("ameli_hash_duration_seconds_count")
    hashing = scraped.value("ameli_hash_duration_seconds_sum")
    assert jobs is not None
    assert jobs >= 4
    assert hashing is not None
    assert hashing > 0
    up = {
        dict(labels)["dependency"]: value
        for labels, value in only(scraped, "ameli_dependency_up").items()
    }
    expected = {"database": 1, "smtp": 1}
    if backend == "redis_postgres":
        expected["redis"] = 1
    assert up == expected


async def test_no_label_carries_a_nir_key_address_or_email(make_service: ServiceFactory) -> None:
    """After calls that carry a NIR, an email's account, a client address, caller keys and a
    stranger's key, nothing of them appears anywhere in the scrape."""
    service, port = await metered(make_service)
    await service.add_account(nir(3), mobile_phone="06 12 34 56 78")
    client = auth_pb2.ClientInfo(ip="203.0.113.77", user_agent="Navigateur-Test/1.0")
    await refused(service.login(nir(3), password="Mauvais-Secret-42", client=client))
    login_id = (await service.login(nir(3), client=client)).code_required.login_id
    code = await service.request_code(login_id)
    await service.portal.VerifyCode(
        auth_pb2.VerifyCodeRequest(login_id=login_id, code=code, client=client)
    )
    await service.advisor.GetAccount(auth_pb2.GetAccountRequest(nir=nir(3)))
    stranger = "cle-volee-0123456789"
    await refused(service.stub(stranger).GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(3))))

    scraped = await scrape(port)

    personal = [nir(3), nir(3)[:13], "203.0.113.77", "Navigateur-Test", EMAIL, "toto", login_id]
    secrets = [PORTAL_KEY, MOBILE_KEY, ADVISOR_KEY, stranger, PASSWORD, "Mauvais-Secret-42", code]
    assert scraped.rpc("grpc_server_started_total", "GetAccount") == 1  # the calls were counted
    for value in personal + secrets:
        assert value not in scraped.text
    assert set(scraped.label_values()) <= ALLOWED_LABEL_VALUES  # the code's words only


ALLOWED_LABEL_VALUES = {
    "unary",
    "ameli.auth.v1.AuthService",
    *("CheckCredentials", "RequestCode", "VerifyCode", "GetLockStatus", "GetAccount"),
    *("OK", "UNAUTHENTICATED", "PERMISSION_DENIED"),
    *("INVALID_CREDENTIALS", "CALLER_NOT_ALLOWED"),
    *("email_code", "database", "smtp", "redis"),
}


def test_a_malformed_metrics_address_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """AMELI_METRICS_LISTEN must be host:port; anything else is refused, naming the variable."""
    assert Settings(metrics_listen="").metrics_address() is None
    assert Settings(metrics_listen="[::1]:9464").metrics_address() == ("::1", 9464)
    for bad in ("garbage", "9464", ":9464", "127.0.0.1:99999", "127.0.0.1:port"):
        monkeypatch.setenv("AMELI_METRICS_LISTEN", bad)
        with pytest.raises(ConfigurationError, match="AMELI_METRICS_LISTEN"):
            load_settings()


async def test_a_metrics_port_in_use_is_a_configuration_error() -> None:
    """Serving /metrics on a port another process holds refuses to start, naming the variable."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = Settings(metrics_listen=f"127.0.0.1:{taken.getsockname()[1]}")
        seen = start_observability(settings)
        try:
            with pytest.raises(ConfigurationError, match="AMELI_METRICS_LISTEN: cannot listen"):
                seen.serve_metrics(settings)
        finally:
            for close in seen.closers:
                await close()


async def test_serve_refuses_a_malformed_metrics_address(tmp_path: Path) -> None:
    """`ameli-grpc serve` with AMELI_METRICS_LISTEN=garbage exits 2 with a line naming it."""
    settings = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'metrics.db'}",
        "secret_key_file": tmp_path / "secret.key",
        "outbox_dir": tmp_path / "outbox",
        "metrics_listen": "garbage",
        "log_format": "json",
    }
    with pytest.raises(AssertionError, match="exited with 2") as refused_start:
        async with server_process(settings):
            pass
    assert "refusing_to_start" in str(refused_start.value)
    assert "AMELI_METRICS_LISTEN" in str(refused_start.value)
