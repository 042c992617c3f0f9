"""Server side of a WebSocket (RFC 6455) carrying Kubernetes' channel protocol.

The apiserver proxies a client's exec upgrade to the kubelet byte for byte, so
the test kubelet speaks the same wire protocol as a real one:
`v5.channel.k8s.io` / `v4.channel.k8s.io`, every message prefixed with a channel
byte (0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize; v5: [255, ch] closes ch).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import struct
import threading
from typing import BinaryIO

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
SUPPORTED = (V5, V4)

STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_MAX_CHUNK = 32 * 1024


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()


def pick_protocol(header: str | None) -> str | None:
    """First protocol in the client's order that we support (as the kubelet does)."""
    for proto in (p.strip() for p in (header or "").split(",")):
        if proto in SUPPORTED:
            return proto
    return None


def exit_status(code: int, command: list[str]) -> bytes:
    """The metav1.Status sent on channel 3 when the command ends."""
    if code == 0:
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    return json.dumps(
        {
            "metadata": {},
            "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing "
            f"command {command}, exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    ).encode()


class ChannelSocket:
    """Frames in (masked, from the client) and out (unmasked) over an upgraded socket."""

    def __init__(self, rfile: BinaryIO, wfile: BinaryIO, protocol: str) -> None:
        self._rfile = rfile
        self._wfile = wfile
        self.protocol = protocol
        self._send_lock = threading.Lock()
        self.closed = False

    # -- sending ---------------------------------------------------------------
    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        with self._send_lock:
            if self.closed:
                raise BrokenPipeError("websocket closed")
            self._wfile.write(header + payload)
            self._wfile.flush()

    def send(self, channel: int, data: bytes) -> None:
        for i in range(0, max(len(data), 1), _MAX_CHUNK):
            self._send_frame(_OP_BINARY, bytes([channel]) + data[i : i + _MAX_CHUNK])

    def close(self, code: int = 1000) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(_OP_CLOSE, struct.pack("!H", code))
        self.closed = True

    # -- receiving -------------------------------------------------------------
    def _read_exact(self, n: int) -> bytes:
        data = self._rfile.read(n)
        if data is None or len(data) < n:
            raise EOFError("websocket peer went away")
        return data

    def _read_frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._read_exact(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read_exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read_exact(8))
        mask = self._read_exact(4) if b1 & 0x80 else b""
        payload = self._read_exact(n) if n else b""
        if mask and n:
            # XOR as one big integer: a per-byte Python loop is slow for bulk stdin.
            key = (mask * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def receive(self) -> tuple[int, bytes] | None:
        """Next (channel, data) message from the client; None once it closed."""
        message = b""
        while True:
            try:
                fin, opcode, payload = self._read_frame()
            except (EOFError, OSError, ValueError):
                return None
            if opcode == _OP_PING:
                self._send_frame(_OP_PONG, payload)
            elif opcode == _OP_PONG:
                continue
            elif opcode == _OP_CLOSE:
                if not self.closed:
                    self.close()
                return None
            elif opcode in (_OP_TEXT, _OP_BINARY, _OP_CONT):
                message += payload
                if fin and message:
                    return message[0], message[1:]
                if fin:  # an empty message carries no channel byte: ignore it
                    message = b""
