"""The contract tooling (stubs, buf lint, buf breaking) and the client's typed errors."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from ameli.auth import client as auth
from ameli.auth import errors as codec
from ameli.auth.nir import normalized_nir
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc
from google.protobuf.message import Message
from hypothesis import example, given
from hypothesis import strategies as st

from ameli_grpc.domain.errors import AuthError
from ameli_grpc.domain.nir import Nir

REPO_ROOT = Path(__file__).resolve().parents[2]
BUF = Path(sys.executable).parent / "buf"
BASELINE = REPO_ROOT / "protos" / "baseline" / "ameli-auth-v1.binpb"
PROTO = Path("protos") / "ameli" / "auth" / "v1" / "auth.proto"

_Request = TypeVar("_Request", bound=Message)
_Response = TypeVar("_Response", bound=Message)

WRONG_ENTRY_TEXT = (
    "Les informations saisies sont erronées. Merci de vérifier votre saisie. "
    "Attention : 3 essais infructueux bloquent l'accès au service."
)
CODE_LOCK_TEXT = (
    "Les informations saisies sont erronées. L'accès au service est bloqué "
    "jusqu'au 05/01/2023 - 15h05 (heure de Paris)."
)

# The client-side family of every ErrorReason, with the gRPC code the service uses.
FAMILIES: dict[str, tuple[grpc.StatusCode, type[auth.AuthServiceError]]] = {
    "INVALID_NIR": (grpc.StatusCode.INVALID_ARGUMENT, auth.InvalidInput),
    "INVALID_REQUEST": (grpc.StatusCode.INVALID_ARGUMENT, auth.InvalidInput),
    "INVALID_CREDENTIALS": (grpc.StatusCode.UNAUTHENTICATED, auth.WrongEntry),
    "INVALID_CODE": (grpc.StatusCode.UNAUTHENTICATED, auth.WrongEntry),
    "PASSWORD_ATTEMPTS_LOCKED": (grpc.StatusCode.FAILED_PRECONDITION, auth.Locked),
    "CODE_ATTEMPTS_LOCKED": (grpc.StatusCode.FAILED_PRECONDITION, auth.Locked),
    "CODE_QUOTA_EXCEEDED": (grpc.StatusCode.RESOURCE_EXHAUSTED, auth.Locked),
    "CODE_EXPIRED": (grpc.StatusCode.FAILED_PRECONDITION, auth.LoginRefused),
    "CODE_NOT_REQUESTED": (grpc.StatusCode.FAILED_PRECONDITION, auth.LoginRefused),
    "EMAIL_NOT_VALIDATED": (grpc.StatusCode.FAILED_PRECONDITION, auth.LoginRefused),
    "NOT_COVERED": (grpc.StatusCode.FAILED_PRECONDITION, auth.LoginRefused),
    "AFFILIATION_PENDING": (grpc.StatusCode.FAILED_PRECONDITION, auth.LoginRefused),
    "LOGIN_NOT_FOUND": (grpc.StatusCode.NOT_FOUND, auth.NotFound),
    "ACCOUNT_NOT_FOUND": (grpc.StatusCode.NOT_FOUND, auth.AccountNotFound),
    "CALLER_NOT_ALLOWED": (grpc.StatusCode.PERMISSION_DENIED, auth.CallerNotAllowed),
    "SERVICE_UNAVAILABLE": (grpc.StatusCode.UNAVAILABLE, auth.ServiceUnavailable),
    "ACCOUNT_SUSPENDED": (grpc.StatusCode.FAILED_PRECONDITION, auth.Locked),
    "CLIENT_THROTTLED": (grpc.StatusCode.RESOURCE_EXHAUSTED, auth.Locked),
    "ATTEMPT_IN_PROGRESS": (grpc.StatusCode.ABORTED, auth.ServiceUnavailable),
}


def run(*command: str | Path, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed tool invocations, no shell
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, check=False
    )


# --- contract tooling --------------------------------------------------------


def test_regenerating_the_stubs_gives_exactly_the_committed_files() -> None:
    """Regenerating the Python stubs from the proto reproduces the committed files byte for byte."""
    result = run(sys.executable, REPO_ROOT / "scripts" / "gen_protos.py", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_passes() -> None:
    """The contract passes buf lint with the STANDARD rules."""
    result = run(BUF, "lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_against_the_released_image_passes() -> None:
    """The contract makes no breaking change against the committed image of the release."""
    result = run(BUF, "breaking", "--against", BASELINE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_refuses_a_renamed_field(tmp_path: Path) -> None:
    """Renaming a released field is reported as breaking against the committed image."""
    shutil.copy(REPO_ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(REPO_ROOT / "protos", tmp_path / "protos")
    proto = tmp_path / PROTO
    proto.write_text(proto.read_text().replace("string masked_phone = 3;", "string phone = 3;"))

    result = run(BUF, "breaking", "--against", BASELINE, cwd=tmp_path)

    assert result.returncode != 0
    assert "masked_phone" in result.stdout


def test_every_error_reason_of_the_contract_has_a_client_family() -> None:
    """Each ErrorReason of the proto is covered by the client's exception families."""
    reasons = {
        value.name.removeprefix("ERROR_REASON_")
        for value in auth_pb2.ErrorReason.DESCRIPTOR.values
        if value.number != auth_pb2.ERROR_REASON_UNSPECIFIED
    }
    assert reasons == set(FAMILIES)


