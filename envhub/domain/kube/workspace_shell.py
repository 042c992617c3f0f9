"""What runs inside a workspace's containers: the clone script of its init container, and the
wrapper that sets remoteEnv for a command run in it (``workspace.py`` renders both in)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from envhub.hostgit import HARDENING

_SHELL_REF = re.compile(r"(\$\{[A-Za-z_][A-Za-z0-9_]*\})")


def clone_script() -> str:
    """The init container's script: ``$REPO`` at ``$COMMIT`` into ``$DEST``, keeping local work.

    The workspace was written by the environment, so git reads none of its
    configuration's programs: every call carries envhub's hardening (no hooks,
    no fsmonitor, no filters from attributes, no submodules).
    """
    options = " ".join(f"-c {shlex.quote(setting)}" for setting in (*HARDENING, "safe.directory=*"))
    return "\n".join(
        (
            "set -eu",
            f'g() {{ git {options} -C "$DEST" "$@"; }}',
            'mkdir -p "$DEST"',
            'if [ -n "${GIT_TOKEN:-}" ]; then',
            '  basic=$(printf "x-access-token:%s" "$GIT_TOKEN" | base64 | tr -d "\\n")',
            "  export GIT_CONFIG_COUNT=2 GIT_CONFIG_KEY_0=http.extraHeader",
            "  export GIT_CONFIG_KEY_1=http.followRedirects",
            '  export GIT_CONFIG_VALUE_0="Authorization: Basic $basic" GIT_CONFIG_VALUE_1=false',
            "fi",
            'if [ ! -e "$DEST/.git" ]; then',
            '  if [ -n "$(ls -A "$DEST" 2>/dev/null)" ]; then',
            '    echo "envhub: $DEST holds files but no repository: left as it is"; exit 0',
            "  fi",
            '  g init --quiet && g remote add origin "$REPO"',
            "fi",
            "head=$(g rev-parse --verify --quiet HEAD || true)",
            'if [ "$head" = "$COMMIT" ]; then echo "envhub: workspace already at $COMMIT"; exit 0; fi',
            'if [ -n "$head" ] && [ -n "$(g status --porcelain)" ]; then',
            '  echo "envhub: the workspace has local changes: kept at $head, not moved to $COMMIT"; exit 0',
            "fi",
            'g fetch --quiet --depth 1 origin "$COMMIT" 2>/dev/null || g fetch --quiet origin',
            'g checkout --quiet --detach "$COMMIT"',
            'echo "envhub: workspace at $COMMIT"',
        )
    )


def with_remote_env(remote_env: Mapping[str, str], argv: list[str]) -> list[str]:
    """``argv`` run with ``remoteEnv`` set, through the container's shell.

    A ``${NAME}`` left in a value (``${containerEnv:NAME}`` of the image's
    variables) is filled by the shell from the container's environment; every
    other character is quoted, so a value is never run as shell code.
    """
    if not remote_env:
        return argv
    exports = "; ".join(f"export {name}={_shell_word(value)}" for name, value in remote_env.items())
    return ["/bin/sh", "-c", f'{exports}; exec "$@"', "envhub", *argv]


def _shell_word(value: str) -> str:
    parts = [part for part in _SHELL_REF.split(value) if part]
    if not parts:
        return "''"
    return "".join(f'"{part}"' if _SHELL_REF.fullmatch(part) else shlex.quote(part) for part in parts)
