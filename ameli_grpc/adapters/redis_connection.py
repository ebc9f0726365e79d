"""The Redis client of the service, from ``AMELI_REDIS_URL``: outages answered within a timeout.

``redis_client_from_url`` accepts ``redis://``, ``rediss://``, ``unix://``
(see redis-py's ``from_url``) and Sentinel::

    redis+sentinel://[[username:]password@]host:port[,host2:port2...]/service_name[/db]

where the password (and username) authenticate to the Redis master, not to
the sentinels, and the port defaults to 26379.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

_HEALTH_CHECK_SECONDS = 15
_SENTINEL_SCHEME = "redis+sentinel://"
_SENTINEL_PORT = "26379"


def redis_client_from_url(url: str, timeout: float) -> Redis:
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
    return Redis.from_url(url, **options)


def _sentinel_client(location: str, options: dict[str, Any]) -> Redis:
    userinfo, _, hosts = location.partition("/")[0].rpartition("@")
    service, _, db = location.partition("/")[2].partition("/")
    if not service or not hosts:
        raise ValueError("expected redis+sentinel://[password@]host:port[,...]/service[/db]")
    username, _, password = userinfo.partition(":") if ":" in userinfo else ("", "", userinfo)
    sentinels = []
    for host in hosts.split(","):
        name, colon, port = host.rpartition(":")
        if not colon or "]" in port:  # no port, or an IPv6 address without one
            name, port = host, _SENTINEL_PORT
        sentinels.append((name.strip("[]"), int(port)))
    sentinel_options = {k: v for k, v in options.items() if k != "decode_responses"}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        sentinels,
        sentinel_kwargs=sentinel_options,
        username=unquote(username) or None,
        password=unquote(password) or None,
        db=int(db or 0),
        **options,
    )
    client: Redis = sentinel.master_for(unquote(service))
    return client
