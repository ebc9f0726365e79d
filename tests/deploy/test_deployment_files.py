"""The deployment examples in ``deploy/`` are checked, not just shipped: the systemd unit
by ``systemd-analyze``, the alert rules by ``promtool`` (each skipped where the tool is not
installed: Debian's ``systemd`` and ``prometheus`` packages) and by their structure."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from ameli_grpc.config import Settings
from ameli_grpc.domain.errors import ErrorReason

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "ameli-grpc.service"
ALERTS = ROOT / "deploy" / "alerts.yml"
ALERT_TESTS = Path(__file__).with_name("alerts_test.yml")
INSTALLED_COMMAND = "/opt/ameli-grpc/venv/bin/ameli-grpc"

# SPEC §9: the metric families the service exports (a histogram also as _bucket/_sum/_count).
EXPORTED = {
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds",
    "ameli_auth_refusals_total",
    "ameli_auth_logins_total",
    "ameli_codes_sent_total",
    "ameli_locks_total",
    "ameli_dependency_up",
    "ameli_hash_queue_depth",
    "ameli_hash_duration_seconds",
}
HISTOGRAMS = {"grpc_server_handling_seconds", "ameli_hash_duration_seconds"}
# go-grpc-prometheus names the codes in CamelCase: OK, Unavailable, DeadlineExceeded...
GRPC_CODES = {
    "OK" if code is grpc.StatusCode.OK else code.name.title().replace("_", "")
    for code in grpc.StatusCode
}


def run(*command: str) -> subprocess.CompletedProcess[str]:
    # fixed tool invocations on our own files, no shell
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def installable_unit(tmp_path: Path, text: str | None = None) -> Path:
    """The unit as ``systemd-analyze verify`` can check it here: ExecStart pointed at a
    command that exists on this machine (verify refuses a missing one)."""
    command = shutil.which("ameli-grpc") or shutil.which("true") or "/bin/true"
    unit = tmp_path / UNIT.name
    unit.write_text((text or UNIT.read_text()).replace(INSTALLED_COMMAND, command))
    return unit


def service_section() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser["Service"]


# --- the systemd unit ----------------------------------------------------------------------


def test_systemd_analyze_verifies_the_unit_without_a_warning(tmp_path: Path) -> None:
    """``systemd-analyze verify`` accepts the unit and prints nothing: no unknown key, no
    value it had to ignore."""
    analyze = tool("systemd-analyze")

    checked = run(analyze, "verify", str(installable_unit(tmp_path)))

    assert checked.returncode == 0, checked.stderr
    assert checked.stdout + checked.stderr == ""


def test_systemd_analyze_would_report_a_mistake(tmp_path: Path) -> None:
    """The counter-test of the one above: a misspelt key or a bad value is reported."""
    analyze = tool("systemd-analyze")
    text = UNIT.read_text().replace("KillSignal=SIGTERM", "KillSignal=SIGTREM\nTimeoutStop=30")

    checked = run(analyze, "verify", str(installable_unit(tmp_path, text)))

    assert "SIGTREM" in checked.stderr
    assert "TimeoutStop" in checked.stderr


def test_the_unit_is_hardened_by_systemd_s_own_measure(tmp_path: Path) -> None:
    """``systemd-analyze security`` rates the unit's exposure at most 2.0 ("OK")."""
    analyze = tool("systemd-analyze")
    unit = installable_unit(tmp_path)

    rated = run(analyze, "security", "--offline=true", "--threshold=20", str(unit))

    if "--offline" in rated.stderr and "unrecognized" in rated.stderr:
        pytest.skip("this systemd-analyze cannot rate a unit offline (systemd < 252)")
    assert rated.returncode == 0, rated.stdout[-2000:]


def test_the_unit_serves_with_workers_and_stops_after_the_drain() -> None:
    """SIGTERM to the parent only, and SIGKILL no earlier than the drain delay plus the
    grace for calls under way; the service runs unprivileged and writes only its state."""
    service, settings = service_section(), Settings()
    drain_delay = float(getattr(settings, "drain_delay", 5.0))  # AMELI_DRAIN_DELAY, SPEC §9

    assert service["Type"] == "exec"
    assert service["User"] not in ("", "root")
    assert service["EnvironmentFile"].startswith("/etc/")
    assert re.fullmatch(
        rf"{re.escape(INSTALLED_COMMAND)} serve --workers \d+", service["ExecStart"]
    )
    assert (service["KillSignal"], service["KillMode"]) == ("SIGTERM", "mixed")
    assert float(service["TimeoutStopSec"]) > drain_delay + settings.shutdown_grace
    assert service["RestartPreventExitStatus"] == "2"  # a configuration error
    hardening = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "",
    }
    assert {key: service[key] for key in hardening} == hardening
    assert service["ReadWritePaths"] == service["WorkingDirectory"]


# --- the alert rules -----------------------------------------------------------------------


def test_promtool_checks_the_rules_and_their_unit_tests() -> None:
    """``promtool check rules`` accepts the file; ``promtool test rules`` shows each alert
    firing on the series of its incident, and not before its ``for``."""
    promtool = tool("promtool")

    checked = run(promtool, "check", "rules", str(ALERTS))
    tested = run(promtool, "test", "rules", str(ALERT_TESTS))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    assert tested.returncode == 0, tested.stdout + tested.stderr


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    rules: list[dict[str, Any]] = []
    for group in document["groups"]:
        assert set(group) == {"name", "rules"}
        rules += group["rules"]
    return rules


def test_each_alert_rule_has_its_parts() -> None:
    """Every rule: a CamelCase alert name, an expression, a duration, a severity, a summary
    and a description."""
    rules = alert_rules()

    assert len({rule["alert"] for rule in rules}) == len(rules) >= 6
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"Ameli[A-Z][A-Za-z]+", rule["alert"])
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert set(rule["annotations"]) == {"summary", "description"}


def test_alert_expressions_use_only_what_the_service_exports() -> None:
    """Each metric of an expression is one of SPEC §9, each ``reason`` an error reason of
    the contract, each ``grpc_code`` a gRPC code as go-grpc-prometheus names it; and the
    incidents of the runbook are all covered."""
    expressions = [rule["expr"] for rule in alert_rules()]

    used: set[str] = set()
    for expression in expressions:
        for name in re.findall(r"\b(?:grpc_server|ameli)_[a-z0-9_]+\b", expression):
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert family in EXPORTED, name
            assert family == name or family in HISTOGRAMS, name
            used.add(family)
        for label, values in re.findall(r'\b(reason|grpc_code)=~?"([^"]*)"', expression):
            known = {r.value for r in ErrorReason} if label == "reason" else GRPC_CODES
            assert set(values.split("|")) <= known, (label, values)

    assert used >= EXPORTED - {"ameli_codes_sent_total"}
    everything = "\n".join(expressions)
    for incident in ('reason="SERVICE_UNAVAILABLE"', 'reason="CLIENT_THROTTLED"', "== 0"):
        assert incident in everything
