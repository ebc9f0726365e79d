"""The one codec of the refusals: what the server encodes, the client decodes, for every reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from ameli.auth import errors as codec
from ameli.auth.v1 import auth_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ameli_grpc.domain.errors import AuthError, ErrorReason, FieldViolation
from ameli_grpc.domain.messages import Messages
from ameli_grpc.server.errors import internal_status, refusal_status

NOW = datetime(2023, 1, 5, 13, 50, 0, tzinfo=UTC)
LOCK_END = datetime(2023, 1, 5, 14, 5, 0, 250_000, tzinfo=UTC)  # not on a whole second

# SPEC §3 and §7.6: the gRPC code of each reason, and the client family it raises.
EXPECTED: dict[str, tuple[grpc.StatusCode, type[codec.AuthServiceError]]] = {
    "INVALID_NIR": (grpc.StatusCode.INVALID_ARGUMENT, codec.InvalidInput),
    "INVALID_REQUEST": (grpc.StatusCode.INVALID_ARGUMENT, codec.InvalidInput),
    "INVALID_CREDENTIALS": (grpc.StatusCode.UNAUTHENTICATED, codec.WrongEntry),
    "INVALID_CODE": (grpc.StatusCode.UNAUTHENTICATED, codec.WrongEntry),
    "PASSWORD_ATTEMPTS_LOCKED": (grpc.StatusCode.FAILED_PRECONDITION, codec.Locked),
    "CODE_ATTEMPTS_LOCKED": (grpc.StatusCode.FAILED_PRECONDITION, codec.Locked),
    "CODE_QUOTA_EXCEEDED": (grpc.StatusCode.RESOURCE_EXHAUSTED, codec.Locked),
    "CODE_EXPIRED": (grpc.StatusCode.FAILED_PRECONDITION, codec.LoginRefused),
    "CODE_NOT_REQUESTED": (grpc.StatusCode.FAILED_PRECONDITION, codec.LoginRefused),
    "EMAIL_NOT_VALIDATED": (grpc.StatusCode.FAILED_PRECONDITION, codec.LoginRefused),
    "NOT_COVERED": (grpc.StatusCode.FAILED_PRECONDITION, codec.LoginRefused),
    "AFFILIATION_PENDING": (grpc.StatusCode.FAILED_PRECONDITION, codec.LoginRefused),
    "LOGIN_NOT_FOUND": (grpc.StatusCode.NOT_FOUND, codec.NotFound),
    "ACCOUNT_NOT_FOUND": (grpc.StatusCode.NOT_FOUND, codec.AccountNotFound),
    "CALLER_NOT_ALLOWED": (grpc.StatusCode.PERMISSION_DENIED, codec.CallerNotAllowed),
    "SERVICE_UNAVAILABLE": (grpc.StatusCode.UNAVAILABLE, codec.ServiceUnavailable),
    "ACCOUNT_SUSPENDED": (grpc.StatusCode.FAILED_PRECONDITION, codec.Locked),
    "CLIENT_THROTTLED": (grpc.StatusCode.RESOURCE_EXHAUSTED, codec.Locked),
    "ATTEMPT_IN_PROGRESS": (grpc.StatusCode.ABORTED, codec.ServiceUnavailable),
}

PROTO_REASONS = sorted(
    value.name.removeprefix("ERROR_REASON_")
    for value in auth_pb2.ErrorReason.DESCRIPTOR.values
    if value.number != auth_pb2.ERROR_REASON_UNSPECIFIED
)


def decoded(sent: grpc.Status, request_id: str | None = None) -> codec.AuthServiceError:
    """What a client reads from the status the server aborts with."""
    return codec.decode(sent.code, sent.details, sent.trailing_metadata, request_id=request_id)


def unpacked(sent: grpc.Status) -> status_pb2.Status:
    """The raw ``google.rpc.Status`` of the ``grpc-status-details-bin`` trailer."""
    (value,) = [v for k, v in sent.trailing_metadata if k == "grpc-status-details-bin"]
    status = status_pb2.Status()
    status.ParseFromString(value)
    return status


def test_the_codec_the_proto_and_the_domain_name_the_same_reasons() -> None:
    """Every ErrorReason of the proto has an entry in the codec and in the domain, and no more."""
    assert sorted(codec.REASONS) == PROTO_REASONS
    assert sorted(reason.value for reason in ErrorReason) == PROTO_REASONS
    assert sorted(EXPECTED) == PROTO_REASONS


@pytest.mark.parametrize("reason", PROTO_REASONS)
def test_every_reason_round_trips_from_the_domain_to_its_exception(reason: str) -> None:
    """A domain refusal encoded by the server decodes to its family, code, text and values."""
    error = AuthError(
        ErrorReason(reason),
        f"texte de {reason}",
        attempts_remaining=2,
        lock_expire_time=LOCK_END,
        violations=(FieldViolation("nir", "13 caractères"),),
        quota_violation="3 codes par heure",
    )

    exception = decoded(refusal_status(error, NOW), request_id="rid-1")

    code, family = EXPECTED[reason]
    assert type(exception) is family
    assert (exception.code, exception.reason) == (code, reason)
    assert exception.message == str(exception) == f"texte de {reason}"
    assert exception.attempts_remaining == 2
    assert exception.lock_expire_time == datetime(2023, 1, 5, 14, 5, 1, tzinfo=UTC)  # rounded up
    assert exception.retry_delay == timedelta(minutes=15, seconds=1)  # rounded up as well
    assert exception.field_violations == (codec.FieldViolation("nir", "13 caractères"),)
    assert exception.quota_violations == (codec.QuotaViolation("nir", "3 codes par heure"),)
    assert exception.request_id == "rid-1"


def test_the_wire_format_is_the_specs() -> None:
    """The ErrorInfo domain, metadata keys and LocalizedMessage locale are SPEC §3's literally."""
    error = AuthError(
        ErrorReason.INVALID_CODE,
        "texte",
        attempts_remaining=1,
        lock_expire_time=datetime(2023, 1, 5, 14, 5, tzinfo=UTC),
    )

    status = unpacked(refusal_status(error, NOW))

    info, localized, retry = (
        error_details_pb2.ErrorInfo(),
        error_details_pb2.LocalizedMessage(),
        error_details_pb2.RetryInfo(),
    )
    assert [status.details[i].Unpack(d) for i, d in enumerate((info, localized, retry))] == [
        True
    ] * 3
    assert status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert (info.reason, info.domain) == ("INVALID_CODE", "auth.ameli.fr")
    assert dict(info.metadata) == {
        "attemptsRemaining": "1",
        "lockExpireTime": "2023-01-05T14:05:00Z",
    }
    assert (localized.locale, localized.message) == ("fr-FR", "texte")
    assert retry.retry_delay.seconds == 15 * 60


