"""Typed grpc.aio views of the health and reflection stubs.

typeshed's ``HealthStub`` and ``ServerReflectionStub`` declare no typed RPC
attributes (grpcio sets them in ``__init__``) and the reflection one accepts
only a synchronous channel; these views give the calls the tests make their
request and response types.
"""

from __future__ import annotations

from typing import Protocol, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


class HealthAsyncStub(Protocol):
    Check: grpc.aio.UnaryUnaryMultiCallable[
        health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
    ]


class ServerReflectionAsyncStub(Protocol):
    ServerReflectionInfo: grpc.aio.StreamStreamMultiCallable[
        reflection_pb2.ServerReflectionRequest, reflection_pb2.ServerReflectionResponse
    ]


def health_stub(channel: grpc.aio.Channel) -> HealthAsyncStub:
    # The stub declares only __init__; its Check is set at run time.
    return cast(HealthAsyncStub, health_pb2_grpc.HealthStub(channel))


def reflection_stub(channel: grpc.aio.Channel) -> ServerReflectionAsyncStub:
    # The stub types its channel as grpc.Channel, though grpcio takes a grpc.aio one as well,
    # and leaves ServerReflectionInfo Incomplete.
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)  # type: ignore[arg-type]
    return cast(ServerReflectionAsyncStub, stub)
