"""Loopback helpers."""

from __future__ import annotations

import socket

from envhub.runtime.local.processes import free_port

__all__ = ["free_port", "port_open"]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
