"""Files in an environment's workspace, for agents and scripts: read, write, list, delete.

Each operation runs a short POSIX ``sh`` script inside the environment through
the runtime's exec port (the local sandbox or the pod's container), with the
same right as a shell (``environment.shell``): whatever it touches, the
environment itself could. The workspace is the folder a command starts in
(the local runtime's workspace, the container's working directory).

Paths are confined to it where they are resolved, inside the environment: a
path is relative to the workspace (or absolute inside it), ``..`` is refused
before anything runs, and every existing part is resolved with the
environment's own ``readlink -f`` / ``cd -P`` so a symlink leading out of the
workspace is refused rather than followed. A write goes to a temporary file
beside the target and is renamed over it, so a reader never sees half a file.

Each operation is one audit record with the path and the size, never the content.
"""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Literal, TypedDict

from sqlmodel import Session

from envhub.domain.principals import Principal
from envhub.errors import NotFound, RuntimeFailure, ValidationFailed, WorkspacePathInvalid
from envhub.runtime.base import ExecSession, Runtime
from envhub.services.commands import CommandEnd, follow_output, open_exec
from envhub.services.common import AuditTarget, audited

# The most one call moves either way; the faces may set lower caps.
MAX_READ = 16 * 1024 * 1024
MAX_WRITE = 16 * 1024 * 1024
MAX_ENTRIES = 5000
MAX_PATH = 4096
# How long one file operation may take inside the environment.
TIMEOUT = 60.0

Encoding = Literal["utf-8", "base64"]
EntryType = Literal["file", "dir", "link", "other"]


class FileContent(TypedDict):
    path: str
    size: int  # the whole file's size in bytes
    offset: int
    content: str  # the bytes read, as text when they are UTF-8, else base64
    encoding: Encoding
    truncated: bool  # the file goes on past what was read: read again from offset + length


class WrittenFile(TypedDict):
    path: str
    size: int


class DeletedFile(TypedDict):
    path: str


class DirectoryEntry(TypedDict):
    name: str
    type: EntryType
    size: int
    modified: str  # ISO 8601, UTC


class DirectoryListing(TypedDict):
    path: str
    entries: list[DirectoryEntry]
    truncated: bool  # more entries than max_entries


# Every script starts here: $root is the workspace, $p the asked path made absolute,
# inside() says whether a resolved path stays in the workspace. Exit codes name the refusal.
_PRELUDE = r"""
exec 2>/dev/null
root=$(pwd -P) || exit 70
inside() { [ "$root" = / ] && return 0; case "$1" in "$root"|"$root"/*) return 0;; esac; return 1; }
case "$1" in /*) p=$1;; *) p=$root/$1;; esac
"""
_READ = r"""
[ -e "$p" ] || exit 11
r=$(readlink -f "$p") || exit 11
inside "$r" || exit 10
[ -d "$r" ] && exit 12
[ -f "$r" ] || exit 14
s=$(stat -c %s "$r") || s=$(wc -c < "$r") || exit 15
printf '%s\n' "$s"
if [ "$2" -gt 0 ]; then tail -c "+$(($2 + 1))" "$r"; else cat "$r"; fi | head -c "$3"
"""
_WRITE = r"""
case "$1" in */) exit 12;; esac
if [ -e "$p" ] || [ -L "$p" ]; then
  r=$(readlink -f "$p") || exit 10
  inside "$r" || exit 10
  [ -d "$r" ] && exit 12
  p=$r
fi
d=$(dirname "$p")
a=$d
while [ ! -e "$a" ] && [ ! -L "$a" ]; do a=$(dirname "$a"); done
a=$(cd -P "$a" && pwd -P) || exit 13
inside "$a" || exit 10
mkdir -p "$d" || exit 15
d=$(cd -P "$d" && pwd -P) || exit 13
inside "$d" || exit 10
t=$(mktemp "$d/.envhub-write.XXXXXX") || exit 15
head -c "$2" > "$t" && [ "$(wc -c < "$t")" -eq "$2" ] || { rm -f "$t"; exit 15; }
[ -f "$p" ] && chmod "$(stat -c %a "$p")" "$t"
mv -f "$t" "$d/$(basename "$p")" || { rm -f "$t"; exit 15; }
"""
_LIST = r"""
[ -e "$p" ] || exit 11
r=$(readlink -f "$p") || exit 11
inside "$r" || exit 10
[ -d "$r" ] || exit 13
cd "$r" || exit 11
n=0
for e in * .[!.]* ..?*; do
  [ -e "$e" ] || [ -L "$e" ] || continue
  n=$((n + 1))
  if [ "$n" -gt "$2" ]; then printf '\0'; break; fi
  if [ -L "$e" ]; then t=link; elif [ -d "$e" ]; then t=dir; elif [ -f "$e" ]; then t=file; else t=other; fi
  m=$(stat -c '%s %Y' "./$e") || m='0 0'
  printf '%s\0%s %s\n' "$e" "$t" "$m"
done
"""
_DELETE = r"""
[ -e "$p" ] || [ -L "$p" ] || exit 11
d=$(cd -P "$(dirname "$p")" && pwd -P) || exit 11
inside "$d" || exit 10
f=$d/$(basename "$p")
[ "$f" = "$root" ] && exit 12
if [ -d "$f" ] && [ ! -L "$f" ]; then exit 12; fi
rm -f "$f" || exit 15
"""

