"""Property: arbitrary text in any text field of any RPC is never INTERNAL or UNKNOWN, and a
request refused for its form leaves nothing behind (SPEC §6, §8), on both backends.

The RPCs and their text fields come from the service descriptor, so a new RPC
or field is fuzzed as soon as it exists. Every other field holds a value that
would have an effect if the call went through (the account's NIR, a wrong
password, the pending login...), so a refusal that came too late would show
in the footprint: rows of every table, the NIR's counters and locks, emails,
SMS. One server per backend serves every example: Hypothesis runs in a worker
thread and hands each call to the test's event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import grpc
from ameli.auth.v1 import auth_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ameli_grpc.server.validation import FIELD_RULES, text_field_paths
from tests.e2e.conftest import ServiceFactory
from tests.e2e.footprint import SERVICE, footprint, key_for
from tests.e2e.harness import PORTAL_KEY, ServiceUnderTest, nir

NIR = nir(90)
TARGETS = [
    (method.name, path)
    for method in SERVICE.methods
    for path in text_field_paths(method.input_type)
]
LENGTHS = [0, 1, 13, 15, 64, 65, 256, 257, 500, 501, 512, 513, 1024, 1025, 20_000]
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=40),  # any Unicode but surrogates
    st.text(st.characters(max_codepoint=0xA0), max_size=40),  # C0 and C1 controls, often
    st.builds(
        lambda unit, count: unit * count,
        st.sampled_from(["a", "9", "é", " ", "\x00", "\U0001f600"]),
        st.sampled_from(LENGTHS) | st.integers(0, 20_000),
    ),
    st.sampled_from(["\x00", "a\x00b", "\x7f", "\x85", "\u2028", "\u200b", "\ufeff", "\t"]),
)
UNCHANGED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)


@dataclass
class World:
    """The account the examples aim at, put back whenever a call that went through changed it."""

    service: ServiceUnderTest
    login_id: str = ""

    async def restore(self) -> None:
        """An account with a trusted device, a login waiting for its code, no lock nor count."""
        state = await footprint(self.service, NIR)
        if state.rows_of("accounts") == 0:
            await self.service.add_account(NIR, mobile_phone="0612345678")
            self.login_id = ""
        if state.rows_of("trusted_devices") == 0 or not self.login_id:
            await self.service.login_on_personal_computer(NIR)
            self.login_id = (await self.service.login(NIR)).code_required.login_id
            await self.service.request_code(self.login_id)
        await self.service.advisor.UnlockAccount(
            auth_pb2.UnlockAccountRequest(nir=NIR, advisor_id="conseiller", reason="remise à zéro")
        )

    def request(self, method: MethodDescriptor, path: str, value: str) -> Message:
        """The method's request with every field filled in, and ``value`` at ``path``."""
        texts = {
            "nir": NIR,
            "password": "faux",
            "device_token": "",
            "login_id": self.login_id,
            "code": "000000",
            "advisor_id": "conseiller-3646",
            "reason": "appel de l'assuré",
            "client.ip": "192.0.2.7",
            "client.user_agent": "Mozilla/5.0",
        }
        texts[path] = value
        request: Any = message_factory.GetMessageClass(method.input_type)()
        for field in method.input_type.fields:
            if field.type == field.TYPE_BOOL:
                setattr(request, field.name, True)  # send the SMS, trust the device
        for text_path in text_field_paths(method.input_type):
            *parents, name = text_path.split(".")
            target = request
            for parent in parents:
                target = getattr(target, parent)
            setattr(target, name, texts[text_path])
        return request  # type: ignore[no-any-return]


async def call(
    service: ServiceUnderTest, method: MethodDescriptor, request: Message
) -> tuple[grpc.StatusCode, list[str]]:
    """The status code of the call and the fields its BadRequest names.

    A method no role may call yet goes to the advisor's key, the role SPEC §7.1 gives it.
    """
    stub = service.portal if key_for(method.name) == PORTAL_KEY else service.advisor
    try:
        await getattr(stub, method.name)(request)
    except grpc.aio.AioRpcError as error:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        fields: list[str] = []
        for detail in status.details if status else []:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields = [violation.field for violation in bad.field_violations]
        return error.code(), fields
    return grpc.StatusCode.OK, []


async def attempt(world: World, method_name: str, path: str, value: str) -> None:
    method = SERVICE.methods_by_name[method_name]
    request = world.request(method, path, value)
    before = await footprint(world.service, NIR)

    code, fields = await call(world.service, method, request)

    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (method_name, path)
    if request.ByteSize() > world.service.settings.max_message_bytes:  # gRPC's own refusal
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await footprint(world.service, NIR) == before
        return
    if key_for(method_name) is None:
        assert code == grpc.StatusCode.PERMISSION_DENIED
    elif not FIELD_RULES[path].allows(value):
        assert (code, path in fields) == (grpc.StatusCode.INVALID_ARGUMENT, True), fields
    if code in UNCHANGED:
        assert await footprint(world.service, NIR) == before, (method_name, path)
    else:
        await world.restore()


async def test_arbitrary_text_is_refused_up_front_or_served(make_service: ServiceFactory) -> None:
    """No text in any field of any RPC gets INTERNAL or UNKNOWN; a refusal changes nothing."""
    # Regulation off: the examples all come from one address and would throttle it.
    world = World(await make_service(client_failure_limit=1_000_000))
    await world.restore()
    loop = asyncio.get_running_loop()

    @settings(
        max_examples=250,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(target=st.sampled_from(TARGETS), value=TEXT)
    def property_holds(target: tuple[str, str], value: str) -> None:
        asyncio.run_coroutine_threadsafe(attempt(world, *target, value), loop).result(timeout=60)

    await asyncio.to_thread(property_holds)
