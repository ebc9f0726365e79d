"""Configuration errors, unknown variables, check-config, migrate's revision, serve --no-migrate.

A bad setting must be one ``refusing_to_start`` line naming its variable and
exit status 2, never a traceback (SPEC §9): the refusals of ``serve`` are
checked in real processes, the other commands through ``main``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from ameli_grpc.adapters.sql.database import SUPPORTED_DRIVERS
from ameli_grpc.adapters.sql.migrate import current_revision, head_revision
from ameli_grpc.cli import main
from ameli_grpc.config import DATABASE_DRIVERS, ConfigurationError, Settings, load_settings
from tests.e2e.replicas import ServerProcess, wait_until_serving
from tests.support.http_gateway import gateway_server
from tests.support.mail import free_port, smtp_server
from tests.support.rfi import rfi_server

SECRET_KEY = "0123456789abcdef" * 4
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``main`` configures logging onto this test's captured stderr: undo it afterwards."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ``AMELI_*`` variable of the outer environment; the working directory is ``tmp_path``."""
    for name in list(os.environ):
        if name.upper().startswith("AMELI_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AMELI_LOG_FORMAT", "json")
    return tmp_path


def cli(directory: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """``ameli-grpc ARGS`` in a child process run in ``directory``, with only these settings."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("AMELI_")}
    env.update({f"AMELI_{name.upper()}": value for name, value in settings.items()})
    return subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, "-m", "ameli_grpc.cli", *args],
        env=env,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def the_refusal(status: int, stderr: str) -> dict[str, Any]:
    """The one JSON line of a refusal: exit 2, nothing else on stderr, no traceback."""
    assert status == 2, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    line: dict[str, Any] = json.loads(lines[0])
    assert line["event"] == "refusing_to_start"
    assert line["level"] == "error"
    return line


def names(line: dict[str, Any]) -> list[str]:
    return str(line["variable"]).split(",")


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        pytest.param({"code_ttl": "abc"}, "AMELI_CODE_TTL", id="bad number"),
        pytest.param({"max_concurrent_rpcs": "0"}, "AMELI_MAX_CONCURRENT_RPCS", id="out of range"),
        pytest.param(
            {"max_concurrent_streams": "-1"}, "AMELI_MAX_CONCURRENT_STREAMS", id="negative"
        ),
        pytest.param({"listen": "garbage"}, "AMELI_LISTEN", id="bad address"),
        pytest.param({"secret_key": "too-short"}, "AMELI_SECRET_KEY", id="short key"),
        pytest.param({"database_url": "not a url"}, "AMELI_DATABASE_URL", id="unparseable URL"),
        pytest.param(
            {"database_url": "mysql+aiomysql://ameli:pw@db/ameli"},
            "AMELI_DATABASE_URL",
            id="unknown driver",
        ),
        pytest.param(
            {"smtp_starttls": "true", "smtp_tls": "true"}, "AMELI_SMTP_TLS", id="STARTTLS and TLS"
        ),
        pytest.param({"tls_cert_file": "/etc/hostname"}, "AMELI_TLS_KEY_FILE", id="cert alone"),
    ],
)
def test_serve_refuses_a_bad_setting_in_one_line_naming_it(
    tmp_path: Path, settings: dict[str, str], variable: str
) -> None:
    """`serve` with a bad value exits 2 with one refusing_to_start line naming its variable."""
    result = cli(tmp_path, "serve", log_format="json", **settings)

    line = the_refusal(result.returncode, result.stderr)
    assert variable in names(line)
    assert variable in line["reason"]
    assert "pw@" not in line["reason"]  # a URL's credentials are never quoted
    assert not (tmp_path / "var").exists()  # refused before anything was created


def test_a_port_in_use_is_one_line_naming_the_address(tmp_path: Path) -> None:
    """A port another process listens on is refused as AMELI_LISTEN, before any migration."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = cli(tmp_path, "serve", log_format="json", listen=address)

    line = the_refusal(result.returncode, result.stderr)
    assert names(line) == ["AMELI_LISTEN"]
    assert address in line["reason"]
    assert "in use" in line["reason"]
    assert not (tmp_path / "var").exists()


def test_the_console_refusal_is_one_readable_line(tmp_path: Path) -> None:
    """In the default console format the refusal is one line too, naming the variable."""
    result = cli(tmp_path, "serve", code_ttl="abc")

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "refusing_to_start" in line
    assert "variable=AMELI_CODE_TTL" in line


def test_without_smtp_a_production_like_server_refuses_the_outbox(tmp_path: Path) -> None:
    """With caller keys and no SMTP or SMS settings, serve refuses rather than write codes."""
    result = cli(
        tmp_path, "serve", log_format="json", portal_api_keys="gw:k", secret_key=SECRET_KEY
    )

    line = the_refusal(result.returncode, result.stderr)
    assert names(line) == ["AMELI_SMTP_HOST", "AMELI_SMS_URL", "AMELI_ALLOW_OUTBOX"]
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["migrate"],
        ["demo-data"],
        ["accounts", "import", "accounts.csv"],
        ["purge"],
        ["audit", "export"],
        ["check-config"],
        ["check-config", "--connect"],
    ],
)
def test_every_command_refuses_a_bad_setting_the_same_way(
    clean_environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    """Each command that reads the settings gives the same single line and status 2."""
    monkeypatch.setenv("AMELI_CODE_TTL", "abc")

    status = main(command)

    captured = capsys.readouterr()
    assert names(the_refusal(status, captured.err)) == ["AMELI_CODE_TTL"]
    assert captured.out == ""


def test_a_listen_option_is_named_as_the_option(
    clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`serve --listen garbage` blames --listen, the value typed, not the secret key."""
    status = main(["serve", "--listen", "garbage"])

    assert names(the_refusal(status, capsys.readouterr().err)) == ["--listen"]


def test_unknown_variables_are_warned_about_by_name(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt AMELI_* variable gets one warning with the likely name; the tests' own and the
    client command's variables are not warned about."""
    monkeypatch.setenv("AMELI_CODE_TL", "30")
    monkeypatch.setenv("AMELI_FROBNICATE", "yes")
    monkeypatch.setenv("AMELI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("AMELI_ADVISOR_TARGET", "127.0.0.1:50051")

    assert main(["check-config"]) == 0

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    warnings = {line["variable"]: line for line in lines if line["event"] == "unknown_variable"}
    assert set(warnings) == {"AMELI_CODE_TL", "AMELI_FROBNICATE"}
    assert warnings["AMELI_CODE_TL"]["did_you_mean"] == "AMELI_CODE_TTL"
    assert warnings["AMELI_FROBNICATE"]["did_you_mean"] is None
    assert all(line["level"] == "warning" for line in warnings.values())


def test_check_config_prints_the_set_up_without_a_secret(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config validates and summarises the adapters; no key or password is printed."""
    settings = {
        "DATABASE_URL": "postgresql+asyncpg://ameli:db-password@db.internal:5433/ameli",
        "REDIS_URL": "redis://:redis-password@redis.internal:6379/2",
        "SMTP_HOST": "smtp.internal",
        "SMTP_PORT": "587",
        "SMTP_STARTTLS": "true",
        "SMTP_USERNAME": "ameli",
        "SMTP_PASSWORD": "smtp-password",
        "SMS_URL": "https://sms.internal/",
        "SMS_API_KEY": "sms-api-key",
        "SECRET_KEY": SECRET_KEY,
        "PORTAL_API_KEYS": "portail-web:portal-secret-key",
        "ADVISOR_API_KEYS": "advisor-secret-key",
        "REFLECTION": "false",
    }
    for name, value in settings.items():
        monkeypatch.setenv(f"AMELI_{name}", value)

    assert main(["check-config"]) == 0

    out = capsys.readouterr().out
    assert "database: postgresql db.internal:5433/ameli" in out
    assert "store: redis redis://redis.internal:6379/2 (prefix ameli)" in out
    assert "mailer: smtp smtp.internal:587 STARTTLS, login ameli" in out
    assert "sms: http https://sms.internal/" in out
    assert "callers: portal: portail-web; mobile: none; advisor: advisor-1" in out
    assert "reflection: off" in out
    assert out.rstrip().endswith("configuration ok")
    for secret in ("password", SECRET_KEY, "secret-key", "sms-api-key"):
        assert secret not in out


def test_check_config_refuses_what_serve_would(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config runs serve's own checks: a cleartext public address is refused, status 2."""
    monkeypatch.setenv("AMELI_LISTEN", "0.0.0.0:50051")
    monkeypatch.setenv("AMELI_PORTAL_API_KEYS", "k")
    monkeypatch.setenv("AMELI_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("AMELI_ALLOW_OUTBOX", "true")

    status = main(["check-config"])

    assert "AMELI_ALLOW_INSECURE" in names(the_refusal(status, capsys.readouterr().err))


def test_check_config_connect_names_each_unreachable_dependency(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--connect reaches every dependency and exits 1 naming those that did not answer."""
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        nobody = closed.getsockname()[1]
    monkeypatch.setenv("AMELI_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("AMELI_DATABASE_URL", f"postgresql+asyncpg://u@127.0.0.1:{nobody}/x")
    monkeypatch.setenv("AMELI_REDIS_URL", f"redis://127.0.0.1:{nobody}/0")
    monkeypatch.setenv("AMELI_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("AMELI_SMTP_PORT", str(nobody))
    monkeypatch.setenv("AMELI_RFI_URL", f"http://127.0.0.1:{nobody}")
    monkeypatch.setenv("AMELI_SMS_URL", f"http://127.0.0.1:{nobody}")

    assert main(["check-config", "--connect"]) == 1

    out = capsys.readouterr().out
    for name in ("database", "redis", "smtp", "rfi", "sms"):
        assert f"reach {name}: FAILED" in out
    assert "unreachable: database, redis, smtp, rfi, sms" in out


@pytest.mark.redis
@pytest.mark.postgres
async def test_check_config_connect_reaches_every_dependency(
    clean_environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    postgres_url: str,
    redis_url: str,
) -> None:
    """--connect with every dependency up: each answers, the schema is at head, exit 0."""
    async with smtp_server() as smtp, rfi_server({}) as rfi, gateway_server(404) as sms:
        for name, value in {
            "SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": postgres_url,
            "REDIS_URL": redis_url,
            "SMTP_HOST": smtp.host,
            "SMTP_PORT": str(smtp.port),
            "RFI_URL": rfi.url,
            "SMS_URL": sms.url,
        }.items():
            monkeypatch.setenv(f"AMELI_{name}", value)

        status = await asyncio.to_thread(main, ["check-config", "--connect"])

    out = capsys.readouterr().out
    assert status == 0, out
    assert f"reach database: ok (schema at head {head_revision()})" in out
    for name in ("redis", "smtp", "rfi", "sms"):
        assert f"reach {name}: ok" in out
    assert not sms.received[0].body  # nothing was sent to the SMS gateway
    assert "every dependency answered" in out


def test_migrate_prints_the_revision_it_reached(
    clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`migrate` says which revision the database is at: this version's head."""
    assert main(["migrate"]) == 0

    assert capsys.readouterr().out.strip() == f"database at revision {head_revision()} (head)"


async def test_serve_no_migrate_needs_a_schema_at_head(tmp_path: Path) -> None:
    """With --no-migrate, an unmigrated database refuses to start (nothing created); once
    migrated by `migrate`, the same command serves."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'ameli.db'}"
    address = f"127.0.0.1:{free_port()}"
    settings = {"database_url": database_url, "listen": address, "log_format": "json"}

    refused = await asyncio.to_thread(cli, tmp_path, "serve", "--no-migrate", **settings)

    line = the_refusal(refused.returncode, refused.stderr)
    assert names(line) == ["AMELI_DATABASE_URL"]
    assert "ameli-grpc migrate" in line["reason"]
    assert await current_revision(database_url) is None
    assert (await asyncio.to_thread(cli, tmp_path, "migrate", **settings)).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("AMELI_")}
    env.update({f"AMELI_{name.upper()}": value for name, value in settings.items()})
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(  # noqa: ASYNC220 - our own CLI; starting it is instant
            [sys.executable, "-m", "ameli_grpc.cli", "serve", "--no-migrate"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = ServerProcess(process, address, log)
        try:
            await wait_until_serving(server)
        finally:
            server.terminate()
            assert await server.wait() == 0


def test_load_settings_names_every_bad_variable_and_quotes_no_secret(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two bad values give one error naming both; a secret's value is never in the reason."""
    monkeypatch.setenv("AMELI_CODE_TTL", "abc")
    monkeypatch.setenv("AMELI_SECRET_KEY", "short-secret")
    with pytest.raises(ConfigurationError) as refused:
        load_settings()

    assert refused.value.variable == "AMELI_CODE_TTL,AMELI_SECRET_KEY"
    assert "short-secret" not in refused.value.reason


def test_the_settings_accept_the_drivers_the_database_adapter_supports() -> None:
    """The URL check of the settings and the SQL adapter agree on the supported drivers."""
    assert DATABASE_DRIVERS == SUPPORTED_DRIVERS


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    """Each ``AMELI_*`` setting has its row (or its place in a row "A / B") in the README."""
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    documented = {
        name.strip()
        for line in readme.splitlines()
        if line.startswith("| AMELI_")
        for name in line.split("|")[1].split("/")
    }
    expected = {f"AMELI_{field.upper()}" for field in Settings.model_fields}
    assert expected <= documented, sorted(expected - documented)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_installs_the_runtime_only() -> None:
    """`make run` installs the service without the dev extras; `make test` with them."""

    def planned(target: str) -> str:
        return subprocess.run(  # noqa: S603 - a dry run (-n) of our own Makefile
            ["make", "-n", target, "VENV=/nonexistent-venv"],  # noqa: S607 - make from PATH
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    run = planned("run")
    assert "pip install --quiet -e clients/python -e .\n" in run
    assert "[dev]" not in run
    assert "'.[dev,otel]'" in planned("test")
