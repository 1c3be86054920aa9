"""Constants and the live-server helper shared by the stand-in tests."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

API_KEY = "11111111-2222-4333-8444-555555555555"
OTHER_KEY = "99999999-8888-4777-8666-555555555555"
ORG = "ce-a588a18b-2616-4c74-bdcd-6507c0693d0e"
OTHER_ORG = "ce-0b6fa1f4-5a9c-4a59-9d0e-2f4a1a7c3b11"
ADMIN_TOKEN = "test-admin-token"
CLIENT_ID = "cayg-publish"
CLIENT_SECRET = "s3cret-for-tests"
READONLY_CLIENT = "reader"
READONLY_SECRET = "reader-secret"
CLR_SCOPE = "https://purl.imsglobal.org/spec/clr/v2p0/scope"
OB_SCOPE = "https://purl.imsglobal.org/spec/ob/v3p0/scope"


class LiveServer:
    """A Starlette app served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            access_log=False,
            lifespan="off",
            log_config=None,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.base_url = ""

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the stand-in server did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            raise RuntimeError("the stand-in server did not stop")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=kwargs.pop("timeout", 30.0), **kwargs)