def test_a_refusal_without_values_carries_no_metadata_nor_retry() -> None:
    """A reason without counters or lock decodes with every optional value None or empty."""
    error = AuthError(ErrorReason.CODE_EXPIRED, "expiré")

    sent = refusal_status(error, NOW)
    exception = decoded(sent)

    info = error_details_pb2.ErrorInfo()
    assert unpacked(sent).details[0].Unpack(info)
    assert dict(info.metadata) == {}
    assert exception.attempts_remaining is None
    assert exception.lock_expire_time is None
    assert exception.retry_delay is None
    assert exception.field_violations == ()
    assert exception.quota_violations == ()
    assert exception.request_id is None


def test_a_keyless_caller_is_refused_unauthenticated_and_still_caller_not_allowed() -> None:
    """The code override of CALLER_NOT_ALLOWED (no key) keeps the reason's family."""
    error = AuthError(ErrorReason.CALLER_NOT_ALLOWED, Messages.CALLER_NOT_ALLOWED)

    exception = decoded(refusal_status(error, NOW, grpc.StatusCode.UNAUTHENTICATED))

    assert type(exception) is codec.CallerNotAllowed
    assert exception.code == grpc.StatusCode.UNAUTHENTICATED


def test_an_internal_error_decodes_to_the_base_error_with_its_french_text() -> None:
    """The server's INTERNAL status has no reason and reads as the base error, in French."""
    exception = decoded(internal_status())

    assert type(exception) is codec.AuthServiceError
    assert (exception.code, exception.reason) == (grpc.StatusCode.INTERNAL, "")
    assert exception.message == Messages.INTERNAL


def test_the_clients_french_defaults_are_the_services_texts() -> None:
    """The texts the client shows without a status are the ones the service would send."""
    assert codec.UNAVAILABLE_MESSAGE == Messages.SERVICE_UNAVAILABLE
    assert codec.CALLER_NOT_ALLOWED_MESSAGE == Messages.CALLER_NOT_ALLOWED
    assert codec.INTERNAL_MESSAGE == Messages.INTERNAL


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ],
)
def test_transport_failures_are_service_unavailable_in_french(code: grpc.StatusCode) -> None:
    """A cancelled, late or transport failure without ErrorInfo reads as ServiceUnavailable."""
    exception = codec.decode(code, "Received message larger than max (70000 vs. 65536)")

    assert type(exception) is codec.ServiceUnavailable
    assert exception.reason == ""
    assert exception.message == codec.UNAVAILABLE_MESSAGE


def test_a_trailer_that_disagrees_with_the_call_is_not_trusted() -> None:
    """A rich status whose code differs from the call's is ignored, as rpc_status does."""
    sent = refusal_status(AuthError(ErrorReason.INVALID_CODE, "faux", attempts_remaining=1), NOW)

    exception = codec.decode(grpc.StatusCode.UNAVAILABLE, sent.details, sent.trailing_metadata)

    assert type(exception) is codec.ServiceUnavailable
    assert exception.attempts_remaining is None
    assert exception.status is None


def test_the_codec_encodes_what_rpc_status_reads() -> None:
    """The packed status is the one grpc-status's own helper would send for it."""
    status = codec.rich_status(
        "INVALID_NIR", "nir", field_violations=[codec.FieldViolation("nir", "x")]
    )

    assert codec.encode(
        "INVALID_NIR", "nir", field_violations=[codec.FieldViolation("nir", "x")]
    ) == (rpc_status.to_status(status))
