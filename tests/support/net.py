"""Loopback helpers, and this machine's own address."""

from __future__ import annotations

import ipaddress
import socket

import psutil

from envhub.runtime.local.processes import free_port

__all__ = ["free_port", "machine_address", "port_open"]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def machine_address() -> str | None:
    """An IPv4 address of this machine that is neither loopback nor link-local (None: it has none).

    A test cluster whose pods report it as their IP can be reached through the API
    server's service proxy (Endpoints may not name loopback).
    """
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family.name != "AF_INET":
                continue
            ip = ipaddress.ip_address(address.address)
            if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
                return str(ip)
    return None
