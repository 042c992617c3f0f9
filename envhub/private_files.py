"""envhub's own files are private: folders 0700, files 0600, whatever the umask.

The data folder holds the database, the secret key, the embedded Redis's
password, terminal recordings and logs. None of it is anyone else's business,
so every folder envhub creates there is 0700 and every file 0600. The modes are
given explicitly (and set again on the open file), so a permissive umask
(0o000, 0o022) changes nothing.

An existing data folder with looser modes (one created by an older envhub) is
tightened at start, with a line in the log for each path changed: the folder
is envhub's own, and refusing to start would only make the operator run the
same ``chmod``. A data folder owned by another user is refused instead: envhub
cannot vouch for files someone else can replace. (One exception: a folder
owned by root when envhub is not root, which is how Kubernetes mounts an
emptyDir or a claim with ``fsGroup``; envhub cannot chmod it, and relies on the
modes of what it creates inside.)

One more exception, for the embedded PostgreSQL of managed services: it refuses
to run as root, so a root envhub runs it as the ``postgres`` account, which has
to pass through the data folder and ``services/`` to reach its own folder.
Those two are then 0711 (:func:`traversable`): nobody else can list or change
them, and everything inside keeps its own 0700/0600.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import BinaryIO, Literal

from envhub.errors import DataDirUnsafe

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
TRAVERSE_MODE = 0o711
SERVICES = "services"

# Files and folders of the data folder that belong to envhub; environments'
# workspaces (envs/<id>/workspace) are theirs and are left as they are.
_PRIVATE_FILES = ("envhub.db", "envhub.db-wal", "envhub.db-shm", "envhub.db-journal", "secret.key")
_PRIVATE_TREES = ("backups", "logs", "recordings", "redis", "run", SERVICES)
_ENVIRONMENT_FILES = (
    "output.log",
    "output.times",
    "output.previous.log",
    "output.previous.times",
    "state.json",
    "state.tmp",
    ".lock",
)


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parent as 0700; an existing ``path`` is tightened to 0700."""
    missing = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # another process made it a moment ago
            _tighten(folder, DIR_MODE)
        else:
            os.chmod(folder, DIR_MODE)  # exactly 0700, even under an odd umask
    if not missing:
        _tighten(path, DIR_MODE)
    return path


def open_private(path: Path, mode: Literal["ab", "wb"], *, buffering: int = -1) -> BinaryIO:
    """Open ``path`` for writing as a 0600 file (created so, or tightened), never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    flags |= os.O_APPEND if mode == "ab" else os.O_TRUNC
    fd = os.open(path, flags, FILE_MODE)
    try:
        _exact_file_mode(fd)
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, mode, buffering=buffering)


def write_private(path: Path, data: str) -> None:
    """Replace ``path``'s content with ``data``, as a 0600 file."""
    with open_private(path, "wb") as handle:
        handle.write(data.encode())


def private_file(path: Path) -> Path:
    """Make sure ``path`` exists as a 0600 file (for files that other code opens, e.g. SQLite's)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        _exact_file_mode(fd)
    finally:
        os.close(fd)
    return path


def _exact_file_mode(fd: int) -> None:
    """0600 exactly (the umask may have taken bits off, an older file may have more)."""
    info = os.fstat(fd)
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != FILE_MODE:
        os.fchmod(fd, FILE_MODE)


def secure_data_dir(data_dir: Path) -> None:
    """Create the data folder 0700, or make an existing one private (see the module's docstring)."""
    if data_dir.exists():
        owner = data_dir.stat().st_uid
        if owner == 0 and os.geteuid() != 0:
            # A volume the platform mounted for us (Kubernetes: an emptyDir or a claim
            # with fsGroup). envhub cannot chmod it; what it writes inside is private.
            log.info("data folder %s belongs to root; its files and folders are 0600/0700", data_dir)
        elif owner != os.geteuid():
            raise DataDirUnsafe(
                f"the data folder {data_dir} belongs to uid {owner}, not to the user envhub runs as "
                f"(uid {os.geteuid()}); envhub keeps its database, keys and logs only in a folder "
                "that no other user can change",
                hint=f"chown -R {os.geteuid()} {data_dir}, or point ENVHUB_DATA_DIR at a folder of its own.",
            )
    # Folders on the way to another account's files (the embedded PostgreSQL's, as root) stay
    # passable: found first, so a running server is never locked out, not even for a moment.
    passages = _passages(data_dir)
    if data_dir in passages:
        _tighten(data_dir, TRAVERSE_MODE)
    else:
        private_dir(data_dir)
    for name in _PRIVATE_FILES:
        _tighten(data_dir / name, FILE_MODE)
    for name in _PRIVATE_TREES:
        _tighten_tree(data_dir / name, passages=passages)
    envs = data_dir / "envs"
    _tighten(envs, DIR_MODE)
    if envs.is_dir() and not envs.is_symlink():
        for env_dir in envs.iterdir():
            _tighten(env_dir, DIR_MODE)
            for name in _ENVIRONMENT_FILES:
                _tighten(env_dir / name, FILE_MODE)
    if _held_by_another_account(data_dir / SERVICES):
        traversable(data_dir / SERVICES, up_to=data_dir)


def traversable(folder: Path, *, up_to: Path) -> None:
    """Make ``folder`` and its parents up to ``up_to`` 0711, so another account can pass to what is inside."""
    private_dir(folder)
    current = folder
    while True:
        info = current.lstat()
        if not stat.S_ISLNK(info.st_mode) and info.st_uid == os.geteuid():
            os.chmod(current, TRAVERSE_MODE)
        if current == up_to or current == current.parent:
            return
        current = current.parent


def _held_by_another_account(services: Path) -> bool:
    """A folder in ``services/`` belongs to another account (the embedded PostgreSQL's, as root)."""
    try:
        return any(entry.stat(follow_symlinks=False).st_uid != os.geteuid() for entry in services.iterdir())
    except OSError:
        return False


def _passages(data_dir: Path, depth: int = 2) -> set[Path]:
    """Folders of envhub's, from ``services/`` down ``depth`` levels, that hold another account's
    entries, with every folder above them up to ``data_dir``: they must stay passable (0711)."""
    found: set[Path] = set()
    services = data_dir / SERVICES
    level = [services]
    for _ in range(depth + 1):
        below: list[Path] = []
        for folder in level:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if info.st_uid != os.geteuid():
                    current = folder
                    while current not in found:
                        found.add(current)
                        if current == data_dir or current == current.parent:
                            break
                        current = current.parent
                elif stat.S_ISDIR(info.st_mode):
                    below.append(Path(entry.path))
        level = below
    return found


def _tighten_tree(root: Path, *, passages: AbstractSet[Path] = frozenset()) -> None:
    if root.is_symlink() or not root.is_dir():
        return
    _tighten(root, TRAVERSE_MODE if root in passages else DIR_MODE)
    for folder, dirs, files in os.walk(root):  # os.walk does not follow symlinked folders
        for name in dirs:
            path = Path(folder, name)
            _tighten(path, TRAVERSE_MODE if path in passages else DIR_MODE)
        for name in files:
            _tighten(Path(folder, name), FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    """Take group and other bits away from ``path`` (never following a symlink)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
        return
    current = stat.S_IMODE(info.st_mode)
    if current & ~mode:
        os.chmod(path, current & mode)
        log.warning("tightened %s from %o to %o (envhub's files are private)", path, current, current & mode)
