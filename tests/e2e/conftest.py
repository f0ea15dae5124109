"""A real uvicorn server on a free loopback port, driven over HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from recloop.serving import create_app
from recloop.settings import load_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, fast_path: bool = True, **settings: Any) -> None:
        self.port = free_port()
        self.settings = load_settings(**settings)
        config = uvicorn.Config(
            create_app(self.settings, fast_path=fast_path),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> httpx.Client:
        self.thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError("server did not become healthy")
        self.client = httpx.Client(base_url=self.url, timeout=10)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """serve(**settings) -> a Server context; data goes under tmp_path."""

    def make(fast_path: bool = True, **settings: Any) -> Server:
        settings.setdefault("data_dir", tmp_path / ("data" if fast_path else "data-routed"))
        return Server(fast_path, **settings)

    yield make


@pytest.fixture
def api(serve: Callable[..., Server]) -> Iterator[httpx.Client]:
    """The default server: the pipeline runs in a child process."""
    with serve(exp_unit_seconds=1.0, checkpoint_every_examples=5) as client:
        yield client


@pytest.fixture(params=["process", "thread"])
def any_api(serve: Callable[..., Server], request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """The server in both pipeline modes."""
    with serve(exp_unit_seconds=1.0, checkpoint_every_examples=5, pipeline=request.param) as c:
        assert c.get("/healthz").json()["pipeline"]["mode"] == request.param
        yield c
