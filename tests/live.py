"""Servers for tests: the app in process, under uvicorn on a free loopback port, and waiting.

`TestClient` drives the app in process. `serve` runs it under uvicorn in a
background thread, on a socket bound to port 0 of 127.0.0.1 (no other process
can take the port between choosing and binding it), and stops it on exit.
`wait_until` polls a condition until it holds or a deadline passes; tests use
it instead of sleeping.
"""

from __future__ import annotations

import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import TypeVar

import httpx
import starlette.exceptions
import uvicorn
from fastapi import FastAPI

# Older Starlette releases have no such class and give no such warning.
_DEPRECATION: type[Warning] = getattr(
    starlette.exceptions, "StarletteDeprecationWarning", DeprecationWarning
)

with warnings.catch_warnings():
    # Starlette 1.x would rather drive its test client with `httpx2`; `httpx` (what the
    # project installs) still works. Only this one warning is let through.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`", _DEPRECATION)
    from fastapi.testclient import TestClient

__all__ = ["TestClient", "answers", "free_port", "serve", "wait_until"]

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.02,
    what: str = "the condition",
) -> T:
    """Poll `condition` until it returns something truthy, and return that.

    Raises:
        AssertionError: `timeout` seconds passed first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        # The pause between two polls, not a wait for an outcome.
        threading.Event().wait(interval)


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (for servers run as processes)."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    """Whether `url` answers 200 now."""
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def serve(app: FastAPI, *, access_log: bool = True, timeout: float = 10.0) -> Iterator[str]:
    """Serve `app` on a free loopback port in a thread; yield its base URL.

    Logging is left as the test set it (`log_config=None`).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=access_log,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{url}/healthz"), timeout=timeout, what="GET /healthz")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"
