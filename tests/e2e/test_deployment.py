"""Settings that would expose the service are refused; TLS when configured."""

from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_network
from pathlib import Path

import grpc
import pytest
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc

from ameli_grpc.bootstrap import (
    build_container,
    caller_keys,
    check_serving,
    load_secret_key,
    server_options,
)
from ameli_grpc.config import ConfigurationError, Settings, is_loopback
from ameli_grpc.server.app import start_server
from tests.e2e.harness import ADVISOR_KEY, nir, settings_for_tests
from tests.support.mail import self_signed_tls


def test_is_loopback() -> None:
    """Only loopback addresses count as loopback."""
    assert is_loopback("127.0.0.1:50051")
    assert is_loopback("[::1]:50051")
    assert is_loopback("localhost:50051")
    assert not is_loopback("0.0.0.0:50051")
    assert not is_loopback("[::]:50051")
    assert not is_loopback("10.1.2.3:50051")


def settings_in(tmp_path: Path, **values: object) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'deploy.db'}",
        outbox_dir=tmp_path / "outbox",
        secret_key_file=tmp_path / "secret.key",
        **values,  # type: ignore[arg-type]
    )


def test_without_keys_the_server_refuses_other_addresses(tmp_path: Path) -> None:
    """With no API keys configured the server refuses to listen beyond loopback."""
    settings = settings_in(tmp_path, secret_key="k" * 64, listen="0.0.0.0:0")
    with pytest.raises(ConfigurationError, match="refusing to listen"):
        server_options(settings, caller_keys(settings))


def test_cleartext_beyond_loopback_is_refused(tmp_path: Path) -> None:
    """Beyond loopback, the server wants TLS, or an explicit statement that a proxy does it."""
    beyond = settings_in(tmp_path, portal_api_keys="p", listen="0.0.0.0:0")
    with pytest.raises(ConfigurationError, match="cleartext"):
        server_options(beyond, caller_keys(beyond))
    with pytest.raises(ConfigurationError, match="go together"):
        settings_in(tmp_path, portal_api_keys="p", tls_cert_file=tmp_path / "c")


def test_the_secret_key_is_required_outside_development(tmp_path: Path) -> None:
    """With Redis or beyond loopback, a missing AMELI_SECRET_KEY refuses to start."""
    for values in ({"redis_url": "redis://127.0.0.1:6379/0"}, {"listen": "0.0.0.0:50051"}):
        with pytest.raises(ConfigurationError, match="AMELI_SECRET_KEY"):
            load_secret_key(settings_in(tmp_path, **values))
    assert not (tmp_path / "secret.key").exists()


def test_the_development_key_is_made_once(tmp_path: Path) -> None:
    """In development the key is generated once, owner-only, and then reused."""
    first = load_secret_key(settings_in(tmp_path))
    second = load_secret_key(settings_in(tmp_path))
    assert first == second
    assert len(first) == 64
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]


async def test_tls_when_configured(tmp_path: Path) -> None:
    """With a certificate and key the server speaks TLS only."""
    self_signed_tls(tmp_path)
    settings = settings_for_tests(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'tls.db'}",
        outbox_dir=tmp_path / "o",
        tls_cert_file=tmp_path / "cert.pem",
        tls_key_file=tmp_path / "key.pem",
    )
    container = await build_container(settings)
    running = await start_server(container.app, server_options(settings, container.app.caller_keys))
    address = f"127.0.0.1:{running.port}"
    request = auth_pb2.GetLockStatusRequest(nir=nir(1))
    metadata = (("authorization", f"Bearer {ADVISOR_KEY}"),)
    try:
        roots = grpc.ssl_channel_credentials((tmp_path / "cert.pem").read_bytes())
        async with grpc.aio.secure_channel(address, roots) as channel:
            status = await auth_pb2_grpc.AuthServiceStub(channel).GetLockStatus(
                request, metadata=metadata
            )
            assert not status.locked
        async with grpc.aio.insecure_channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await auth_pb2_grpc.AuthServiceStub(channel).GetLockStatus(
                    request, metadata=metadata, timeout=2
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await running.stop()
        await container.aclose()


def test_caller_entries_are_named_or_numbered_and_read_from_files(tmp_path: Path) -> None:
    """`name:key` entries keep their name, bare keys are numbered per role; files add lines."""
    keys_file = tmp_path / "mobile.keys"
    keys_file.write_text("# the mobile back ends\napp-ios:k-ios\n\nk-bare\n", encoding="utf-8")
    settings = settings_in(
        tmp_path,
        portal_api_keys=" gateway-a:k-a , k-b,k-c ",
        mobile_api_keys_file=keys_file,
        advisor_api_keys="",
    )
    assert settings.api_keys("portal") == [
        ("gateway-a", "k-a"),
        ("portal-1", "k-b"),
        ("portal-2", "k-c"),
    ]
    assert settings.api_keys("mobile") == [("app-ios", "k-ios"), ("mobile-1", "k-bare")]
    assert settings.api_keys("advisor") == []


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [("Gateway:secret-key", "caller names"), ("gateway:", "empty key"), (":secret-key", "names")],
)
def test_a_malformed_caller_entry_refuses_to_start(
    tmp_path: Path, entry: str, complaint: str
) -> None:
    """A bad name or an empty key is refused, naming the variable and never echoing the key."""
    settings = settings_in(tmp_path, portal_api_keys=entry)
    with pytest.raises(ConfigurationError, match=complaint) as refused:
        caller_keys(settings)
    assert "AMELI_PORTAL_API_KEYS" in str(refused.value)
    assert "secret-key" not in str(refused.value)


