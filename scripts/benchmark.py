"""Load benchmark of AuthService: the real server in-process, measured through the shipped stubs.

    .venv/bin/python scripts/benchmark.py [--seconds 10] [--concurrency 32] [--accounts 50]
                                          [--backend embedded|redis_postgres] [--previous-key]

Each phase runs ``--seconds`` with ``--concurrency`` callers spread over the accounts:
``check_credentials_mobile`` (password only: argon2id bound); ``web_login_full_flow``
(CheckCredentials → RequestCode, email over SMTP to an in-process aiosmtpd → VerifyCode;
each caller owns its accounts and every success clears the NIR's code quota, so the
production quota and locks stay on); ``lock_status_under_load`` (GetLockStatus latency
while the mobile load runs at full concurrency: hashing runs in a thread pool, so the
event loop must keep answering). ``--previous-key`` sets ``AMELI_PREVIOUS_SECRET_KEYS``: the
cost of a key rotation under way. Only 127.0.0.1 is used; temporary data is removed at
the end. Exit status 1 if a phase had an error rate above 1 % (or no call at all).

``--flood N`` measures instead a legitimate password login while N parallel logins of
unknown NIRs hash away (SPEC §7.5), side by side in one run: its idle p99, then under
the flood with the production shedding (``AMELI_MAX_PENDING_HASHES``, ``--max-pending``,
32 by default) and with shedding turned off. Every legitimate call must be answered
within 3 × its idle p99 or shed at once with RetryInfo; exit status 1 otherwise (with
shedding on). The flood's callers run in two other processes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import secrets
import sys
import tempfile
import time
import timeit
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argon2
import grpc
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc
from redis.asyncio import Redis

from ameli_grpc.accounts_import import AccountRow, load_accounts
from ameli_grpc.adapters.argon2_hasher import DEFAULT_MAX_PENDING, OWASP_PARAMETERS
from ameli_grpc.adapters.sql.repositories import SqlAccountRepository, SqlIdentityRegistry
from ameli_grpc.domain.model import Affiliation
from ameli_grpc.log import configure_logging
from tests.e2e.harness import PASSWORD, PORTAL_KEY, ServiceUnderTest, nir, settings_for_tests
from tests.support.databases import migrated_sqlite_database, temporary_postgres_database
from tests.support.mail import Delivery, SmtpTestServer, extract_code, smtp_server
from tests.support.redis import delete_prefix

REDIS_URL = "redis://127.0.0.1:6379/0"
AFFILIATED = Affiliation.AFFILIATED
FLOOD_PROCESSES = 2
FLOOD_WARM_UP = 2.0  # seconds: the flood's processes start before the legitimate login runs
WRONG = "not-the-password"
CALL_TIMEOUT = 10.0  # seconds, for every RPC and every wait for an email
MAX_ERROR_RATE = 0.01
ROW = "{:<32}{:>7}{:>7}{:>9}{:>9}{:>9}{:>9}"
Call = Callable[[int, int], Awaitable[None]]


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0

    @property
    def error_rate(self) -> float:
        total = len(self.latencies) + self.errors.total()
        return self.errors.total() / total if total else 1.0

    def row(self) -> str:
        ordered = sorted(self.latencies)
        rate = len(ordered) / self.elapsed if self.elapsed else 0.0
        ms = [f"{_percentile(ordered, p):.1f}" for p in (50, 95, 99)]
        return ROW.format(self.name, len(ordered), self.errors.total(), f"{rate:.1f}", *ms)


def _percentile(ordered: list[float], p: int) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))] * 1000


class _Inbox(list[Delivery]):
    """Replaces the SMTP server's delivery list: hands each message to its recipient's queue.

    ``append`` runs in aiosmtpd's thread; nothing is kept, so memory stays bounded.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, addresses: list[str]) -> None:
        super().__init__()
        self._loop = loop
        self.queues = {address: asyncio.Queue[EmailMessage]() for address in addresses}

    def append(self, delivery: Delivery) -> None:
        for address in delivery.rcpt_tos:
            if (queue := self.queues.get(address)) is not None:
                self._loop.call_soon_threadsafe(queue.put_nowait, delivery.message)


async def run_phase(phase: Phase, workers: int, deadline: float, call: Call) -> None:
    """``workers`` callers repeat ``call(worker, iteration)`` until ``deadline``."""

    async def worker(number: int) -> None:
        iteration = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                await call(number, iteration)
                phase.latencies.append(time.perf_counter() - started)
            except grpc.aio.AioRpcError as error:
                phase.errors[error.code().name] += 1
            except Exception as error:  # a benchmark counts failures, it does not stop on one
                phase.errors[type(error).__name__] += 1
            iteration += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(number) for number in range(workers)))
    phase.elapsed = time.perf_counter() - started