# --- AuthClient against a scripted in-process server ------------------------


@dataclass(frozen=True)
class Refusal:
    """What the scripted servicer aborts with (the fields of a ``grpc.Status``)."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()


def refusal(reason: str, message: str, **values: Any) -> Refusal:
    """A rich status exactly as AuthService sends it: built by the shared codec."""
    sent = codec.encode(reason, message, **values)
    return Refusal(sent.code, sent.details, tuple(sent.trailing_metadata))


class ScriptedServicer(auth_pb2_grpc.AuthServiceServicer):
    """Answers every RPC with ``refusal`` if set, else a fixed response; records metadata."""

    def __init__(self) -> None:
        self.target = ""
        self.refusal: Refusal | None = None
        self.metadata: list[dict[str, str | bytes]] = []
        self.requests: list[Message] = []
        self.delay = 0.0

    async def _answer(
        self, context: grpc.aio.ServicerContext[_Request, _Response], response: _Response
    ) -> _Response:
        self.metadata.append(dict(context.invocation_metadata() or ()))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.refusal is not None:
            await context.abort(
                self.refusal.code, self.refusal.details, self.refusal.trailing_metadata
            )
        return response

    async def CheckCredentials(  # noqa: N802 - generated servicer method names
        self,
        request: auth_pb2.CheckCredentialsRequest,
        context: grpc.aio.ServicerContext[
            auth_pb2.CheckCredentialsRequest, auth_pb2.CheckCredentialsResponse
        ],
    ) -> auth_pb2.CheckCredentialsResponse:
        result = auth_pb2.CodeRequired(login_id="login-1", masked_email="t***@t***.com")
        return await self._answer(context, auth_pb2.CheckCredentialsResponse(code_required=result))

    async def RequestCode(  # noqa: N802
        self,
        request: auth_pb2.RequestCodeRequest,
        context: grpc.aio.ServicerContext[
            auth_pb2.RequestCodeRequest, auth_pb2.RequestCodeResponse
        ],
    ) -> auth_pb2.RequestCodeResponse:
        return await self._answer(context, auth_pb2.RequestCodeResponse(codes_remaining=4))

    async def VerifyCode(  # noqa: N802
        self,
        request: auth_pb2.VerifyCodeRequest,
        context: grpc.aio.ServicerContext[auth_pb2.VerifyCodeRequest, auth_pb2.VerifyCodeResponse],
    ) -> auth_pb2.VerifyCodeResponse:
        authenticated = auth_pb2.Authenticated(account_id=f"account-of-{request.login_id}")
        response = auth_pb2.VerifyCodeResponse(authenticated=authenticated)
        return await self._answer(context, response)

    async def GetLockStatus(  # noqa: N802
        self,
        request: auth_pb2.GetLockStatusRequest,
        context: grpc.aio.ServicerContext[
            auth_pb2.GetLockStatusRequest, auth_pb2.GetLockStatusResponse
        ],
    ) -> auth_pb2.GetLockStatusResponse:
        return await self._answer(context, auth_pb2.GetLockStatusResponse(locked=True))

    async def ResetAccount(  # noqa: N802
        self,
        request: auth_pb2.ResetAccountRequest,
        context: grpc.aio.ServicerContext[
            auth_pb2.ResetAccountRequest, auth_pb2.ResetAccountResponse
        ],
    ) -> auth_pb2.ResetAccountResponse:
        sent = request.send_provisional_code
        return await self._answer(
            context, auth_pb2.ResetAccountResponse(provisional_code_sent=sent)
        )

    async def UnlockAccount(  # noqa: N802
        self,
        request: auth_pb2.UnlockAccountRequest,
        context: grpc.aio.ServicerContext[
            auth_pb2.UnlockAccountRequest, auth_pb2.UnlockAccountResponse
        ],
    ) -> auth_pb2.UnlockAccountResponse:
        return await self._answer(context, auth_pb2.UnlockAccountResponse(locks_cleared=2))

    async def GetAccount(  # noqa: N802
        self,
        request: auth_pb2.GetAccountRequest,
        context: grpc.aio.ServicerContext[auth_pb2.GetAccountRequest, auth_pb2.GetAccountResponse],
    ) -> auth_pb2.GetAccountResponse:
        self.requests.append(request)
        return await self._answer(context, auth_pb2.GetAccountResponse(email_validated=True))

    async def RevokeTrustedDevices(  # noqa: N802
        self,
        request: auth_pb2.RevokeTrustedDevicesRequest,
        context: grpc.aio.ServicerContext[
            auth_pb2.RevokeTrustedDevicesRequest, auth_pb2.RevokeTrustedDevicesResponse
        ],
    ) -> auth_pb2.RevokeTrustedDevicesResponse:
        self.requests.append(request)
        return await self._answer(context, auth_pb2.RevokeTrustedDevicesResponse(revoked_count=2))


@pytest.fixture
async def servicer() -> AsyncIterator[ScriptedServicer]:
    servicer = ScriptedServicer()
    server = grpc.aio.server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server)
    servicer.target = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    yield servicer
    await server.stop(grace=None)


@pytest.fixture
async def channel(servicer: ScriptedServicer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(servicer.target) as channel:
        yield channel


@pytest.fixture
def client(channel: grpc.aio.Channel) -> auth.AuthClient:
    return auth.AuthClient(channel, api_key="portal-key", timeout=5.0)


async def test_each_rpc_returns_its_response_and_sends_the_bearer_key(
    client: auth.AuthClient, servicer: ScriptedServicer
) -> None:
    """Every client method returns the RPC's response message and sends the API key as a bearer."""
    checked = await client.check_credentials(nir="184127512345678", password="pw")
    sent = await client.request_code(login_id="login-1")
    verified = await client.verify_code(login_id="login-1", code="123456", trust_device=True)
    status = await client.get_lock_status(nir="184127512345678")
    reset = await client.reset_account(
        nir="184127512345678", advisor_id="adv-1", reason="appel", send_provisional_code=True
    )

    assert checked.code_required.login_id == "login-1"
    assert sent.codes_remaining == 4
    assert verified.authenticated.account_id == "account-of-login-1"
    assert status.locked
    assert reset.provisional_code_sent
    assert [m.get("authorization") for m in servicer.metadata] == ["Bearer portal-key"] * 5


