"""Every field of every request, checked in one place before the call has any effect.

SPEC §6 and §8: a value the database cannot store (a NUL, a control
character, an over-long field) is refused up front, never answered INTERNAL
after a side effect. ``check_request`` walks the request from its protobuf
descriptor, nested messages included, so a field added to the contract is
checked as soon as it exists:

- a text field by its rule in ``FIELD_RULES`` (keyed by its path, as the
  ``BadRequest`` names it); a test enumerates every text field of every
  AuthService request and fails on one without a rule; until it has one, it
  gets the strict ``UNLISTED`` rule;
- an enum field must hold a value the contract knows (proto3 keeps unknown
  numbers; ``CHANNEL_UNSPECIFIED`` is known, the servicer reads it as the web).

Every offending field is named, not only the first. The refusal is
``INVALID_REQUEST``, or ``INVALID_NIR`` when a NIR is among the offending
fields (step 1 of SPEC §2, what the person can fix first).

What stays in the domain is meaning, not form: an empty password is checked
after the lock (SPEC §2: a lock answers whatever the password), an empty code
is a wrong code, an empty login id an unknown login.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from ameli_grpc.domain.clients import parse_client_address
from ameli_grpc.domain.errors import AuthError, ErrorReason, FieldViolation
from ameli_grpc.domain.messages import Messages
from ameli_grpc.domain.nir import MAX_NIR_INPUT, Nir

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc, exactly


class Characters(enum.Enum):
    """Which characters a text field may hold."""

    PRINTABLE = "printable"  # str.isprintable(): no control, format or line separator
    NO_CONTROL = "no_control"  # free text: anything but a control character (a NBSP is fine)


@dataclass(frozen=True)
class TextRule:
    """The form of one text field: length, characters, and for some a syntax."""

    max_length: int
    required: bool = False  # 1 non-blank character at least
    characters: Characters = Characters.PRINTABLE
    syntax: Callable[[str], bool] | None = None
    syntax_description: str | None = None  # French, for BadRequest; the syntax's own words
    reason: ErrorReason = ErrorReason.INVALID_REQUEST

    def allows(self, value: str) -> bool:
        """Length first: nothing else is read of an over-long value."""
        if len(value) > self.max_length or (self.required and not value.strip()):
            return False
        if _CONTROL.search(value) or (
            self.characters is Characters.PRINTABLE and not value.isprintable()
        ):
            return False
        return self.syntax is None or self.syntax(value)

    @property
    def description(self) -> str:
        if self.syntax_description is not None:
            return self.syntax_description
        return Messages.text_field(
            self.max_length,
            required=self.required,
            printable=self.characters is Characters.PRINTABLE,
        )


def _is_nir(text: str) -> bool:
    try:
        Nir.parse(text)
    except AuthError:
        return False
    return True


def _is_client_address(text: str) -> bool:
    try:
        parse_client_address(text)
    except ValueError:
        return False
    return True


_FREE_TEXT = Characters.NO_CONTROL

# Every text field of every request, by path. The limits of SPEC §7.4 and §8; the others are
# generous bounds on what the service itself hands out (tokens and login ids of ~40 to ~70
# characters, 6-digit codes) or a person could type.
FIELD_RULES: Final[Mapping[str, TextRule]] = {
    "nir": TextRule(
        MAX_NIR_INPUT,
        characters=_FREE_TEXT,  # a NIR pasted with non-breaking spaces is still a NIR
        syntax=_is_nir,
        syntax_description=Messages.NIR_FORMAT,
        reason=ErrorReason.INVALID_NIR,
    ),
    "password": TextRule(1024, characters=_FREE_TEXT),  # empty: the domain, after the lock
    "device_token": TextRule(256),
    "login_id": TextRule(256),
    "code": TextRule(64, characters=_FREE_TEXT),  # digits, maybe with spaces
    "advisor_id": TextRule(64, required=True),
    "reason": TextRule(500, required=True, characters=_FREE_TEXT),
    "client.ip": TextRule(
        64, syntax=_is_client_address, syntax_description=Messages.CLIENT_IP_FORMAT
    ),
    "client.user_agent": TextRule(512),
}
UNLISTED: Final = TextRule(64)  # a field the table does not know yet (a test fails meanwhile)


def check_request(request: Message) -> None:
    """Raise ``AuthError`` naming every offending field of ``request``; return if none."""
    found = list(_violations(request, "", ""))
    if not found:
        return
    if any(reason is ErrorReason.INVALID_NIR for reason, _ in found):
        reason, message = ErrorReason.INVALID_NIR, Messages.INVALID_NIR
    else:
        reason, message = ErrorReason.INVALID_REQUEST, Messages.INVALID_REQUEST
    raise AuthError(reason, message, violations=tuple(violation for _, violation in found))


def text_field_paths(descriptor: Any, prefix: str = "") -> Iterator[str]:
    """The path of every text field of a request type, nested messages included."""
    for field in _fields(descriptor):
        path = prefix + field.name
        if field.type == FieldDescriptor.TYPE_STRING:
            yield path
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            _refuse_map(field)
            yield from text_field_paths(field.message_type, f"{path}.")


def _violations(
    message: Message, prefix: str, shown: str
) -> Iterator[tuple[ErrorReason, FieldViolation]]:
    """``prefix``: the path of the rules ("client."); ``shown``: the same with list indexes."""
    for field in _fields(message.DESCRIPTOR):
        path = prefix + field.name
        for where, value in _values(message, field, shown + field.name):
            if field.type == FieldDescriptor.TYPE_STRING:
                rule = FIELD_RULES.get(path, UNLISTED)
                if not rule.allows(value):
                    yield rule.reason, FieldViolation(where, rule.description)
            elif field.type == FieldDescriptor.TYPE_ENUM:
                known = cast(Any, field.enum_type).values_by_number
                if value not in known:
                    named = [known[number].name for number in sorted(known) if number != 0]
                    yield ErrorReason.INVALID_REQUEST, FieldViolation(where, Messages.one_of(named))
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                yield from _violations(value, f"{path}.", f"{where}.")


def _values(message: Message, field: FieldDescriptor, where: str) -> Iterator[tuple[str, Any]]:
    """(where, value) of each value of the field: one, or one per element of a list.

    An absent sub-message is left alone: all its fields are empty, which no
    nested rule refuses (a test keeps it so).
    """
    value = getattr(message, field.name)
    if field.is_repeated:
        _refuse_map(field)
        for index, element in enumerate(value):
            yield f"{where}[{index}]", element
    elif field.type != FieldDescriptor.TYPE_MESSAGE or message.HasField(field.name):
        yield where, value


def _fields(descriptor: Any) -> list[FieldDescriptor]:
    """The fields of a message type (the stubs type the pure-Python and upb descriptors apart)."""
    return list(cast("list[FieldDescriptor]", descriptor.fields))


def _refuse_map(field: FieldDescriptor) -> None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        raise TypeError(f"{field.full_name}: map fields are not validated yet")
