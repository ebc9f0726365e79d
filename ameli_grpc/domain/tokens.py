"""Random codes and tokens, and the keyed hashes that are stored instead of them."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

CODE_DIGITS = 6
_PROVISIONAL_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read from an SMS
_PROVISIONAL_LENGTH = 10
MIN_KEY_BYTES = 32  # AMELI_SECRET_KEY and each of AMELI_PREVIOUS_SECRET_KEYS


def new_security_code() -> str:
    """Six random digits (``secrets``), leading zeros included."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def new_provisional_code() -> str:
    return "".join(secrets.choice(_PROVISIONAL_ALPHABET) for _ in range(_PROVISIONAL_LENGTH))


def new_token() -> str:
    """A 256-bit random token, URL-safe (device tokens, setup tokens)."""
    return secrets.token_urlsafe(32)


def sha256_hex(token: str) -> str:
    """The unkeyed hash of a random token (enough: the token has 256 bits of entropy)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def constant_time_equal(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode(), right.encode())


class Keyring:
    """Keyed hashes (HMAC-SHA256) under the service's secret key.

    Each use has its own label so that a digest of one kind can never stand
    for another. Without the key, a digest reveals nothing of its input.

    After a rotation (``AMELI_PREVIOUS_SECRET_KEYS``) the digests under the
    previous keys are still computed, never issued: what was stored under
    them (device tokens, store state, codes in flight) stays recognised until
    it has moved under the current key. Without previous keys every
    ``previous_*`` method answers an empty tuple and costs nothing.
    """

    def __init__(self, secret_key: bytes, previous_keys: Sequence[bytes] = ()) -> None:
        for key in (secret_key, *previous_keys):
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(f"a secret key must be at least {MIN_KEY_BYTES} bytes")
        self._key = secret_key
        # the current key listed again, or a key listed twice, would only cost lookups
        self._previous = tuple(dict.fromkeys(k for k in previous_keys if k != secret_key))

    @property
    def rotating(self) -> bool:
        """Whether previous keys are configured (a rotation is under way)."""
        return bool(self._previous)

    def _digest(self, label: str, *parts: str, key: bytes | None = None) -> str:
        # surrogatepass: even a malformed string hashes instead of crashing the call
        message = "\x1f".join((label, *parts)).encode("utf-8", "surrogatepass")
        return hmac.new(key or self._key, message, hashlib.sha256).hexdigest()

    def _previous_digests(self, label: str, *parts: str) -> tuple[str, ...]:
        return tuple(self._digest(label, *parts, key=key) for key in self._previous)

    def nir_ref(self, nir: str) -> str:
        """Stands for a NIR in the store, the audit trail and logs."""
        return self._digest("nir", nir)[:32]

    def previous_nir_refs(self, nir: str) -> tuple[str, ...]:
        """The NIR's refs under the previous keys: where its store state may still be."""
        return tuple(ref[:32] for ref in self._previous_digests("nir", nir))

    def client_ref(self, address: str) -> str:
        """Stands for a regulated client address (an IPv4 address or an IPv6 /64) in the store."""
        return self._digest("client", address)[:32]

    def previous_client_refs(self, address: str) -> tuple[str, ...]:
        return tuple(ref[:32] for ref in self._previous_digests("client", address))

    def code_digest(self, login_id: str, code: str) -> str:
        return self._digest("code", login_id, code)

    def code_matches(self, login_id: str, code: str, digest: str) -> bool:
        """Whether ``code`` is the one whose digest is stored, under the current key or a
        previous one (a code sent just before a rotation); constant-time for each key."""
        candidates = (
            self.code_digest(login_id, code),
            *self._previous_digests("code", login_id, code),
        )
        matches = [constant_time_equal(candidate, digest) for candidate in candidates]
        return any(matches)

    def token_hash(self, token: str) -> str:
        return self._digest("device", token)

    def previous_token_hashes(self, token: str) -> tuple[str, ...]:
        """The device token's hashes under the previous keys: a device trusted before a
        rotation is found by one of them (and then stored again under ``token_hash``)."""
        return self._previous_digests("device", token)
