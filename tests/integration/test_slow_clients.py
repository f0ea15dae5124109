"""`recloop serve` against clients that send half a request and wait (slowloris): each
gets a 408 within the read deadline and its connection is closed, while others are
served. Before, half-sent requests held their connections for ever."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import httpx

from tests.integration.test_server_modes import _env, _free_port, _healthy, _process

DEADLINE = 1.0


def _wait_answer(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and when it closed it."""
    sock.settimeout(within)
    started, data = time.monotonic(), b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic() - started
        data += chunk


def test_half_sent_requests_are_cut_off_and_others_are_served(tmp_path: Path) -> None:
    port = _free_port()
    cmd = [sys.executable, "-m", "recloop.cli", "serve", "--port", str(port)]
    cmd += ["--data-dir", str(tmp_path / "data")]
    env = _env(RECLOOP_REQUEST_READ_TIMEOUT_SECONDS=str(DEADLINE), RECLOOP_PIPELINE="thread")
    log = tmp_path / "serve.log"
    with _process(cmd, env, log) as proc:
        url = f"http://127.0.0.1:{port}"
        _healthy(url, proc, log)
        partial = {
            "silent": b"",
            "half headers": b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-",
            "half body": b"POST /v1/rank HTTP/1.1\r\nHost: x\r\ncontent-type: application/json"
            b'\r\ncontent-length: 100\r\n\r\n{"actions": [',
        }
        socks = {}
        for name, data in partial.items():
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(data)
            socks[name] = sock
        with httpx.Client(base_url=url, timeout=5) as client:  # others are served meanwhile
            rank = {"context": {}, "actions": [{"id": "a"}, {"id": "b"}]}
            assert client.post("/v1/rank", json=rank).status_code == 200
        for name, sock in socks.items():
            with sock:
                answer, waited = _wait_answer(sock, DEADLINE + 5)
            assert waited < DEADLINE + 3, name
            if name != "silent":
                assert answer.startswith(b"HTTP/1.1 408"), (name, answer[:200])
                assert b"application/problem+json" in answer
