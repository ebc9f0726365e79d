"""Channel options that the tests and the benchmark share."""

# gRPC shares one connection between the channels of a process to the same address with the
# same arguments (its global subchannel pool): a channel with a pool of its own has a
# connection of its own.
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)
