"""``ameli-portal`` (or ``python -m ameli_portal``): the portal on 127.0.0.1:8080.

Configuration from the environment:

- ``PORTAL_AUTH_TARGET``: the service, ``host:port`` (default ``127.0.0.1:50051``);
- ``PORTAL_API_KEY``: the portal's key (one of the service's ``AMELI_PORTAL_API_KEYS``);
- ``PORTAL_CA_FILE``: TLS to the service, checked against this authority;
- ``PORTAL_SESSION_SECRET``: signs the session cookie (32 characters or more, the same
  on every replica); a random one per start when empty, which logs everyone out on restart;
- ``PORTAL_LISTEN``: ``host:port`` to serve on (default ``127.0.0.1:8080``);
- ``PORTAL_TRUSTED_PROXIES``: the load balancers (comma-separated addresses or CIDRs) whose
  ``X-Forwarded-For`` names the person's address; empty (the default): none, the TCP peer is.

``PORTAL_`` and not ``AMELI_``: the service reads every ``AMELI_*`` variable and warns of
the ones it does not know.
"""

from __future__ import annotations

import logging
import os
import secrets

import uvicorn

from ameli_portal.app import PortalConfig, create_app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    secret = os.environ.get("PORTAL_SESSION_SECRET", "")
    if not secret:
        logging.getLogger("ameli_portal").warning(
            "PORTAL_SESSION_SECRET is not set: a random one for this run only"
        )
        secret = secrets.token_urlsafe(32)
    config = PortalConfig(
        target=os.environ.get("PORTAL_AUTH_TARGET", "127.0.0.1:50051"),
        api_key=os.environ.get("PORTAL_API_KEY") or None,
        session_secret=secret,
        ca_file=os.environ.get("PORTAL_CA_FILE") or None,
    )
    host, _, port = os.environ.get("PORTAL_LISTEN", "127.0.0.1:8080").rpartition(":")
    proxies = os.environ.get("PORTAL_TRUSTED_PROXIES", "")
    # uvicorn's access log is left on: it shows paths only, and no form is ever sent as a GET.
    # Its proxy headers are off unless proxies are named (uvicorn trusts 127.0.0.1 by default).
    uvicorn.run(
        create_app(config),
        host=host,
        port=int(port),
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )


if __name__ == "__main__":
    main()
