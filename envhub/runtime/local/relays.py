"""Byte relays of a local environment's supervisor, and the check of a host socket before use.

Standard library only: the supervisor (``supervisor.py``) runs as an isolated
script and imports this module from beside it; envhub imports it as a
package module for :func:`private_socket_problem`, the one check of "is this
host UNIX socket envhub's own" (the front door, ``network.private_socket``,
and the managed services' sockets alike).

Managed services envhub runs on this machine listen on UNIX sockets in
folders only envhub can open. Inside an environment's network namespace the
supervisor listens on 127.0.0.1:<port> for each (bound before the app
starts, so the app cannot take the port first) and relays every connection
to that service's socket. The supervisor is in the host's mount namespace
and the sandbox is not, so the workload reaches a service only this way,
and only the paths envhub passed are ever connected to, each checked as it
is opened. A service that is down costs its clients a reset, and the
environment's log one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import struct
import sys
from typing import Any

MAX_CONNECTIONS = 512
CHUNK = 65536
# Relays to managed services carry database traffic (large result sets, bulk
# loads): bigger reads mean fewer system calls per megabyte.
SERVICE_CHUNK = 1 << 18


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunk: int = CHUNK) -> None:
    """Copy one direction until EOF, then pass the EOF on (a half-close: the other direction goes on)."""
    try:
        while data := await reader.read(chunk):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


def _private_problem(folder: os.stat_result, sock: os.stat_result, owner: int | None = None) -> str | None:
    """Why a socket, with the folder holding it, is not envhub's own; None when it is.

    Neither may be a symlink, both must belong to this process's user (or to
    ``owner``, the account envhub runs that service as), and the folder must
    be closed to everyone else: then nobody else can have put the socket there.
    """
    me = os.geteuid()
    if not stat.S_ISDIR(folder.st_mode):
        return "its folder is a symlink or not a folder"
    if folder.st_uid not in (me, owner):
        return "its folder belongs to another user"
    if folder.st_mode & 0o077:
        return "its folder is open to other users"
    if not stat.S_ISSOCK(sock.st_mode):
        return "it is a symlink or not a socket"
    if sock.st_uid not in (me, owner) or sock.st_uid != folder.st_uid:
        return "it belongs to another user"
    return None


def private_socket_problem(path: str) -> str | None:
    """Why envhub must not connect to the UNIX socket at ``path``; None when it may."""
    try:
        return _private_problem(os.lstat(os.path.dirname(path) or "/"), os.lstat(path))
    except FileNotFoundError:
        return "it is missing"
    except OSError as exc:
        return f"it cannot be looked at ({exc.strerror})"


class Refused(Exception):
    """A service's socket that was not connected to; the message says why."""


async def connect_private(path: str, owner: int | None = None) -> socket.socket:
    """A connection to the host UNIX socket at ``path``, checked as it is opened.

    The folder is opened first (never through a symlink); the checks and the
    connection go through that descriptor, so the folder checked is the
    folder connected in. Raises :class:`Refused`.
    """
    folder, name = os.path.dirname(path) or "/", os.path.basename(path)
    try:
        folder_fd = os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Refused("its folder is missing (the service is not running)") from None
    except OSError as exc:
        raise Refused(f"refused: its folder is a symlink or not a folder ({exc.strerror})") from None
    try:
        try:
            info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise Refused("its socket is missing (the service is not running)") from None
        problem = _private_problem(os.fstat(folder_fd), info, owner)
        if problem:
            raise Refused(f"refused: {problem}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{folder_fd}/{name}")
        except OSError as exc:
            sock.close()
            raise Refused(f"it does not accept connections ({exc.strerror})") from None
        return sock
    finally:
        os.close(folder_fd)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close a connection at once, with a reset, so the client fails fast instead of waiting."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def bind_services(services: list[dict[str, Any]]) -> list[socket.socket]:
    """Listening sockets on 127.0.0.1:<port> of this process's network namespace, one per service."""
    listeners: list[socket.socket] = []
    try:
        for service in services:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind(("127.0.0.1", int(service["port"])))
            except OSError as exc:
                where = f"127.0.0.1:{service['port']}"
                raise OSError(
                    exc.errno, f"service {service['name']} cannot listen on {where}: {exc}"
                ) from exc
            listener.listen(128)
            listener.setblocking(False)
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


class ServiceRelays:
    """Every managed service's 127.0.0.1:<port> inside, relayed to its host socket."""

    def __init__(self, services: list[dict[str, Any]]) -> None:
        self.services = services
        # Slots of their own: a workload flooding its services cannot starve the front door.
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._said: dict[str, str] = {}  # the problem last logged per service: each is said once

    def _say(self, name: str, problem: str | None) -> None:
        before = self._said.get(name)
        if problem == before:
            return
        if problem is None:
            del self._said[name]
            print(f"envhub: service {name}: answering again", file=sys.stderr, flush=True)
            return
        self._said[name] = problem
        print(f"envhub: service {name}: connections are closed: {problem}", file=sys.stderr, flush=True)

    async def serve(self, listeners: list[socket.socket]) -> list[asyncio.Server]:
        servers = []
        for service, listener in zip(self.services, listeners, strict=True):

            async def accept(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter, service: dict[str, Any] = service
            ) -> None:
                await self._forward(service, reader, writer)

            servers.append(await asyncio.start_server(accept, sock=listener, limit=SERVICE_CHUNK))
        return servers

    async def _forward(
        self, service: dict[str, Any], client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        if self._slots.locked():
            reset(client_w)
            return
        async with self._slots:
            try:
                owner = service.get("owner")
                sock = await connect_private(
                    str(service["socket"]), owner if isinstance(owner, int) else None
                )
            except Refused as exc:
                self._say(str(service["name"]), str(exc))
                reset(client_w)
                return
            self._say(str(service["name"]), None)
            try:
                service_r, service_w = await asyncio.open_unix_connection(sock=sock, limit=SERVICE_CHUNK)
            except BaseException:
                sock.close()
                reset(client_w)
                raise
            try:
                await asyncio.gather(
                    relay(client_r, service_w, SERVICE_CHUNK), relay(service_r, client_w, SERVICE_CHUNK)
                )
            finally:
                service_w.close()
                client_w.close()
