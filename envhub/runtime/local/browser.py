"""The machine's Chromium and envhub's Playwright, lent read-only to a local environment's sandbox.

Nothing is installed into the environment and nothing it could change is
shared: the sandbox sees

* Chromium where the host has it. Debian's ``/usr/bin/chromium`` (a script that
  starts ``/usr/lib/chromium/chromium``) and the libraries it loads live under
  the system folders every sandbox already mounts read-only; a Chromium
  elsewhere gets its folder, and the folders of libraries it loads from outside
  the system folders, bound read-only at the same paths;
* Playwright from envhub's own install, read-only under :data:`INSIDE`: the
  Python package (with greenlet, its one dependency) for a ``python3`` of the
  same version as envhub's, and the Node.js driver it ships (a ``node`` binary
  and ``playwright-core``) for Node scripts. The rest of envhub's install and
  virtualenv stays hidden.

Every path is a read-only bind: the sandbox has no capability to remount it,
so nothing inside can change what the next environment runs. Chromium runs
with ``--no-sandbox`` (``domain/browser.py`` says why); the environment keeps
its own namespaces, its dropped capabilities and its network.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from envhub.domain import browser
from envhub.errors import SandboxUnavailable
from envhub.runtime.local.sandbox import Extras, Sandbox

INSIDE = "/opt/envhub-browser"
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32")  # what every sandbox mounts (sandbox.py)
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


@dataclass(frozen=True, slots=True)
class BrowserKit:
    """What one sandbox gets: read-only binds (host path, path inside) and the variables naming them."""

    binds: tuple[tuple[str, str], ...]
    env: tuple[tuple[str, str], ...]

    @property
    def variables(self) -> dict[str, str]:
        return dict(self.env)


def _system(path: str) -> bool:
    return any(path == top or path.startswith(top + "/") for top in _SYSTEM)


def find_chromium(configured: str = "") -> str:
    """The Chromium to lend: ``configured`` (``ENVHUB_BROWSER_CHROMIUM``), else the first on PATH."""
    names = (configured,) if configured else _CANDIDATES
    for name in names:
        found = shutil.which(name, path="/usr/local/bin:/usr/bin:/bin") if "/" not in name else name
        if found and os.access(found, os.X_OK) and os.path.isfile(found):
            return os.path.abspath(found)
    raise SandboxUnavailable(
        "this envhub lends environments a browser, but no Chromium was found on this machine",
        hint="Install Chromium (Debian: apt-get install chromium), or set ENVHUB_BROWSER_CHROMIUM "
        "to its path, or ENVHUB_BROWSER=off.",
        details={"chromium": configured or ", ".join(_CANDIDATES)},
    )


def _elf_libraries(binary: str) -> list[str]:
    """The shared libraries ``binary`` loads, by path (ldd; nothing for a script or a static binary)."""
    with open(binary, "rb") as handle:
        if handle.read(4) != b"\x7fELF":
            return []
    ldd = shutil.which("ldd", path="/usr/bin:/bin")
    if ldd is None:
        return []
    done = subprocess.run(
        [ldd, binary], capture_output=True, text=True, timeout=20, check=False, env={"LANG": "C"}
    )
    found = []
    for line in done.stdout.splitlines():
        _name, arrow, rest = line.partition("=>")
        path = (rest if arrow else line).strip().split(" ", 1)[0]
        if path.startswith("/"):
            found.append(path)
    return found


def _chromium_binds(executable: str) -> list[tuple[str, str]]:
    """Read-only binds so ``executable`` runs inside: none when it lives in the system folders."""
    real = os.path.realpath(executable)
    folders: set[str] = set()
    for path in (executable, real):
        if not _system(path):
            folders.add(os.path.dirname(path))
    for library in _elf_libraries(real):
        resolved = os.path.realpath(library)
        if not _system(library) or not _system(resolved):
            folders.add(os.path.dirname(library))
            folders.add(os.path.dirname(resolved))
    return [(folder, folder) for folder in sorted(folders)]


def _package_folder(name: str) -> str | None:
    """Where envhub's own ``name`` package lives (found, not imported)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(next(iter(spec.submodule_search_locations)))


def _same_python() -> bool:
    """Whether the sandbox's ``python3`` can load envhub's compiled greenlet: the same version."""
    real = os.path.realpath("/usr/bin/python3")
    return os.path.basename(real) == f"python{sys.version_info.major}.{sys.version_info.minor}"


@functools.lru_cache(maxsize=4)
def browser_kit(chromium: str = "") -> BrowserKit:
    """The binds and variables that lend a sandbox Chromium and Playwright; raises without Chromium."""
    executable = find_chromium(chromium)
    binds = _chromium_binds(executable)
    env = [
        (browser.CHROMIUM_VARIABLE, executable),
        (browser.ARGS_VARIABLE, " ".join(browser.CHROMIUM_ARGS)),
        ("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"),
    ]
    playwright = _package_folder("playwright")
    driver = Path(playwright) / "driver" if playwright else None
    if driver is not None and (driver / "node").is_file() and (driver / "package").is_dir():
        binds += [
            (str(driver / "node"), f"{INSIDE}/bin/node"),
            (str(driver / "package"), f"{INSIDE}/node_modules/playwright-core"),
        ]
        env += [
            (browser.NODE_VARIABLE, f"{INSIDE}/bin/node"),
            (browser.NODE_PATH_VARIABLE, f"{INSIDE}/node_modules"),
        ]
        greenlet = _package_folder("greenlet")
        if playwright and greenlet and _same_python():
            binds += [
                (playwright, f"{INSIDE}/python/playwright"),
                (greenlet, f"{INSIDE}/python/greenlet"),
            ]
            env.append((browser.PYTHONPATH_VARIABLE, f"{INSIDE}/python"))
    return BrowserKit(binds=tuple(binds), env=tuple(env))


def sandbox_extras(
    sandbox: Sandbox, *, lend: bool, own_host: str, chromium: str = ""
) -> tuple[Extras, dict[str, str]]:
    """What an environment's sandboxes get, and the variables that name it.

    ``lend``: the browser (raises ``SandboxUnavailable`` when the machine has no
    Chromium). ``own_host``: the public URL's host, served inside. Under the
    trusted-code sandboxes (``unshare``, ``none``), which see the host's whole
    filesystem, only Chromium and its flags are named: Playwright is whatever
    the host has.
    """
    hosts = (own_host,) if own_host else ()
    if not lend:
        return Extras(hosts=hosts), {}
    kit = browser_kit(chromium)
    if sandbox.kind != "bwrap":
        trusted = (browser.CHROMIUM_VARIABLE, browser.ARGS_VARIABLE, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD")
        return Extras(hosts=hosts), {k: v for k, v in kit.env if k in trusted}
    sealed = (INSIDE,) if any(inside.startswith(INSIDE + "/") for _source, inside in kit.binds) else ()
    return Extras(read_only=kit.binds, sealed=sealed, hosts=hosts), kit.variables
