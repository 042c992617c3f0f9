#!/usr/bin/env python3
"""envhub's git credential helper, as a local environment's sandbox sees it (read-only, in /etc/envhub).

git runs it as ``git-credential-envhub PORT get`` (``credential.<origin>.helper``)
with the request on stdin. It passes the request to envhub's relay on
``127.0.0.1:PORT`` and prints the answer (``username=``, ``password=``,
``password_expiry_utc=``). It keeps nothing: ``store`` and ``erase`` do nothing,
and the token lives only in git's memory for the one command. A refusal is
printed on stderr (git then fails the command, saying it could not read a
username).
"""

import socket
import sys

MAX_ANSWER = 65536


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[2] != "get":
        return 0  # store, erase: envhub keeps nothing to store or erase
    request = sys.stdin.buffer.read(16384)
    try:
        with socket.create_connection(("127.0.0.1", int(argv[1])), timeout=30) as conn:
            conn.sendall(request.rstrip(b"\n") + b"\n\n")
            conn.shutdown(socket.SHUT_WR)
            answer = b""
            while len(answer) < MAX_ANSWER:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                answer += chunk
    except (OSError, ValueError) as exc:
        print(f"envhub: cannot reach envhub for git credentials: {exc}", file=sys.stderr)
        return 1
    lines = answer.decode("utf-8", "replace").splitlines()
    for line in lines:
        if line.startswith("error="):
            print(f"envhub: no git credentials: {line[len('error=') :]}", file=sys.stderr)
            return 1
    sys.stdout.write("".join(f"{line}\n" for line in lines if "=" in line))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
