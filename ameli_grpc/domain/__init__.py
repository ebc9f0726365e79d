"""The rules of the ameli login, as plain Python: no grpc, no SQL, no Redis."""