async def test_the_advisor_methods_send_their_fields_and_return_the_responses(
    client: auth.AuthClient, servicer: ScriptedServicer
) -> None:
    """get_account and revoke_trusted_devices send the NIR, advisor and reason, with the key."""
    account = await client.get_account(nir="184127512345678")
    revoked = await client.revoke_trusted_devices(
        nir="184127512345678", advisor_id="adv-1", reason="téléphone volé"
    )

    assert account.email_validated
    assert revoked.revoked_count == 2
    assert servicer.requests == [
        auth_pb2.GetAccountRequest(nir="184127512345678"),
        auth_pb2.RevokeTrustedDevicesRequest(
            nir="184127512345678", advisor_id="adv-1", reason="téléphone volé"
        ),
    ]
    assert [m.get("authorization") for m in servicer.metadata] == ["Bearer portal-key"] * 2


async def test_a_nir_without_account_raises_account_not_found(
    client: auth.AuthClient, servicer: ScriptedServicer
) -> None:
    """ACCOUNT_NOT_FOUND raises AccountNotFound, which a caller can also catch as NotFound."""
    text = "Aucun compte ameli pour ce numéro de sécurité sociale."
    servicer.refusal = refusal("ACCOUNT_NOT_FOUND", text)

    with pytest.raises(auth.AccountNotFound) as raised:
        await client.get_account(nir="184127512345678")
    with pytest.raises(auth.NotFound):
        await client.revoke_trusted_devices(nir="184127512345678", advisor_id="a", reason="r")

    assert raised.value.message == text
    assert raised.value.code == grpc.StatusCode.NOT_FOUND


async def test_no_api_key_sends_no_authorization(
    channel: grpc.aio.Channel, servicer: ScriptedServicer
) -> None:
    """A client built without an API key sends no authorization metadata."""
    await auth.AuthClient(channel).request_code(login_id="login-1")

    assert "authorization" not in servicer.metadata[0]


