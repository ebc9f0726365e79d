"""The Redis client of the service, from ``AMELI_REDIS_URL``: outages answered within a timeout.

``redis_client_from_url`` accepts ``redis://``, ``rediss://``, ``unix://``
(see redis-py's ``from_url``), Sentinel::

    redis+sentinel://[[username:]password@]host:port[,host2:port2...]/service_name[/db]

where the password (and username) authenticate to the Redis master, not to
the sentinels, and the port defaults to 26379; and Redis Cluster::

    redis+cluster://[[username:]password@]host:port[,host2:port2...][/][?option=value&...]
    rediss+cluster://...  (the same, over TLS)

where the hosts are startup nodes (one reachable node is enough: the client
discovers the others), the port defaults to 6379, the password (and username)
authenticate to every node, and the query takes redis-py's URL options (e.g.
``ssl_ca_certs``, ``ssl_cert_reqs``); a cluster has only database 0. An IPv6
host is written in brackets: ``[::1]:7000``.

Every client gets the timeout for connecting and reading, and no retry: an
outage surfaces at once. A cluster client still follows the cluster's own
redirections (``MOVED``, ``ASK``, ``TRYAGAIN``) within one call, and after a
failed call it reloads the cluster's layout before the next one.
"""

from __future__ import annotations

import re
from typing import Any, TypeAlias
from urllib.parse import unquote

from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

RedisClient: TypeAlias = Redis | RedisCluster
"""What ``redis_client_from_url`` gives: one server (or Sentinel's master), or a cluster."""

_HEALTH_CHECK_SECONDS = 15
_SENTINEL_SCHEME = "redis+sentinel://"
_SENTINEL_PORT = "26379"
_CLUSTER_SCHEMES = {"redis+cluster://": "redis", "rediss+cluster://": "rediss"}
_REDIS_PORT = "6379"
_AUTHORITY = re.compile(r"([^/?#]*)(.*)", re.DOTALL)


# What a Redis outage looks like to redis-py: these become DependencyUnavailable.
REDIS_OUTAGES: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # also BusyLoadingError, AuthenticationError, no master
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,  # a replica after a failover
    redis_errors.OutOfMemoryError,
    redis_errors.ClusterError,  # also ClusterDownError, MasterDownError, "TTL exhausted"
    redis_errors.TryAgainError,  # a slot still migrating
    redis_errors.RedisClusterException,  # no node reachable, slots not covered (SlotNotCovered)
    OSError,  # also TimeoutError, which is asyncio.TimeoutError
)


def redis_client_from_url(url: str, timeout: float) -> RedisClient:
    """A client that answers an outage within ``timeout``: no retries, no backoff."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": _HEALTH_CHECK_SECONDS,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": True,
    }
    if url.startswith(_SENTINEL_SCHEME):
        return _sentinel_client(url.removeprefix(_SENTINEL_SCHEME), options)
    for prefix, scheme in _CLUSTER_SCHEMES.items():
        if url.startswith(prefix):
            return _cluster_client(scheme, url.removeprefix(prefix), options)
    return Redis.from_url(url, **options)


def _sentinel_client(location: str, options: dict[str, Any]) -> Redis:
    userinfo, _, hosts = location.partition("/")[0].rpartition("@")
    service, _, db = location.partition("/")[2].partition("/")
    if not service or not hosts:
        raise ValueError("expected redis+sentinel://[password@]host:port[,...]/service[/db]")
    username, password = _credentials(userinfo)
    sentinel_options = {k: v for k, v in options.items() if k != "decode_responses"}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        _addresses(hosts, _SENTINEL_PORT),
        sentinel_kwargs=sentinel_options,
        username=username,
        password=password,
        db=int(db or 0),
        **options,
    )
    client: Redis = sentinel.master_for(unquote(service))
    return client


def _cluster_client(scheme: str, location: str, options: dict[str, Any]) -> RedisCluster:
    """``location``: ``[credentials@]host:port[,...][/][?query]``, after the scheme."""
    match = _AUTHORITY.fullmatch(location)
    authority, tail = match.groups() if match else ("", "")
    userinfo, _, hosts = authority.rpartition("@")
    if not hosts or tail.partition("?")[0] not in ("", "/", "/0"):
        raise ValueError("expected redis+cluster://[password@]host:port[,...][/][?options]")
    # redis-py reads the query (and its types); the host here is only a placeholder
    query: dict[str, Any] = dict(parse_url(f"{scheme}://localhost/{tail.lstrip('/')}"))
    for name in ("host", "port", "username", "password"):
        query.pop(name, None)
    if query.pop("db", 0) != 0:
        raise ValueError("a Redis Cluster has only database 0")
    if query.pop("connection_class", None) is SSLConnection:
        query["ssl"] = True
    username, password = _credentials(userinfo)
    nodes = [ClusterNode(host, port) for host, port in _addresses(hosts, _REDIS_PORT)]
    return RedisCluster(
        startup_nodes=nodes,
        username=username,
        password=password,
        **{**options, **query},  # as with from_url, the URL's options win
    )


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    """``[username:]password``, percent-decoded; no colon means a password alone."""
    username, _, password = userinfo.partition(":") if ":" in userinfo else ("", "", userinfo)
    return unquote(username) or None, unquote(password) or None


def _addresses(hosts: str, default_port: str) -> list[tuple[str, int]]:
    """``host[:port][,...]``, IPv6 hosts in brackets, to ``(host, port)`` pairs."""
    addresses = []
    for host in hosts.split(","):
        name, colon, port = host.rpartition(":")
        if not colon or "]" in port:  # no port, or an IPv6 address without one
            name, port = host, default_port
        if not name.strip("[]"):
            raise ValueError(f"a host is missing in {hosts!r}")
        addresses.append((name.strip("[]"), int(port)))
    return addresses
