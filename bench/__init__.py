"""Side-by-side ratio benchmark of AuthService: ``python -m bench`` (``make bench``).

The service and its anchors (a bare grpc.aio echo, the echo with one Redis round
trip, argon2id in a grpc.aio handler) each run in their own process and serve the
same ``ameli.auth.v1.AuthService``; one load generator, in processes of its own,
drives them back to back and the report prints the service's figures beside the
anchor's, as ratios. See the README's "Performance" section.
"""