async def test_wrong_code_raises_wrong_entry_with_attempts_remaining(
    client: auth.AuthClient, servicer: ScriptedServicer
) -> None:
    """A wrong code raises WrongEntry with its reason, French message and attempts left."""
    servicer.refusal = refusal("INVALID_CODE", WRONG_ENTRY_TEXT, attempts_remaining=2)

    with pytest.raises(auth.WrongEntry) as raised:
        await client.verify_code(login_id="login-1", code="000000")

    error = raised.value
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert error.reason == "INVALID_CODE"
    assert error.message == WRONG_ENTRY_TEXT
    assert str(error) == WRONG_ENTRY_TEXT
    assert error.attempts_remaining == 2
    assert error.lock_expire_time is None
    assert error.retry_delay is None
    assert isinstance(error.__cause__, grpc.aio.AioRpcError)


async def test_a_synchronous_stubs_error_decodes_the_same(servicer: ScriptedServicer) -> None:
    """error_from_rpc_error reads a grpc.RpcError of a synchronous channel like an async one."""
    servicer.refusal = refusal("INVALID_CODE", WRONG_ENTRY_TEXT, attempts_remaining=1)

    def call() -> grpc.RpcError:
        with grpc.insecure_channel(servicer.target) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            try:
                stub.RequestCode(auth_pb2.RequestCodeRequest(login_id="l"), timeout=5.0)
            except grpc.RpcError as error:
                return error
        raise AssertionError("expected a refusal")

    error = auth.error_from_rpc_error(await asyncio.to_thread(call), request_id="sent-id")

    assert type(error) is auth.WrongEntry
    assert (error.message, error.attempts_remaining) == (WRONG_ENTRY_TEXT, 1)
    assert error.request_id == "sent-id"  # the scripted servicer echoes nothing


async def test_code_lock_raises_locked_with_lock_time_and_retry_delay(
    client: auth.AuthClient, servicer: ScriptedServicer
) -> None:
    """A lock raises Locked with its end as an aware UTC datetime and the RetryInfo delay."""
    servicer.refusal = refusal(
        "CODE_ATTEMPTS_LOCKED",
        CODE_LOCK_TEXT,
        lock_expire_time=datetime(2023, 1, 5, 14, 5, tzinfo=UTC),
        retry_delay=timedelta(minutes=15),
    )

    with pytest.raises(auth.Locked) as raised:
        await client.verify_code(login_id="login-1", code="000000")

    error = raised.value
    assert error.reason == "CODE_ATTEMPTS_LOCKED"
    assert error.message == CODE_LOCK_TEXT
    assert error.lock_expire_time == datetime(2023, 1, 5, 14, 5, tzinfo=UTC)
    assert error.lock_expire_time.tzinfo is UTC
    assert error.retry_delay == timedelta(minutes=15)
    assert error.attempts_remaining is None
    assert error.status is not None
    assert error.status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]


@pytest.mark.parametrize(("reason", "family"), [(r, f) for r, (_, f) in FAMILIES.items()])
async def test_each_reason_raises_its_family(
    client: auth.AuthClient,
    servicer: ScriptedServicer,
    reason: str,
    family: type[auth.AuthServiceError],
) -> None:
    """Each ErrorReason sent by the service raises the exception family the client documents."""
    code = FAMILIES[reason][0]
    servicer.refusal = refusal(reason, f"texte de {reason}")

    with pytest.raises(auth.AuthServiceError) as raised:
        await client.request_code(login_id="login-1")

    assert type(raised.value) is family
    assert (raised.value.code, raised.value.reason) == (code, reason)
    assert raised.value.message == f"texte de {reason}"


@pytest.mark.parametrize(
    ("code", "family"),
    [
        (grpc.StatusCode.UNAVAILABLE, auth.ServiceUnavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, auth.ServiceUnavailable),
        (grpc.StatusCode.CANCELLED, auth.ServiceUnavailable),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, auth.ServiceUnavailable),
        (grpc.StatusCode.PERMISSION_DENIED, auth.CallerNotAllowed),
        (grpc.StatusCode.UNAUTHENTICATED, auth.CallerNotAllowed),
        (grpc.StatusCode.INTERNAL, auth.AuthServiceError),
    ],
)
async def test_a_status_without_rich_details_is_classified_by_code(
    client: auth.AuthClient,
    servicer: ScriptedServicer,
    code: grpc.StatusCode,
    family: type[auth.AuthServiceError],
) -> None:
    """A plain status (from a proxy or the transport) is classified by its gRPC code alone."""
    servicer.refusal = Refusal(code, "plain")

    with pytest.raises(auth.AuthServiceError) as raised:
        await client.get_lock_status(nir="184127512345678")

    assert type(raised.value) is family
    assert raised.value.reason == ""
    assert raised.value.attempts_remaining is None
    assert raised.value.message != "plain"  # a French default, never the transport's English
    if family is auth.ServiceUnavailable:
        assert raised.value.message == auth.UNAVAILABLE_MESSAGE


