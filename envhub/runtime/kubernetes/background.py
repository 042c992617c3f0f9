"""Background processes in an environment's container on Kubernetes, through exec alone.

An exec ends with its session, so the process is started detached: a small
``sh`` wrapper in a session of its own (``setsid`` when the image has it),
its output sent to a file in the workspace (``.envhub/processes/<key>.log``,
under the container's working directory), its exit status written beside it
when it ends. The wrapper forwards SIGTERM to the process and lives on to
record how it ended. Its state, output (by byte offset) and stop are more
execs. Each script is plain POSIX ``sh`` (plus ``head -c``, which GNU and
busybox have), so any image with a shell will do; an image without one
cannot run background processes (the exec fails and says so).

Unlike the local runtime, the output file is not capped here.
"""

from __future__ import annotations

from collections.abc import Callable

from envhub.errors import NotFound, RuntimeFailure
from envhub.runtime.base import BackgroundState, ProcessOutputChunk

FOLDER = ".envhub/processes"
# (argv, seconds) -> (exit code, stdout and stderr): one exec to its end in the environment's container.
Run = Callable[[list[str], float], tuple[int | None, bytes]]
_TIMEOUT = 30.0
_MISSING = 3  # the scripts' exit code for "no such process here"

# $0 the files' prefix (.envhub/processes/<key>), then the command line.
_WRAPPER = (
    '"$@" >>"$0.log" 2>&1 </dev/null & c=$!; echo "$c" >"$0.child"; '
    "trap 'kill -TERM \"$c\" 2>/dev/null' TERM; "
    'wait "$c"; code=$?; while kill -0 "$c" 2>/dev/null; do wait "$c"; code=$?; done; '
    'echo "$code" >"$0.exit.tmp" && mv -f "$0.exit.tmp" "$0.exit"'
)
_START = (
    f'set -e; d={FOLDER}; k=$1; shift; mkdir -p "$d"; rm -f "$d/$k.exit" "$d/$k.child"; : >"$d/$k.log"; '
    "if command -v setsid >/dev/null 2>&1; then s=setsid; else s=; fi; "
    '$s sh -c "$0" "$d/$k" "$@" </dev/null >/dev/null 2>&1 & echo "$!" >"$d/$k.pid"'
)
_STATE = (
    f'p={FOLDER}/$1; [ -f "$p.pid" ] || exit {_MISSING}; '
    'if [ -f "$p.exit" ]; then echo "exited $(cat "$p.exit")"; '
    'elif kill -0 "$(cat "$p.pid")" 2>/dev/null; then echo running; else echo gone; fi'
)
_OUTPUT = (
    f'p={FOLDER}/$1; [ -f "$p.pid" ] || exit {_MISSING}; '
    '[ -f "$p.log" ] || { echo 0; exit 0; }; wc -c <"$p.log"; tail -c +"$(($2 + 1))" "$p.log" | head -c "$3"'
)
_STOP = (
    f'p={FOLDER}/$1; [ -f "$p.pid" ] || exit {_MISSING}; [ -f "$p.exit" ] && exit 0; '
    'w=$(cat "$p.pid"); c=$(cat "$p.child" 2>/dev/null || echo "$w"); '
    # The whole group (the wrapper traps TERM and passes it on), then KILL what is left of the process.
    'kill -TERM -- "-$w" 2>/dev/null || kill -TERM "$w" 2>/dev/null; '
    'i=0; while [ "$i" -lt "$(($2 * 10))" ] && kill -0 "$c" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done; '
    'kill -KILL "$c" 2>/dev/null; '
    'i=0; while [ "$i" -lt 50 ] && [ ! -f "$p.exit" ] && kill -0 "$w" 2>/dev/null; '
    "do sleep 0.1; i=$((i + 1)); done; "
    'kill -KILL -- "-$w" 2>/dev/null; exit 0'
)


def start_command(key: str, argv: list[str]) -> list[str]:
    return ["sh", "-c", _START.replace('"$0"', _quote(_WRAPPER)), "sh", key, *argv]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _checked(run: Run, argv: list[str], key: str, doing: str, timeout: float = _TIMEOUT) -> bytes:
    code, output = run(argv, timeout)
    if code == _MISSING:
        raise NotFound(f"no background process {key} in this environment")
    if code != 0:
        said = output.decode("utf-8", "replace").strip()[-300:]
        raise RuntimeFailure(f"{doing} failed in the container (exit code {code}): {said}")
    return output


def start(run: Run, key: str, argv: list[str]) -> None:
    _checked(run, start_command(key, argv), key, "starting the background process")


def state(run: Run, key: str) -> BackgroundState:
    said = _checked(run, ["sh", "-c", _STATE, "sh", key], key, "reading the process's state").decode()
    word, _, code = said.strip().partition(" ")
    if word == "running":
        return BackgroundState(running=True)
    if word == "exited" and code.lstrip("-").isdigit():
        return BackgroundState(running=False, exit_code=int(code))
    return BackgroundState(running=False, exit_code=None)  # ended without a word (the container restarted)


def output(run: Run, key: str, offset: int, limit: int) -> ProcessOutputChunk:
    argv = ["sh", "-c", _OUTPUT, "sh", key, str(offset), str(limit)]
    said = _checked(run, argv, key, "reading the process's output")
    first, _, data = said.partition(b"\n")
    size = int(first.strip() or b"0")
    return ProcessOutputChunk(data[:limit], offset, size)


def stop(run: Run, key: str, grace: float) -> None:
    argv = ["sh", "-c", _STOP, "sh", key, str(max(0, round(grace)))]
    _checked(run, argv, key, "stopping the process", timeout=grace + 30)
