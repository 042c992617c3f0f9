"""Which environment variables an environment may not set: some names, and NUL in values.

Project variables, environment variables and project secrets all become the
environment of the environment's processes. A few names are read not by the
application but by the machinery that starts programs: the dynamic loader
(``LD_PRELOAD`` loads a library into every program started with it), glibc
(``GCONV_PATH`` and ``GLIBC_TUNABLES`` have each been the way into a setuid
program or a loader bug), and the shells that run commands (``BASH_ENV`` and
``ENV`` name a file the shell executes first, ``BASH_FUNC_*`` defines shell
functions, ``SHELLOPTS``/``BASHOPTS`` switch on options such as ``xtrace``
whose prompt expands commands).

The local runtime never hands project variables to a program outside the
sandbox (bubblewrap gets them through ``--setenv``), so refusing these names is
a second line, not the boundary: it keeps such a variable from ever reaching a
launcher by a future mistake, and no application needs to set them. Names that
only steer one language's runtime (``PYTHONPATH``, ``NODE_OPTIONS``,
``PERL5LIB``) stay allowed: they act on the application's own interpreter,
inside its sandbox, where the application's code runs anyway, and projects
use them legitimately.
"""

from __future__ import annotations

from collections.abc import Iterable

from envhub.errors import EnvNameForbidden, ValidationFailed

FORBIDDEN_NAMES = frozenset(
    {
        "GCONV_PATH",  # glibc loads iconv modules from here
        "GLIBC_TUNABLES",  # parsed by the loader itself (CVE-2023-4911)
        "LOCPATH",  # glibc reads locale data from here
        "NLSPATH",  # catopen() message catalogues
        "BASH_ENV",  # a file every non-interactive bash runs first
        "ENV",  # the same for sh (POSIX) and interactive bash in sh mode
        "SHELLOPTS",  # turns on bash options (xtrace + PS4 runs commands)
        "BASHOPTS",
    }
)
FORBIDDEN_PREFIXES = (
    "LD_",  # the dynamic loader: LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT, ...
    "BASH_FUNC_",  # exported bash functions
)


def forbidden(name: str) -> bool:
    """True when ``name`` changes how programs are loaded or how shells start."""
    return name in FORBIDDEN_NAMES or name.startswith(FORBIDDEN_PREFIXES)


def check_values(env: dict[str, str], *, field: str = "env") -> None:
    """Refuse NUL characters: no program can receive them, and launchers read NUL-separated lists."""
    for name, value in env.items():
        if "\0" in value:
            raise ValidationFailed(
                f"{field}: the value of {name} contains a NUL character",
                details={"field": field, "name": name},
            )


def check_names(names: Iterable[str], *, field: str = "env") -> None:
    """Raise :class:`EnvNameForbidden` naming the first forbidden variable."""
    for name in names:
        if forbidden(name):
            raise EnvNameForbidden(
                f"{field}: {name} changes how programs are loaded or how shells start, "
                "so envhub does not let environments set it",
                details={"field": field, "name": name},
            )
