"""SPEC §7.5: overload is refused fast, not queued.

A CheckCredentials that would wait behind too many argon2 verifications in its
process is answered at once ``SERVICE_UNAVAILABLE`` with a retry delay, before
anything is read or counted: queueing it would only make every caller late,
and a caller that gave up would still have its attempt counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from ameli_grpc.domain.errors import AuthError, ErrorReason
from ameli_grpc.domain.messages import Messages
from ameli_grpc.domain.ports import PasswordHasher

SHED_RETRY_AFTER = timedelta(seconds=1)


@contextmanager
def hash_admission(hasher: PasswordHasher) -> Iterator[None]:
    """Hold a place among the pending verifications, or raise ``SERVICE_UNAVAILABLE`` at once.

    Whatever the NIR (known, unknown, with a provisional code), the place is
    asked for the same way, so shedding tells nothing about which NIRs exist.
    """
    with hasher.admission() as admitted:
        if not admitted:
            raise AuthError(
                ErrorReason.SERVICE_UNAVAILABLE,
                Messages.SERVICE_UNAVAILABLE,
                retry_after=SHED_RETRY_AFTER,
            )
        yield
