"""Client of ameli.auth: the generated stubs (``ameli.auth.v1``), ``AuthClient``,
``SyncAuthClient`` and ``connect()`` / ``connect_sync()``.

The public names are re-exported here (``from ameli.auth import AuthClient, Locked``);
the exception family is drawn in ``ameli.auth.client``'s docstring.
"""

from ameli.auth.client import (
    ERROR_DOMAIN,
    UNAVAILABLE_MESSAGE,
    AccountNotFound,
    AuthClient,
    AuthServiceError,
    CallerNotAllowed,
    InvalidInput,
    Locked,
    LoginRefused,
    NotFound,
    ServiceUnavailable,
    SyncAuthClient,
    WrongEntry,
    connect,
    connect_sync,
    error_from_rpc_error,
)

__all__ = [
    "ERROR_DOMAIN",
    "UNAVAILABLE_MESSAGE",
    "AccountNotFound",
    "AuthClient",
    "AuthServiceError",
    "CallerNotAllowed",
    "InvalidInput",
    "Locked",
    "LoginRefused",
    "NotFound",
    "ServiceUnavailable",
    "SyncAuthClient",
    "WrongEntry",
    "connect",
    "connect_sync",
    "error_from_rpc_error",
]
