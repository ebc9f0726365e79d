"""Generated stubs of the ``ameli.auth.v1`` contract (``auth_pb2``, ``auth_pb2_grpc``)."""