_REFUSALS: dict[int, tuple[str, str]] = {
    10: ("escapes", "leads out of the workspace"),
    12: ("is_directory", "is a directory"),
    13: ("not_directory", "is not a directory inside the workspace"),
    14: ("not_regular", "is not a regular file"),
}


def workspace_path(path: str, *, allow_root: bool = False) -> str:
    """``path`` as the scripts take it: no NUL, no ``..``, no empty or repeated parts."""
    if "\x00" in path or len(path) > MAX_PATH:
        raise WorkspacePathInvalid(
            "a path cannot contain NUL characters or be longer than 4096 characters",
            details={"path": path[:200], "reason": "invalid"},
        )
    pure = PurePosixPath(path.strip() or ".")
    if ".." in pure.parts:
        raise WorkspacePathInvalid(f"{path!r} contains '..'", details={"path": path, "reason": "escapes"})
    normal = str(pure)
    if normal in (".", "/") and not allow_root:
        raise WorkspacePathInvalid(
            "name a file inside the workspace, not the workspace itself",
            details={"path": path, "reason": "is_directory"},
        )
    return normal


def read_file(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    path: str,
    offset: int = 0,
    limit: int = 1024 * 1024,
) -> FileContent:
    """At most ``limit`` bytes of a file in the workspace, from ``offset``."""
    if offset < 0 or not 0 < limit <= MAX_READ:
        raise ValidationFailed(
            f"offset must be at least 0 and limit between 1 and {MAX_READ}", details={"field": "limit"}
        )
    target = AuditTarget("environment", id=environment_id)
    with audited(session, actor, "environment.file_read", target):
        path = workspace_path(path)
        target.details = {"path": path, "offset": offset}
        process = open_exec(
            session=session,
            actor=actor,
            runtime=runtime,
            environment_id=environment_id,
            command=_script(_READ, path, str(offset), str(limit + 1)),
            target=target,
        )
        output = _finish(process, path, cap=limit + 32)
        first, _, data = output.partition(b"\n")
        size = int(first) if first.strip().isdigit() else 0
        truncated = len(data) > limit or offset + min(len(data), limit) < size
        data = data[:limit]
        target.details["bytes"] = len(data)
        target.details["size"] = size
    encoding: Encoding = "utf-8"
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError:
        content, encoding = base64.b64encode(data).decode(), "base64"
    return FileContent(
        path=path, size=size, offset=offset, content=content, encoding=encoding, truncated=truncated
    )


def write_file(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    path: str,
    data: bytes,
) -> WrittenFile:
    """Create or replace a file in the workspace (its folders too), all at once."""
    if len(data) > MAX_WRITE:
        raise ValidationFailed(
            f"a file written at once holds at most {MAX_WRITE} bytes", details={"field": "content"}
        )
    target = AuditTarget("environment", id=environment_id)
    with audited(session, actor, "environment.file_write", target):
        path = workspace_path(path)
        target.details = {"path": path, "size": len(data)}
        process = open_exec(
            session=session,
            actor=actor,
            runtime=runtime,
            environment_id=environment_id,
            command=_script(_WRITE, path, str(len(data))),
            target=target,
        )
        _finish(process, path, cap=4096, stdin=data)
    return WrittenFile(path=path, size=len(data))


