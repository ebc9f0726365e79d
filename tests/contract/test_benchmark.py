"""``python -m bench``, run as its users run it: a subprocess of the project's Python.

The quick mode is the regression guard of ``make test``: it fails only when a ratio to
its anchor falls far below the target (``bench.rows.QUICK_FLOORS``), never on a time.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import grpc
import pytest
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc

from ameli_grpc.adapters.security_code_email import build_security_code_email
from ameli_grpc.domain.nir import Nir
from bench.callers import Inbox, code_in, code_of, run_job
from bench.common import FLOOD_NIRS_PER_SLOT, nir, unknown_nir
from bench.flood import FloodRun, Shedding
from bench.load import Job, LoadPool, Stream, StreamResult, split
from bench.rows import QUICK_FLOORS, Sample, guarded_ratio

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_bench(*arguments: str, timeout: float = 110) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our own module, fixed arguments, no shell)
        [sys.executable, "-m", "bench", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_quick_benchmark_keeps_the_ratios_to_the_anchors() -> None:
    """The login and the cheap call stay within a gross margin of their anchors (exit 0)."""
    finished = run_bench("--quick")
    assert "Traceback" not in finished.stderr, finished.stderr
    for row in QUICK_FLOORS:
        assert row in finished.stdout, f"{row} missing from:\n{finished.stdout}"
    assert finished.returncode == 0, finished.stdout + finished.stderr


def test_the_flood_benchmark_reports_the_legitimate_login() -> None:
    """``--flood`` measures a legitimate login idle, then beside a flood, shedding on and off.

    Its exit status says whether the 3 × idle p99 target was met: a measure, not asserted.
    """
    shedding = ("--max-pending", "4", "--max-streams", "2")
    finished = run_bench("--flood", "8", *shedding, "--seconds", "0.5", "--warm-up", "0")
    assert finished.returncode in (0, 1), finished.stdout + finished.stderr
    assert "Traceback" not in finished.stderr
    for row in ("idle", "flood, shedding at 4 / 1 / 0.02 / 2", "flood, shedding off"):
        assert row in finished.stdout, f"{row} missing from:\n{finished.stdout}"
    assert "answers other than its own" not in finished.stdout, finished.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness read from Linux")
def test_the_flood_processes_can_yield_the_cores_to_the_service() -> None:
    """``others_nice`` lowers every load process but the first (the legitimate caller's)."""
    pool = LoadPool(3, others_nice=5)
    try:
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        niceness = [os.getpriority(os.PRIO_PROCESS, p.pid or 0) for p in pool._processes]
    finally:
        pool.close()
    assert niceness == [ours, min(19, ours + 5), min(19, ours + 5)]


def test_a_legitimate_call_shed_late_misses_the_flood_target() -> None:
    """A refusal is "at once" only within the bound an answer has: one answered in time,
    one shed in time, one shed late make two thirds."""
    legitimate = StreamResult(latencies=[0.1], shed_latencies=[0.05, 0.5])
    run = FloodRun("flood", Shedding(32, 1.0, 0.02, 32), 256, legitimate=legitimate)

    assert run.within(0.2) == pytest.approx(2 / 3)
    assert legitimate.shed == 2
    assert legitimate.slowest_shed == 0.5


def test_every_slot_of_a_large_flood_tries_valid_nirs_that_no_account_has() -> None:
    """A flood's callers send wrong passwords for unknown NIRs, each NIR once: none of them
    may be refused for its form (an answer that costs no verify) or be an account's."""
    slots = 256
    serials = [
        slot * FLOOD_NIRS_PER_SLOT + iteration
        for slot in (0, 1, slots - 1)
        for iteration in (0, FLOOD_NIRS_PER_SLOT - 1)
    ]
    unknown = {unknown_nir(serial) for serial in serials}
    assert len(unknown) == len(serials)
    for value in unknown | {nir(0), nir(99_999)}:
        Nir.parse(value)
    assert not unknown & {nir(serial) for serial in range(0, 100_000, 997)}


def test_the_full_mode_refuses_rows_of_another_backend_and_bad_sizes() -> None:
    """Arguments are checked before anything starts: exit status 2 and a message."""
    cases = [
        (["--only", "lockredis16"], "applies to --backend embedded"),
        (["--quick", "--backend", "redis_postgres"], "embedded set only"),
        (["--seconds", "0.1"], "--seconds is 0.5 to 300"),
        (["--repeat", "0"], "--repeat is 1 to 20"),
        (["--only", "nonsense"], "invalid choice"),
    ]
    for arguments, message in cases:
        finished = run_bench(*arguments, timeout=30)
        assert finished.returncode == 2, (arguments, finished.stdout, finished.stderr)
        assert message in finished.stderr, (arguments, finished.stderr)


def test_the_guard_needs_both_calls_and_cpu_to_fall() -> None:
    """A busy neighbour halves calls/s but not CPU per call: the guard keeps the better one."""
    slowed = Sample(service=100, service_cpu=0.001, anchor=400, anchor_cpu=0.0008, ratio=0.25)
    assert guarded_ratio(slowed) == pytest.approx(0.8)
    regressed = Sample(service=100, service_cpu=0.004, anchor=400, anchor_cpu=0.0008, ratio=0.25)
    assert guarded_ratio(regressed) == pytest.approx(0.25)


def test_the_load_keeps_the_web_login_in_the_process_that_reads_the_emails() -> None:
    """Slots are dealt round robin, but the web login's all go to process 0 (its SMTP)."""
    parts = split([Stream("lock_status", 5), Stream("login_web", 3)], 2)
    assert parts[0] == [(Stream("lock_status", 5), (0, 2, 4)), (Stream("login_web", 3), (0, 1, 2))]
    assert parts[1] == [(Stream("lock_status", 5), (1, 3)), (Stream("login_web", 3), ())]


def test_the_load_keeps_a_flood_out_of_the_legitimate_callers_process() -> None:
    """The flood's slots go to the other processes, so the legitimate caller's latencies
    are not those of a load process the flood keeps busy; alone, a process takes both."""
    parts = split([Stream("login_mobile", 1), Stream("flood", 5)], 3)
    assert parts[0] == [(Stream("login_mobile", 1), (0,)), (Stream("flood", 5), ())]
    assert parts[1] == [(Stream("login_mobile", 1), ()), (Stream("flood", 5), (0, 2, 4))]
    assert parts[2] == [(Stream("login_mobile", 1), ()), (Stream("flood", 5), (1, 3))]
    (alone,) = split([Stream("login_mobile", 1), Stream("flood", 2)], 1)
    assert alone == [(Stream("login_mobile", 1), (0,)), (Stream("flood", 2), (0, 1))]


@pytest.mark.parametrize("code", ["654321", "012345"])
def test_the_load_reads_the_code_in_the_bytes_of_the_email(code: str) -> None:
    """The capture server finds the code without parsing the email, as parsing would."""
    sent = build_security_code_email("Ameli <ne-pas-repondre@ameli.fr>", "a@test.com", code, 15)
    raw = sent.as_bytes(policy=SMTP)
    assert code_in(raw) == code_of(sent) == code


def test_the_load_parses_an_email_whose_code_it_cannot_see() -> None:
    """A base64 body hides the code line from the byte search: the email is parsed then."""
    message = EmailMessage()
    message.set_content("Votre code :\n\n1 2 3 4 5 6\n", cte="base64")
    raw = message.as_bytes(policy=SMTP)
    assert b"1 2 3" not in raw
    assert code_in(raw) == "123456"


async def test_a_load_process_with_several_channels_opens_as_many_connections() -> None:
    """``--channels`` (the workers' rows, ``bench.remote``) means connections: without a
    subchannel pool of their own, gRPC would carry all of a process's channels on one, and
    the kernel could not spread them over the workers."""
    peers: set[str] = set()

    class Echo(auth_pb2_grpc.AuthServiceServicer):
        async def GetLockStatus(  # noqa: N802 - generated interface
            self,
            request: auth_pb2.GetLockStatusRequest,
            context: grpc.aio.ServicerContext[Any, Any],
        ) -> auth_pb2.GetLockStatusResponse:
            peers.add(context.peer())
            return auth_pb2.GetLockStatusResponse()

    server = grpc.aio.server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(Echo(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    inbox = Inbox(asyncio.get_running_loop(), 0)
    try:
        start = time.time()
        job = Job(
            f"127.0.0.1:{port}",
            ((Stream("lock_status", 4), (0, 1, 2, 3)),),
            start,
            measure_from=start,
            until=start + 0.3,
            channels=4,
        )
        (result,) = await run_job(job, inbox)
    finally:
        inbox.close()
        await server.stop(0)
    assert result.calls > 0
    assert len(peers) == 4
