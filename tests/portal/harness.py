"""The reference portal served for the browser tests."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from ameli_portal.app import PortalConfig, create_app

from ameli_grpc.testing import AmeliTestServer


class PortalUnderTest:
    """The portal app served by uvicorn in a thread, on a free port of 127.0.0.1."""

    def __init__(self, service: AmeliTestServer) -> None:
        config = PortalConfig(
            target=service.target, api_key=service.portal_key, session_secret="s" * 32
        )
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._server = uvicorn.Server(
            # log_config=None: the logging of the test process stays pytest's.
            uvicorn.Config(create_app(config), log_config=None, lifespan="on", proxy_headers=False)
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> PortalUnderTest:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:  # uvicorn sets it once it listens
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the portal did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._socket.close()
