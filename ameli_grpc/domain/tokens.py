"""Random codes and tokens, and the keyed hashes that are stored instead of them."""

from __future__ import annotations

import hashlib
import hmac
import secrets

CODE_DIGITS = 6
_PROVISIONAL_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read from an SMS
_PROVISIONAL_LENGTH = 10


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
    """

    def __init__(self, secret_key: bytes) -> None:
        if len(secret_key) < 32:
            raise ValueError("the secret key must be at least 32 bytes")
        self._key = secret_key

    def _digest(self, label: str, *parts: str) -> str:
        # surrogatepass: even a malformed string hashes instead of crashing the call
        message = "\x1f".join((label, *parts)).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def nir_ref(self, nir: str) -> str:
        """Stands for a NIR in the store, the audit trail and logs."""
        return self._digest("nir", nir)[:32]

    def client_ref(self, address: str) -> str:
        """Stands for a regulated client address (an IPv4 address or an IPv6 /64) in the store."""
        return self._digest("client", address)[:32]

    def code_digest(self, login_id: str, code: str) -> str:
        return self._digest("code", login_id, code)

    def token_hash(self, token: str) -> str:
        return self._digest("device", token)