@asynccontextmanager
async def storage(backend: str, directory: Path) -> AsyncIterator[dict[str, Any]]:
    """The storage settings of the backend, on temporary data removed on exit."""
    if backend == "embedded":
        async with migrated_sqlite_database(directory) as url:
            yield {"database_url": url, "redis_url": ""}
        return
    prefix = f"ameli-bench-{secrets.token_hex(6)}"
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
        async with temporary_postgres_database() as url:
            yield {"database_url": url, "redis_url": REDIS_URL, "redis_prefix": prefix}
    finally:
        await delete_prefix(client, prefix)
        await client.aclose()


def address(index: int) -> str:
    return f"bench-{index}@bench.test"


def one_verify_ms() -> float:
    hasher = argon2.PasswordHasher.from_parameters(OWASP_PARAMETERS)
    digest = hasher.hash(PASSWORD)
    return min(timeit.repeat(lambda: hasher.verify(digest, PASSWORD), number=1, repeat=3)) * 1000


async def benchmark(args: argparse.Namespace) -> list[Phase]:
    n = args.accounts
    nirs = [nir(index) for index in range(n)]
    async with AsyncExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ameli-bench-")))
        smtp: SmtpTestServer = await stack.enter_async_context(smtp_server())
        inbox = _Inbox(asyncio.get_running_loop(), [address(i) for i in range(n)])
        smtp.deliveries = inbox
        backend = await stack.enter_async_context(storage(args.backend, directory))
        settings = settings_for_tests(
            **backend,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            outbox_dir=directory / "outbox",
            hash_workers=0,  # production default: one hashing thread per core
            # every caller waits for its verify: this measures queueing, not shedding (§7.5)
            max_pending_hashes=max(DEFAULT_MAX_PENDING, args.concurrency),
            # each NIR and client address is then looked up under the previous key too
            previous_secret_keys=secrets.token_hex(32) if args.previous_key else "",
        )
        service = ServiceUnderTest(settings, smtp)
        await service.start()
        stack.push_async_callback(service.stop)
        assert service.container is not None
        database, hasher = service.container.database, service.container.ports.hasher
        rows = [AccountRow(nirs[i], PASSWORD, address(i), True, None, AFFILIATED) for i in range(n)]
        loaded_at = time.perf_counter()
        repositories = SqlAccountRepository(database), SqlIdentityRegistry(database)
        await load_accounts(rows, *repositories, hasher)
        print(f"accounts     : {args.accounts} loaded in {time.perf_counter() - loaded_at:.1f} s")
        print(
            f"limits       : code quota {settings.code_quota} per {settings.code_quota_window} s "
            f"per NIR, {settings.max_password_failures} wrong passwords or codes lock "
            "(production defaults, unchanged)"
        )
        return await run_phases(args, service.portal, service.mobile, nirs, inbox)


async def run_phases(
    args: argparse.Namespace,
    stub: auth_pb2_grpc.AuthServiceAsyncStub,
    mobile_stub: auth_pb2_grpc.AuthServiceAsyncStub,
    nirs: list[str],
    inbox: _Inbox,
) -> list[Phase]:
    accounts, concurrency = len(nirs), args.concurrency
    mobile = auth_pb2.CHANNEL_MOBILE_APP

    async def check_mobile(worker: int, iteration: int) -> None:
        account = nirs[(worker + iteration * concurrency) % accounts]
        request = auth_pb2.CheckCredentialsRequest(nir=account, password=PASSWORD, channel=mobile)
        # only the mobile back end's key may claim the mobile channel
        response = await mobile_stub.CheckCredentials(request, timeout=CALL_TIMEOUT)
        assert response.WhichOneof("result") == "authenticated"

    flow_workers = min(concurrency, accounts)  # each caller owns its accounts
    owned = [list(range(worker, accounts, flow_workers)) for worker in range(flow_workers)]
    if flow_workers < concurrency:
        print(f"note         : {flow_workers} callers in the full flow (one per account at most)")

    async def web_login(worker: int, iteration: int) -> None:
        index = owned[worker][iteration % len(owned[worker])]
        queue = inbox.queues[address(index)]
        while not queue.empty():  # a late email of an earlier failed flow
            queue.get_nowait()
        request = auth_pb2.CheckCredentialsRequest(
            nir=nirs[index], password=PASSWORD, channel=auth_pb2.CHANNEL_WEB
        )
        checked = await stub.CheckCredentials(request, timeout=CALL_TIMEOUT)
        assert checked.WhichOneof("result") == "code_required"
        login_id = checked.code_required.login_id
        await stub.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id), timeout=CALL_TIMEOUT)
        code = extract_code(await asyncio.wait_for(queue.get(), CALL_TIMEOUT))
        verify = auth_pb2.VerifyCodeRequest(login_id=login_id, code=code)
        verified = await stub.VerifyCode(verify, timeout=CALL_TIMEOUT)
        assert verified.authenticated.account_id

    async def lock_status(_worker: int, iteration: int) -> None:
        request = auth_pb2.GetLockStatusRequest(nir=nirs[iteration % accounts])
        status = await stub.GetLockStatus(request, timeout=CALL_TIMEOUT)
        assert not status.locked

    names = ("check_credentials_mobile", "web_login_full_flow", "lock_status_under_load")
    phases = [*map(Phase, names), Phase("  (mobile load during phase 3)")]
    await run_phase(phases[0], concurrency, time.perf_counter() + args.seconds, check_mobile)
    await run_phase(phases[1], flow_workers, time.perf_counter() + args.seconds, web_login)
    deadline = time.perf_counter() + args.seconds
    await asyncio.gather(
        run_phase(phases[2], 1, deadline, lock_status),
        run_phase(phases[3], concurrency, deadline, check_mobile),
    )
    return phases