def list_directory(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    path: str = ".",
    max_entries: int = 1000,
) -> DirectoryListing:
    """The entries of a folder in the workspace (``.`` for the workspace), by name."""
    if not 0 < max_entries <= MAX_ENTRIES:
        raise ValidationFailed(
            f"max_entries is between 1 and {MAX_ENTRIES}", details={"field": "max_entries"}
        )
    target = AuditTarget("environment", id=environment_id)
    with audited(session, actor, "environment.file_list", target):
        path = workspace_path(path, allow_root=True)
        target.details = {"path": path}
        process = open_exec(
            session=session,
            actor=actor,
            runtime=runtime,
            environment_id=environment_id,
            command=_script(_LIST, path, str(max_entries)),
            target=target,
        )
        entries, truncated = _entries(_finish(process, path, cap=max_entries * 4400 + 16))
        target.details["entries"] = len(entries)
    return DirectoryListing(path=path, entries=entries, truncated=truncated)


def delete_file(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    path: str,
) -> DeletedFile:
    """Delete a file (or a symlink, not what it points to) in the workspace; folders are refused."""
    target = AuditTarget("environment", id=environment_id)
    with audited(session, actor, "environment.file_delete", target):
        path = workspace_path(path)
        target.details = {"path": path}
        process = open_exec(
            session=session,
            actor=actor,
            runtime=runtime,
            environment_id=environment_id,
            command=_script(_DELETE, path),
            target=target,
        )
        _finish(process, path, cap=4096)
    return DeletedFile(path=path)


def _script(body: str, *args: str) -> list[str]:
    return ["sh", "-c", _PRELUDE + body, "sh", *args]


def _finish(process: ExecSession, path: str, *, cap: int, stdin: bytes = b"") -> bytes:
    """The script's output, once it has ended; its exit code turned into envhub's error."""
    if stdin:
        # Fed from a thread so a script that stops reading cannot hold this one past the deadline.
        threading.Thread(target=_feed, args=(process, stdin), daemon=True).start()
    chunks: list[bytes] = []
    end: CommandEnd | None = None
    for piece in follow_output(process, timeout=TIMEOUT, cap=cap):
        if isinstance(piece, CommandEnd):
            end = piece
        else:
            chunks.append(piece)
    assert end is not None  # follow_output always ends with one
    if end.timed_out or end.exit_code is None:
        raise RuntimeFailure(f"the file operation on {path!r} did not finish within {TIMEOUT:.0f} s")
    code = end.exit_code
    if code == 11:
        raise NotFound(f"{path!r} does not exist in the workspace", details={"path": path})
    if code in _REFUSALS:
        reason, what = _REFUSALS[code]
        raise WorkspacePathInvalid(f"{path!r} {what}", details={"path": path, "reason": reason})
    if code != 0:
        raise RuntimeFailure(
            f"the file operation on {path!r} failed inside the environment (exit code {code})",
            hint="Check the workspace's free space and permissions (run_command: df -h, ls -l).",
        )
    return b"".join(chunks)


def _feed(process: ExecSession, data: bytes) -> None:
    try:
        process.write(data)
    except (OSError, ValueError):  # the script ended (or was ended) before reading it all
        return


def _entries(output: bytes) -> tuple[list[DirectoryEntry], bool]:
    """Parse ``name\\0type size mtime\\n`` records; an empty name marks more entries than asked."""
    entries: list[DirectoryEntry] = []
    rest = output
    while rest:
        name, sep, rest = rest.partition(b"\0")
        if not sep or not name:
            return sorted(entries, key=lambda e: e["name"]), bool(sep)
        meta, _, rest = rest.partition(b"\n")
        kind, size, mtime = ([*meta.decode("ascii", "replace").split(), "", "", ""])[:3]
        entries.append(
            DirectoryEntry(
                name=name.decode("utf-8", "replace"),
                type=kind if kind in ("file", "dir", "link") else "other",  # type: ignore[typeddict-item]
                size=int(size) if size.isdigit() else 0,
                modified=datetime.fromtimestamp(int(mtime) if mtime.isdigit() else 0, UTC).isoformat(),
            )
        )
    return sorted(entries, key=lambda e: e["name"]), False
