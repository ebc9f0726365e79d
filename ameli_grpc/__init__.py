"""ameli-grpc: the authentication service of the ameli account login."""

import os as _os

# gRPC's C core reads GRPC_VERBOSITY once, when grpc is first imported, and then writes plain
# text lines of its own to stderr (a port in use, a failed TLS handshake…). With
# AMELI_LOG_FORMAT=json they would break the stream of JSON lines, so they are silenced unless
# the operator set GRPC_VERBOSITY. Here, because this runs before any module of the package
# can import grpc.
if _os.environ.get("AMELI_LOG_FORMAT", "").strip().lower() == "json":
    _os.environ.setdefault("GRPC_VERBOSITY", "NONE")