@dataclass
class FloodResult:
    name: str
    latencies: list[float] = field(default_factory=list)
    shed: int = 0
    slowest_shed: float = 0.0  # how long the slowest refusal took: "at once"?
    flood_calls: int = 0
    flood_shed: int = 0

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] if ordered else 0

    def within(self, bound: float) -> float:
        """The share of legitimate calls answered within ``bound`` or shed at once."""
        total = len(self.latencies) + self.shed
        ok = sum(1 for latency in self.latencies if latency <= bound) + self.shed
        return ok / total if total else 0.0


async def flood(args: argparse.Namespace) -> list[FloodResult]:
    """A legitimate mobile login, idle, then beside ``args.flood`` unknown-NIR logins."""
    runs = [
        (FloodResult("idle"), args.max_pending),
        (FloodResult(f"flood, shedding at {args.max_pending}"), args.max_pending),
        (FloodResult("flood, shedding off"), 10**6),
    ]
    results = [result for result, _ in runs]
    for result, max_pending in runs:
        async with AsyncExitStack() as stack:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ameli-")))
            backend = await stack.enter_async_context(storage(args.backend, directory))
            smtp: SmtpTestServer = await stack.enter_async_context(smtp_server())
            settings = settings_for_tests(
                **backend,
                smtp_host=smtp.host,
                smtp_port=smtp.port,
                outbox_dir=directory / "outbox",
                hash_workers=0,
                max_pending_hashes=max_pending,
            )
            service = ServiceUnderTest(settings, smtp)
            await service.start()
            stack.push_async_callback(service.stop)
            await service.add_account(nir(1))
            flooding = 0 if result.name == "idle" else args.flood
            await _flood_phase(service, result, flooding, args.seconds)
    return results


