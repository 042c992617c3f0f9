"""The browser terminal: a WebSocket bridge from xterm.js to an exec stream.

``routes`` authenticates the socket and asks the service layer; ``manager``
keeps sessions by their client-generated id; ``session`` owns one shell, its
participants and flow control; ``pump`` reads the exec stream fairly;
``screenlog``/``emulator`` restore the screen on reattach; ``recording``
writes asciicast v2.
"""

from envhub.api.terminal.routes import mount

__all__ = ["mount"]
