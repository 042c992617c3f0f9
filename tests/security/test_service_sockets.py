"""Attack: an environment uses the relay to its managed services to reach another socket on the host.

The supervisor relays 127.0.0.1:<port> inside an environment to a host UNIX
socket envhub named. Here the paths are not what they should be: a symlink
to someone's socket, a socket in a folder others can write (or through a
symlinked folder), a socket of another user, a plain file, a socket the
workload made in its own workspace. Behind each there is a real, listening
server, so a refusal is the check's and not a dead socket's: none of those
servers ever sees a connection, while the one good service does. The app
cannot reach any of the host sockets by their paths, nor take a service's
port first, and a service may not take the app's $PORT.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from envhub.domain.specs import ServiceSocket
from envhub.errors import ValidationFailed
from envhub.runtime.local import LocalRuntime
from tests.support.components import require
from tests.support.runtime import (
    RecordingProgress,
    endpoint_get,
    kill_environments,
    make_target,
    recorded_pid,
)
from tests.support.service_sockets import (
    UnixEcho,
    client_command,
    client_in_shell,
    client_result,
    private_folder,
    unix_echo,
)

pytestmark = pytest.mark.slow

NOBODY = 65534
PORTS = {
    "good": 7100,
    "symlink": 7101,
    "open-folder": 7102,
    "file": 7103,
    "foreign": 7104,
    "linked-folder": 7105,
}


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LocalRuntime]:
    require("bwrap")
    require("slirp4netns")
    rt = LocalRuntime(tmp_path / "envs", sandbox="auto", health_timeout=30)
    yield rt
    kill_environments(rt)


@pytest.fixture
def folders() -> Iterator[list[Path]]:
    made: list[Path] = []
    yield made
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)
        Path(f"{folder}-link").unlink(missing_ok=True)


def _folder(folders: list[Path]) -> Path:
    folders.append(private_folder())
    return folders[-1]


def test_only_envhubs_own_sockets_are_relayed_to(runtime: LocalRuntime, folders: list[Path]) -> None:
    require("root")  # it hands a socket to another user
    with ExitStack() as stack:
        servers: dict[str, UnixEcho] = {}
        sockets: dict[str, str] = {}

        def serve(name: str, path: Path) -> Path:
            servers[name] = stack.enter_context(unix_echo(path))
            return path

        mine = _folder(folders)
        sockets["good"] = str(serve("good", mine / "good.sock"))
        # A symlink in envhub's folder, to a socket that is not the service's.
        (mine / "link.sock").symlink_to(serve("symlink", _folder(folders) / "other.sock"))
        sockets["symlink"] = str(mine / "link.sock")
        # A folder anyone may write to: anyone could have put the socket there.
        open_folder = _folder(folders)
        os.chmod(open_folder, 0o777)
        sockets["open-folder"] = str(serve("open-folder", open_folder / "open.sock"))
        (mine / "file.sock").write_text("not a socket")
        sockets["file"] = str(mine / "file.sock")
        foreign = serve("foreign", _folder(folders) / "foreign.sock")
        os.chown(foreign, NOBODY, NOBODY)
        sockets["foreign"] = str(foreign)
        # A symlinked folder, to a private folder holding a listening socket.
        target_folder = _folder(folders)
        serve("linked-folder", target_folder / "db.sock")
        Path(f"{target_folder}-link").symlink_to(target_folder)
        sockets["linked-folder"] = f"{target_folder}-link/db.sock"

        plan = {
            "echo": PORTS,
            "bind": {"take-the-port": PORTS["good"]},
            "unix": {f"direct-{name}": path for name, path in sockets.items()},
        }
        command, env = client_command(plan)
        services = tuple(ServiceSocket(name, PORTS[name], path) for name, path in sockets.items())
        target = dataclasses.replace(make_target(1, command=command, env=env), service_sockets=services)
        runtime.apply(target, progress=RecordingProgress())

        for seen in (client_result(runtime, 1), client_in_shell(runtime, 1, plan)):
            assert seen["good"] == "echo: ping"
            for name in PORTS.keys() - {"good"}:
                assert seen[name] == "closed" or "Connection reset" in seen[name], (name, seen[name])
            # The workload cannot listen there first, nor open any host socket by its path.
            assert "Address already in use" in seen["take-the-port"], seen["take-the-port"]
            direct = {name: got for name, got in seen.items() if name.startswith("direct-")}
            assert all(got.startswith("failed") for got in direct.values()), direct

        # The refused servers never saw a connection; the good one saw the app's and the shell's.
        assert {name: server.connections for name, server in servers.items()} == {
            "good": 2,
            **dict.fromkeys(PORTS.keys() - {"good", "file"}, 0),
        }
        log = (runtime.workspace_path(1).parent / "output.log").read_text().splitlines()
        refused = sorted(line for line in log if "connections are closed: refused" in line)
        assert refused == sorted(
            [
                "envhub: service file: connections are closed: refused: it is a symlink or not a socket",
                "envhub: service foreign: connections are closed: refused: it belongs to another user",
                "envhub: service linked-folder: connections are closed: refused: "
                "its folder is a symlink or not a folder (Not a directory)",
                "envhub: service open-folder: connections are closed: refused: "
                "its folder is open to other users",
                "envhub: service symlink: connections are closed: refused: it is a symlink or not a socket",
            ]
        )


def test_a_socket_in_an_environments_folder_is_refused(runtime: LocalRuntime, folders: list[Path]) -> None:
    # The workload serves a socket in its own workspace and makes the folder look private.
    command = (
        "chmod 700 . && python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); "
        's.bind("evil.sock"); s.listen()\' & exec python3 -m http.server $PORT'
    )
    runtime.apply(make_target(1, command=command), progress=RecordingProgress())
    planted = runtime.workspace_path(1) / "evil.sock"
    service = ServiceSocket("db", 5432, str(planted))
    with pytest.raises(ValidationFailed, match="a service's socket cannot be in an environment's folder"):
        runtime.apply(
            dataclasses.replace(make_target(2), service_sockets=(service,)), progress=RecordingProgress()
        )


def test_a_service_may_not_take_the_apps_port(runtime: LocalRuntime, folders: list[Path]) -> None:
    status = runtime.apply(make_target(1), progress=RecordingProgress())
    assert status.endpoint is not None
    pid = recorded_pid(runtime.workspace_path(1).parent)
    with unix_echo(_folder(folders) / "db.sock") as echo:
        clash = ServiceSocket("db", status.endpoint.port, str(echo.path))
        target = dataclasses.replace(make_target(1, generation=2), service_sockets=(clash,))
        with pytest.raises(ValidationFailed) as refused:
            runtime.apply(target, progress=RecordingProgress())
        why = f"port {status.endpoint.port} is the app's own $PORT; the service needs another port"
        assert refused.value.details == {"services.db": why}
    # Refused up front: the running environment was left alone.
    assert recorded_pid(runtime.workspace_path(1).parent) == pid
    assert endpoint_get(status.endpoint).status_code == 200
