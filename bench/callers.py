"""Inside a load process: the callers of each kind of call, and the SMTP capture server."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from typing import Any

import grpc
from aiosmtpd.controller import Controller
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc

from bench.common import (
    CALL_TIMEOUT,
    FLOOD_NIRS_PER_SLOT,
    PASSWORD,
    WRONG_PASSWORD,
    bearer,
    email,
    nir,
    unknown_nir,
)
from bench.load import Job, Stream, StreamResult
from tests.support.channels import OWN_CONNECTION

Call = Callable[[int], Awaitable[None]]  # one call of a slot; its argument counts its calls
SHED_PAUSE = 0.05  # a shed legitimate caller waits this long (a client honouring RetryInfo)


# The text part's code line, "1 2 3 4 5 6", as quoted-printable leaves it (digits, spaces).
_CODE_LINE = re.compile(rb"^(\d(?: \d){5})\r?$", re.MULTILINE)


class Inbox:
    """The security codes of the emails, each handed to its recipient's queue (nothing kept).

    The code is found in the email's bytes; the email is parsed only if that fails (a
    base64 body): parsing every email cost the load process about as much CPU as
    the service spent on sending it, on the cores the service is measured on.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, smtp_port: int) -> None:
        self._loop = loop
        self._queues: dict[str, asyncio.Queue[str]] = {}
        self._controller: Controller | None = None
        if smtp_port:
            self._controller = Controller(self, hostname="127.0.0.1", port=smtp_port)
            self._controller.start()

    def queue(self, address: str) -> asyncio.Queue[str]:
        return self._queues.setdefault(address, asyncio.Queue())

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        # aiosmtpd's thread: read the code there, queue it on the load's event loop
        code = code_in(envelope.content)
        for address in envelope.rcpt_tos:
            self._loop.call_soon_threadsafe(self.queue(address).put_nowait, code)
        return "250 Message accepted for delivery"

    def close(self) -> None:
        if self._controller is not None:
            self._controller.stop()


def code_in(raw: bytes) -> str:
    """The security code of an email's bytes."""
    found = _CODE_LINE.search(raw)
    if found is not None:
        return found.group(1).decode().replace(" ", "")
    parsed = BytesParser(policy=default, _class=EmailMessage).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return code_of(parsed)


def code_of(message: EmailMessage) -> str:
    """The code of the text part: the line "1 2 3 4 5 6" → ``"123456"``."""
    body = message.get_body(preferencelist=("plain",))
    assert isinstance(body, EmailMessage)
    for line in str(body.get_content()).splitlines():
        digits = line.strip().replace(" ", "")
        if len(digits) == 6 and digits.isdigit() and len(line.strip()) == 11:
            return digits
    raise AssertionError("no spaced six-digit code in the email")


def caller(stub: Any, stream: Stream, slot: int, inbox: Inbox, keys: tuple[str, str]) -> Call:
    """The call a slot repeats: ``stream.call`` as account ``first_account + slot``."""
    account = stream.first_account + slot
    portal, mobile = bearer(keys[0]), bearer(keys[1])

    async def lock_status(_: int) -> None:
        request = auth_pb2.GetLockStatusRequest(nir=nir(account))
        await stub.GetLockStatus(request, metadata=portal, timeout=CALL_TIMEOUT)

    async def login_mobile(_: int) -> None:
        request = auth_pb2.CheckCredentialsRequest(
            nir=nir(account), password=PASSWORD, channel=auth_pb2.CHANNEL_MOBILE_APP
        )
        response = await stub.CheckCredentials(request, metadata=mobile, timeout=CALL_TIMEOUT)
        assert response.WhichOneof("result") == "authenticated", response

    async def login_web(_: int) -> None:
        codes = inbox.queue(email(account))
        while not codes.empty():  # a late email of an earlier failed flow
            codes.get_nowait()
        request = auth_pb2.CheckCredentialsRequest(
            nir=nir(account), password=PASSWORD, channel=auth_pb2.CHANNEL_WEB
        )
        checked = await stub.CheckCredentials(request, metadata=portal, timeout=CALL_TIMEOUT)
        login_id = checked.code_required.login_id
        asking = auth_pb2.RequestCodeRequest(login_id=login_id)
        await stub.RequestCode(asking, metadata=portal, timeout=CALL_TIMEOUT)
        code = await asyncio.wait_for(codes.get(), CALL_TIMEOUT)
        verify = auth_pb2.VerifyCodeRequest(login_id=login_id, code=code)
        verified = await stub.VerifyCode(verify, metadata=portal, timeout=CALL_TIMEOUT)
        assert verified.authenticated.account_id

    async def flood(iteration: int) -> None:
        serial = slot * FLOOD_NIRS_PER_SLOT + iteration % FLOOD_NIRS_PER_SLOT
        unknown = unknown_nir(serial)  # one try per NIR: no NIR's lock refuses them
        request = auth_pb2.CheckCredentialsRequest(nir=unknown, password=WRONG_PASSWORD)
        try:
            await stub.CheckCredentials(request, metadata=portal, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            # INVALID_CREDENTIALS after a verify is the flood's answer; UNAVAILABLE is counted
            # as shed, anything else as an error (the flood would not be what it claims)
            if error.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise
        else:
            raise AssertionError("an unknown NIR logged in")

    calls: dict[str, Call] = {
        "lock_status": lock_status,
        "login_mobile": login_mobile,
        "login_web": login_web,
        "flood": flood,
    }
    return calls[stream.call]


async def _slot(call: Call, job: Job, result: StreamResult, shed_pause: float) -> None:
    await asyncio.sleep(max(0.0, job.start - time.time()))
    for iteration in itertools.count():
        if time.time() >= job.until:
            return
        started = time.perf_counter()
        failure, shed = "", False
        try:
            await call(iteration)
        except grpc.aio.AioRpcError as error:
            shed = error.code() == grpc.StatusCode.UNAVAILABLE
            failure = error.code().name
        except Exception as error:  # a benchmark counts failures, it does not stop on one
            failure = type(error).__name__
        elapsed, ended = time.perf_counter() - started, time.time()
        if shed:
            await asyncio.sleep(shed_pause)
        if not job.measure_from <= ended <= job.until:
            continue
        if shed:
            result.shed_latencies.append(elapsed)
        elif failure:
            result.errors[failure] += 1
        else:
            result.latencies.append(elapsed)


async def run_job(job: Job, inbox: Inbox) -> list[StreamResult]:
    """This process's share of the job's streams; one result per stream."""
    # Each a connection of its own, so that the kernel spreads them over the workers.
    channels = [
        grpc.aio.insecure_channel(job.address, options=OWN_CONNECTION) for _ in range(job.channels)
    ]
    stubs = [auth_pb2_grpc.AuthServiceStub(channel) for channel in channels]
    results = [StreamResult() for _ in job.streams]
    slots = []
    for (stream, mine), result in zip(job.streams, results, strict=True):
        pause = SHED_PAUSE if stream.call == "login_mobile" else 0.0
        for slot in mine:
            call = caller(stubs[slot % len(stubs)], stream, slot, inbox, job.keys)
            slots.append(_slot(call, job, result, pause))
    try:
        await asyncio.gather(*slots)
    finally:
        for channel in channels:
            await channel.close()
    return results
