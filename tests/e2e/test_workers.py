"""``serve --workers N`` is supervised: a dead worker is restarted, a crash loop is given up on."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import structlog
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc

from ameli_grpc.supervisor import Supervisor
from tests.e2e.harness import ADVISOR_KEY, nir
from tests.e2e.replicas import ServerProcess, server_process, shared_backend
from tests.support.channels import OWN_CONNECTION
from tests.support.mail import SmtpTestServer
from tests.support.waiting import wait_for
from tests.support.workers import first_fails_others_serve

ADVISOR = (("authorization", f"Bearer {ADVISOR_KEY}"),)


@pytest.fixture
async def worker_settings(
    postgres_url: str, redis_url: str, smtp: SmtpTestServer
) -> AsyncIterator[dict[str, Any]]:
    extra = {"smtp_host": smtp.host, "smtp_port": smtp.port, "advisor_api_keys": ADVISOR_KEY}
    async with shared_backend(postgres_url, redis_url, **extra, drain_delay=0.2) as settings:
        yield settings


def _events(server: ServerProcess, name: str) -> list[dict[str, Any]]:
    lines = server.output().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return [event for event in events if event["event"] == name]


async def _calls_succeed_on_new_connections(address: str, count: int = 8) -> None:
    """``count`` calls, each on a connection of its own (the kernel spreads them over workers)."""
    for n in range(count):
        async with grpc.aio.insecure_channel(address, options=OWN_CONNECTION) as channel:
            status = await auth_pb2_grpc.AuthServiceStub(channel).GetLockStatus(
                auth_pb2.GetLockStatusRequest(nir=nir(n + 1)), metadata=ADVISOR, timeout=5
            )
            assert not status.locked


@pytest.mark.redis
@pytest.mark.postgres
async def test_a_killed_worker_is_restarted_and_the_port_keeps_answering(
    worker_settings: dict[str, Any],
) -> None:
    """SIGKILL to one of two workers: calls on the port still succeed, the parent logs
    `worker_restarted` with a new pid and the exit status, and the new worker serves."""
    async with server_process(worker_settings, workers=2) as server:
        await wait_for(lambda: len(_events(server, "serving")) == 2, 20.0, what="both workers")
        (started,) = _events(server, "workers_started")
        victim, survivor = started["pids"]
        os.kill(victim, signal.SIGKILL)
        # Once it is gone (its listening socket with it), the kernel sends every new connection
        # to the survivor; those queued on the dead socket were reset, as in any crash.
        await wait_for(lambda: _events(server, "worker_exited"), 10.0, what="worker_exited")
        await _calls_succeed_on_new_connections(server.address)
        restarted = await wait_for(
            lambda: _events(server, "worker_restarted"), 10.0, what="worker_restarted"
        )
        assert restarted[0]["previous_pid"] == victim
        assert restarted[0]["exit_code"] == -signal.SIGKILL
        fresh = restarted[0]["pid"]
        assert fresh not in (victim, survivor)
        os.kill(fresh, 0)  # alive
        await wait_for(lambda: len(_events(server, "serving")) == 3, 20.0, what="its serving")
        await _calls_succeed_on_new_connections(server.address)
        server.terminate()
        assert await server.wait() == 0
        assert len(_events(server, "worker_restarted")) == 1  # the drained ones are not


def test_a_crash_loop_is_given_up_on() -> None:
    """A worker that dies at once three times in a row: restarted twice with a back-off, then
    the parent stops the other worker and exits 1 with a `workers_crash_loop` line."""
    supervisor = Supervisor(
        first_fails_others_serve, (3,), 2, backoff=0.05, min_uptime=30.0, crash_loop_limit=3
    )
    with structlog.testing.capture_logs() as logs:
        status = supervisor.run()

    assert status == 1
    events = [entry["event"] for entry in logs]
    assert events.count("worker_restarted") == 2
    (gave_up,) = [entry for entry in logs if entry["event"] == "workers_crash_loop"]
    assert gave_up["exit_code"] == 3
    assert gave_up["deaths_in_a_row"] == 3
    (stopped,) = [entry for entry in logs if entry["event"] == "workers_stopped"]
    assert stopped["exit_codes"] == [3, 0]  # the other worker stopped cleanly on SIGTERM


def test_a_worker_refusing_its_settings_is_not_restarted() -> None:
    """A worker that exits 2 (settings refused) is not restarted: the parent stops the others
    and exits 2."""
    supervisor = Supervisor(first_fails_others_serve, (2,), 2, backoff=0.05)
    with structlog.testing.capture_logs() as logs:
        status = supervisor.run()

    assert status == 2
    events = [entry["event"] for entry in logs]
    assert "worker_restarted" not in events
    assert "worker_refused_to_start" in events