async def test_a_call_past_its_deadline_raises_service_unavailable_in_french(
    channel: grpc.aio.Channel, servicer: ScriptedServicer
) -> None:
    """A service that answers after the client's deadline reads as ServiceUnavailable."""
    servicer.delay = 2.0

    with pytest.raises(auth.ServiceUnavailable) as raised:
        await auth.AuthClient(channel, timeout=0.2).request_code(login_id="login-1")

    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert raised.value.message == auth.UNAVAILABLE_MESSAGE


async def test_a_response_too_large_for_the_channel_raises_service_unavailable_in_french(
    servicer: ScriptedServicer,
) -> None:
    """The transport's RESOURCE_EXHAUSTED (message too large) is ServiceUnavailable, in French."""
    options = [("grpc.max_receive_message_length", 8)]
    async with grpc.aio.insecure_channel(servicer.target, options=options) as channel:
        with pytest.raises(auth.ServiceUnavailable) as raised:
            await auth.AuthClient(channel, timeout=5.0).check_credentials(nir="1", password="p")

    assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert raised.value.message == auth.UNAVAILABLE_MESSAGE


async def test_an_unreachable_service_raises_service_unavailable_in_french() -> None:
    """A service nobody listens to raises ServiceUnavailable with the French default message."""
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")  # take a free port, then release it
    await server.start()
    await server.stop(grace=None)

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(auth.ServiceUnavailable) as raised:
            await auth.AuthClient(channel, timeout=5.0).request_code(login_id="login-1")

    assert raised.value.message == auth.UNAVAILABLE_MESSAGE


def test_the_client_names_are_public_from_the_package() -> None:
    """`ameli.auth` re-exports exactly the client module's public names, each the same object;
    the exception families are drawn where they are defined."""
    import ameli.auth as package

    assert sorted(package.__all__) == sorted(auth.__all__)
    for name in auth.__all__:
        assert getattr(package, name) is getattr(auth, name)
    import ameli.auth.errors as codec  # the family tree is drawn in the codec's docstring

    for family in (auth.InvalidInput, auth.Locked, auth.AccountNotFound, auth.ServiceUnavailable):
        assert family.__name__ in (codec.__doc__ or "")


# --- the NIR check of the client, against the service's -----------------------

_NIR_CHARACTERS = st.sampled_from("0123456789" * 4 + "2ABab. \t\u00a0é")


def _nirs_near_valid() -> st.SearchStrategy[str]:
    """Valid NIRs (13 or 15 characters, Corsica too) with random edits, and random strings."""
    valid = st.builds(
        lambda sex, year, month, department, rest, keep_key: _with_key(
            f"{sex}{year:02d}{month:02d}{department}{rest:06d}", keep_key
        ),
        st.sampled_from("12"),
        st.integers(0, 99),
        st.integers(1, 12),
        st.sampled_from(["75", "2A", "2B", "2a", "99"]),
        st.integers(0, 999_999),
        st.booleans(),
    )
    edited = st.tuples(valid, st.integers(0, 15), st.text(_NIR_CHARACTERS, max_size=2)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]
    )
    return st.one_of(valid, edited, st.text(_NIR_CHARACTERS, max_size=20), st.text(max_size=70))


def _with_key(body: str, keep_key: bool) -> str:
    if not keep_key:
        return body
    digits = body[:5] + {"2A": "19", "2B": "18"}.get(body[5:7].upper(), body[5:7]) + body[7:]
    return f"{body}{97 - int(digits) % 97:02d}"


def _service_reading(raw: str) -> str | None:
    try:
        return Nir.parse(raw).value
    except AuthError:
        return None


@given(_nirs_near_valid())
@example("1 80 01 75 123 456 78")
@example("1.80.01.75.123.456.60")
@example("2 53 07 2B 073 004 70")
@example("1" * 65)
def test_the_client_reads_a_nir_exactly_as_the_service_does(raw: str) -> None:
    """The client's NIR check accepts exactly the strings the service accepts, read the same."""
    assert normalized_nir(raw) == _service_reading(raw)