def test_an_unreadable_keys_file_refuses_to_start(tmp_path: Path) -> None:
    """A keys file that cannot be read is a configuration error naming its variable."""
    settings = settings_in(tmp_path, advisor_api_keys_file=tmp_path / "missing.keys")
    with pytest.raises(ConfigurationError, match="AMELI_ADVISOR_API_KEYS_FILE"):
        caller_keys(settings)


def test_client_regulation_is_read_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AMELI_CLIENT_* reach the policy: limit, window and lock in seconds, the allowlist's CIDRs."""
    monkeypatch.setenv("AMELI_CLIENT_FAILURE_LIMIT", "7")
    monkeypatch.setenv("AMELI_CLIENT_FAILURE_WINDOW", "60")
    monkeypatch.setenv("AMELI_CLIENT_LOCK", "120")
    monkeypatch.setenv("AMELI_CLIENT_ALLOWLIST", "10.0.0.0/8, 2001:db8::/32")

    policy = settings_in(tmp_path).policy()

    assert (policy.client_failure_limit, policy.client_failure_window, policy.client_lock) == (
        7,
        timedelta(seconds=60),
        timedelta(seconds=120),
    )
    assert policy.client_allowlist == (ip_network("10.0.0.0/8"), ip_network("2001:db8::/32"))
    monkeypatch.delenv("AMELI_CLIENT_FAILURE_LIMIT")
    assert settings_in(tmp_path).policy().client_failure_limit == 50  # the default


async def test_a_malformed_client_allowlist_refuses_to_start(tmp_path: Path) -> None:
    """A CIDR that does not parse stops the start, naming AMELI_CLIENT_ALLOWLIST and the entry."""
    settings = settings_in(tmp_path, client_allowlist="10.0.0.0/8,10.0.0.300/32")

    with pytest.raises(ConfigurationError, match="AMELI_CLIENT_ALLOWLIST") as refused:
        await build_container(settings)

    assert "'10.0.0.300/32'" in str(refused.value)


@pytest.mark.parametrize(
    ("values", "variables"),
    [
        pytest.param({}, ["AMELI_SMTP_HOST", "AMELI_SMS_URL"], id="neither"),
        pytest.param({"smtp_host": "smtp.internal"}, ["AMELI_SMS_URL"], id="no SMS gateway"),
        pytest.param({"sms_url": "https://sms.internal"}, ["AMELI_SMTP_HOST"], id="no SMTP"),
    ],
)
async def test_beyond_development_the_outbox_must_be_asked_for(
    tmp_path: Path, values: dict[str, str], variables: list[str]
) -> None:
    """With caller keys, a missing SMTP host or SMS gateway refuses to start, naming them and
    AMELI_ALLOW_OUTBOX; nothing is written to the outbox."""
    settings = settings_in(tmp_path, secret_key="k" * 64, portal_api_keys="gw:key", **values)

    with pytest.raises(ConfigurationError) as refused:
        check_serving(settings)
    with pytest.raises(ConfigurationError):
        await build_container(settings)

    assert refused.value.variable == ",".join([*variables, "AMELI_ALLOW_OUTBOX"])
    assert str(tmp_path / "outbox") in refused.value.reason
    assert not (tmp_path / "outbox").exists()


def test_the_outbox_is_allowed_in_development_or_when_asked_for(tmp_path: Path) -> None:
    """On loopback without keys the outbox is the default; elsewhere AMELI_ALLOW_OUTBOX opens it."""
    check_serving(settings_in(tmp_path))
    asked = settings_in(tmp_path, secret_key="k" * 64, mobile_api_keys="k", allow_outbox=True)
    check_serving(asked)
    public = settings_in(
        tmp_path,
        secret_key="k" * 64,
        advisor_api_keys="k",
        listen="0.0.0.0:50051",
        allow_insecure=True,
    )
    with pytest.raises(ConfigurationError, match="AMELI_ALLOW_OUTBOX"):
        check_serving(public)
    check_serving(public.model_copy(update={"allow_outbox": True}))


def test_tls_files_that_are_not_a_pair_are_refused_by_name(tmp_path: Path) -> None:
    """Unreadable or mismatched TLS files are refused naming the variables, before any bind."""
    self_signed_tls(tmp_path)
    (tmp_path / "not-a-key.pem").write_text("-----BEGIN NOTHING-----\n", encoding="ascii")
    missing = settings_in(
        tmp_path, tls_cert_file=tmp_path / "cert.pem", tls_key_file=tmp_path / "absent.pem"
    )
    with pytest.raises(ConfigurationError, match="cannot read") as refused:
        check_serving(missing)
    assert refused.value.variable == "AMELI_TLS_KEY_FILE"
    wrong = settings_in(
        tmp_path, tls_cert_file=tmp_path / "cert.pem", tls_key_file=tmp_path / "not-a-key.pem"
    )
    with pytest.raises(ConfigurationError, match="not a PEM") as refused:
        check_serving(wrong)
    assert refused.value.variable == "AMELI_TLS_CERT_FILE,AMELI_TLS_KEY_FILE"
