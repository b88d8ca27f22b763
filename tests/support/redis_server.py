"""A real redis-server on a free loopback port, started by the tests themselves."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisProcess:
    """A running redis-server: its URL, and a way to stop it early (to test losing Redis)."""

    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Stop the server now."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@contextmanager
def redis_server(port: int | None = None, password: str | None = None) -> Iterator[RedisProcess]:
    """Run redis-server (installed by `make test`) for the duration, on the given or a free port.

    With ``password`` it requires AUTH, and its URL carries the password.
    """
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: `make test` installs it (apt-get install redis-server)"
    port = port or free_port()
    auth = ["--requirepass", password] if password else []
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *auth],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://:{password}@127.0.0.1:{port}/0" if password else f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None, "redis-server exited at start-up"
                assert time.monotonic() < deadline, "redis-server did not answer within 10 s"
                time.sleep(0.05)
        handle = RedisProcess(url, process)
        yield handle
    finally:
        client.close()
        RedisProcess(url, process).stop()