async def _flood_phase(
    service: ServiceUnderTest, result: FloodResult, flooding: int, seconds: float
) -> None:
    # with a flood, its processes start and it builds up before the legitimate login runs
    deadline = time.perf_counter() + seconds + (FLOOD_WARM_UP if flooding else 0.0)
    mobile = auth_pb2.CheckCredentialsRequest(
        nir=nir(1), password=PASSWORD, channel=auth_pb2.CHANNEL_MOBILE_APP
    )

    async def legitimate() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                await service.mobile.CheckCredentials(mobile, timeout=CALL_TIMEOUT)
                result.latencies.append(time.perf_counter() - started)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                result.shed += 1
                result.slowest_shed = max(result.slowest_shed, time.perf_counter() - started)
                await asyncio.sleep(0.05)  # a client honouring RetryInfo would wait longer

    async def attackers() -> None:
        """The flood, from other processes: the server's event loop serves, nothing else."""
        loop = asyncio.get_running_loop()
        per_process = [flooding // FLOOD_PROCESSES] * FLOOD_PROCESSES
        with ProcessPoolExecutor(FLOOD_PROCESSES, mp_context=get_context("spawn")) as pool:
            counts = await asyncio.gather(
                *(
                    loop.run_in_executor(
                        pool, flood_process, service.address, index * n, n, deadline
                    )
                    for index, n in enumerate(per_process)
                    if n
                )
            )
        result.flood_calls = sum(calls for calls, _ in counts)
        result.flood_shed = sum(shed for _, shed in counts)

    if flooding:
        starting = asyncio.ensure_future(attackers())
        await asyncio.sleep(FLOOD_WARM_UP)
        await asyncio.gather(legitimate(), starting)
    else:
        await legitimate()


def flood_process(address: str, first: int, workers: int, deadline: float) -> tuple[int, int]:
    """In its own process: ``workers`` callers send wrong passwords of unknown NIRs."""
    return asyncio.run(_flood(address, first, workers, deadline))


async def _flood(address: str, first: int, workers: int, deadline: float) -> tuple[int, int]:
    calls = shed = 0
    metadata = (("authorization", f"Bearer {PORTAL_KEY}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)

        async def attacker(worker: int) -> None:
            nonlocal calls, shed
            iteration = 0
            while time.perf_counter() < deadline:
                unknown = nir(10_000 + worker * 300 + iteration % 300)  # one try per NIR
                request = auth_pb2.CheckCredentialsRequest(nir=unknown, password=WRONG)
                try:
                    await stub.CheckCredentials(request, metadata=metadata, timeout=CALL_TIMEOUT)
                except grpc.aio.AioRpcError as error:
                    calls += 1
                    shed += error.code() == grpc.StatusCode.UNAVAILABLE
                iteration += 1

        await asyncio.gather(*(attacker(first + worker) for worker in range(workers)))
    return calls, shed


def report_flood(results: list[FloodResult]) -> int:
    idle_p99 = results[0].p99()
    print(
        f"\n{'legitimate login':<26}{'calls':>7}{'shed':>7}{'p99 ms':>9}{'× idle':>8}"
        f"{'≤3× or shed':>13}{'flood shed':>12}"
    )
    for result in results:
        flood_share = result.flood_shed / result.flood_calls if result.flood_calls else 0.0
        print(
            f"{result.name:<26}{len(result.latencies):>7}{result.shed:>7}"
            f"{result.p99() * 1000:>9.1f}{result.p99() / idle_p99 if idle_p99 else 0:>8.1f}"
            f"{result.within(3 * idle_p99):>13.1%}{result.slowest_shed * 1000:>12.1f}"
            f"{flood_share:>12.1%}"
        )
    return 0 if results[1].within(3 * idle_p99) >= 0.99 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description="Load benchmark of AuthService.")
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase, 0.5 to 300")
    parser.add_argument("--concurrency", type=int, default=32, help="1 to 512")
    parser.add_argument("--accounts", type=int, default=50, help="1 to 10000")
    parser.add_argument("--backend", choices=("embedded", "redis_postgres"), default="embedded")
    parser.add_argument("--flood", type=int, default=0, help="unknown-NIR logins beside one legit")
    parser.add_argument(
        "--previous-key", action="store_true", help="a key rotation under way (previous key set)"
    )
    parser.add_argument(
        "--max-pending", type=int, default=DEFAULT_MAX_PENDING, help="with --flood: the shedding"
    )
    args = parser.parse_args()
    limits = 0.5 <= args.seconds <= 300, 1 <= args.concurrency <= 512, 1 <= args.accounts <= 10_000
    if not all(limits):
        parser.error("--seconds, --concurrency or --accounts out of range (see --help)")
    configure_logging(level=logging.WARNING)  # no per-call log line on the terminal
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's deprecation notices
    p = OWASP_PARAMETERS
    print(f"backend      : {args.backend} (server, clients and SMTP in one process, 127.0.0.1)")
    print(f"cores        : {os.cpu_count()} (argon2 thread pool: one worker per core)")
    print(
        f"argon2id     : m={p.memory_cost} KiB, t={p.time_cost}, p={p.parallelism}, "
        f"hash={p.hash_len} B, salt={p.salt_len} B; one verify ≈ {one_verify_ms():.1f} ms"
    )
    if args.flood:
        print(f"flood        : {args.flood} parallel unknown-NIR logins, {args.seconds:g} s each")
        return report_flood(asyncio.run(flood(args)))
    print(f"load         : {args.seconds:g} s per phase, {args.concurrency} concurrent callers")
    print(f"previous key : {'set (a key rotation under way)' if args.previous_key else 'none'}")
    phases = asyncio.run(benchmark(args))
    print("\n" + ROW.format("phase", "calls", "errors", "calls/s", "p50 ms", "p95 ms", "p99 ms"))
    for phase in phases:
        print(phase.row())
    for phase in (phase for phase in phases if phase.errors):
        print(f"errors in {phase.name.strip()}: {dict(phase.errors)}")
    failed = [phase for phase in phases if phase.error_rate > MAX_ERROR_RATE]
    if failed:
        names = ", ".join(phase.name.strip() for phase in failed)
        print(f"FAILED: error rate above {MAX_ERROR_RATE:.0%} in {names}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
