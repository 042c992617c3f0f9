"""Each local environment's own cgroup: CPU and memory figures that count every process it ran.

A process tree read with psutil misses what already exited (a build step, a
test run) and counts memory page by page; the kernel's cgroup counters do
neither. So when envhub may create cgroups (as root, or in a cgroup delegated
to it), each start of an environment gets one, nested under envhub's own
cgroup (``<own>/envhub-<key>/<environment id>-<start>``; the key keeps two
envhub data folders on one machine apart), the supervisor moves itself in
before it starts anything, and every process below it stays there.

Both versions of the kernel's interface are read, and a hybrid machine mixes
them: CPU time from cgroup v2's ``cpu.stat`` (``usage_usec``, present in
every v2 cgroup) or v1's ``cpuacct.usage``; memory from v2's
``memory.current`` and ``memory.peak`` when the memory controller is on v2,
else v1's ``memory.usage_in_bytes`` and ``memory.max_usage_in_bytes``. The
memory figure is the working set (usage minus inactive file cache), as the
Kubernetes metrics API reports it.

Where no cgroup can be made (an unprivileged envhub outside a delegated
cgroup), :func:`place` says why and the runtime measures the process tree,
saying so: the source of a figure is always shown.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

_PREFIX = "envhub-"


@dataclass(frozen=True, slots=True)
class Placement:
    """The cgroup directories one start of an environment reads its CPU and memory from."""

    cpu: str
    memory: str

    @property
    def directories(self) -> tuple[str, ...]:
        """Each directory the supervisor joins (one when both figures come from v2)."""
        return tuple(dict.fromkeys((self.cpu, self.memory)))


@dataclass(frozen=True, slots=True)
class Reading:
    cpu_seconds: float
    memory_bytes: int  # working set
    memory_peak_bytes: int | None  # the highest usage since the cgroup was made, where the kernel says
    oom_kills: int | None


@dataclass(frozen=True, slots=True)
class _Hierarchy:
    version: int  # 1 or 2
    directory: Path  # envhub's own cgroup in it
    controllers: frozenset[str]


def _hierarchies(proc: Path = Path("/proc/self")) -> list[_Hierarchy]:
    """The cgroup hierarchies mounted here, each with this process's own cgroup in it."""
    own: dict[str, str] = {}  # "" for v2, else the controllers ("cpu,cpuacct")
    for line in (proc / "cgroup").read_text().splitlines():
        _id, listed, path = line.split(":", 2)
        own[listed] = path
    found = []
    for line in (proc / "mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, kinds = left.split(), right.split()
        if len(fields) < 5 or len(kinds) < 3 or kinds[0] not in ("cgroup", "cgroup2"):
            continue
        root, mount = fields[3], Path(fields[4])
        controllers: frozenset[str] = frozenset()
        version, key = 2, ""
        if kinds[0] == "cgroup":
            options = kinds[2].split(",")
            version = 1
            controllers = frozenset(o for o in options if o not in ("rw", "ro") and "=" not in o)
            key = next((k for k in own if k and frozenset(k.split(",")) == controllers), "?")
        mine = own.get(key)
        if mine is None or not (mine == root or mine.startswith(root.rstrip("/") + "/")):
            continue
        directory = mount / mine[len(root) :].lstrip("/")
        if version == 2:
            with contextlib.suppress(OSError):
                controllers = frozenset((directory / "cgroup.controllers").read_text().split())
        found.append(_Hierarchy(version, directory, controllers))
    return found


def _key(root: Path) -> str:
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]


def _container(hierarchy: _Hierarchy, key: str, *, memory: bool) -> Path:
    """envhub's folder of environment cgroups in ``hierarchy``, made when missing."""
    folder = hierarchy.directory / f"{_PREFIX}{key}"
    folder.mkdir(exist_ok=True)
    if memory and hierarchy.version == 2:  # its children get memory.current only when it hands memory on
        (folder / "cgroup.subtree_control").write_text("+memory")
    return folder


def _v2_memory(hierarchy: _Hierarchy, key: str) -> bool:
    if hierarchy.version != 2 or "memory" not in hierarchy.controllers:
        return False
    try:
        _container(hierarchy, key, memory=True)
    except OSError:
        return False
    return True


def place(root: Path, environment_id: int) -> Placement | str:
    """A fresh cgroup (or one per hierarchy) for a start of ``environment_id``; else why there is none.

    ``root`` is the runtime's folder of environments. Cgroups a previous start
    left behind empty are removed first.
    """
    key = _key(root)
    try:
        hierarchies = _hierarchies()
    except OSError as exc:
        return f"this machine's cgroups cannot be read ({exc.strerror or exc})"
    v2 = next((h for h in hierarchies if h.version == 2), None)
    cpu = v2 or next((h for h in hierarchies if "cpuacct" in h.controllers), None)
    memory = v2 if v2 is not None and _v2_memory(v2, key) else None
    memory = memory or next((h for h in hierarchies if h.version == 1 and "memory" in h.controllers), None)
    if cpu is None or memory is None:
        missing = " and ".join(n for n, h in (("CPU", cpu), ("memory", memory)) if h is None)
        if memory is None and v2 is not None:  # a cgroup v2 machine: memory is not handed down
            return (
                f"cgroup v2's memory controller is not available below envhub's cgroup {v2.directory} "
                "(it must be enabled in the cgroup.subtree_control of the cgroups above envhub's folders)"
            )
        return f"no cgroup hierarchy here accounts {missing}"
    name = f"{environment_id}-{time.time_ns() // 1_000_000}"
    made: dict[_Hierarchy, Path] = {}
    for attempt in range(2):  # another start may remove envhub's folder when it finds it empty
        try:
            for hierarchy in dict.fromkeys((cpu, memory)):
                if hierarchy not in made:
                    folder = _container(hierarchy, key, memory=hierarchy is memory)
                    _sweep(folder, environment_id)
                    (folder / name).mkdir()
                    made[hierarchy] = folder / name
            return Placement(cpu=str(made[cpu]), memory=str(made[memory]))
        except FileNotFoundError:
            if attempt == 0:
                continue
            problem = "it vanished while envhub made it"
        except OSError as exc:
            where = exc.filename or "envhub's cgroup"
            problem = f"envhub cannot create a cgroup in {where} ({exc.strerror or exc})"
        break
    remove(Placement(*(str(made.get(h, "")) for h in (cpu, memory))))
    return problem


def _sweep(folder: Path, environment_id: int) -> None:
    """Remove the empty cgroups earlier starts of this environment left (a crash leaves one)."""
    for stale in folder.glob(f"{environment_id}-*"):
        with contextlib.suppress(OSError):
            stale.rmdir()


def remove(placement: Placement) -> bool:
    """Remove a stopped start's cgroups (the kernel refuses while a process is still in one);
    whether none is left."""
    gone = True
    for directory in placement.directories:
        path = Path(directory)
        if not path.parent.name.startswith(_PREFIX):  # only ever one envhub made
            continue
        try:
            path.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            gone = False
            continue
        # envhub's folder too once it is empty: nothing of envhub's is left in a cgroup it
        # does not own (the kernel refuses while another environment's cgroup is in it).
        with contextlib.suppress(OSError):
            path.parent.rmdir()
    return gone


def _fields(path: Path) -> dict[str, int]:
    values = {}
    for line in path.read_text().splitlines():
        name, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            values[name] = int(value)
    return values


def _number(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except FileNotFoundError:
        return None


def read(placement: Placement) -> Reading:
    """The counters now; raises OSError when the cgroup is gone."""
    cpu, memory = Path(placement.cpu), Path(placement.memory)
    if (cpu / "cpu.stat").exists():
        cpu_seconds = _fields(cpu / "cpu.stat")["usage_usec"] / 1e6
    else:
        cpu_seconds = int((cpu / "cpuacct.usage").read_text()) / 1e9
    if (memory / "memory.current").exists():
        usage = int((memory / "memory.current").read_text())
        inactive = _fields(memory / "memory.stat").get("inactive_file", 0)
        peak = _number(memory / "memory.peak")
        oom = _fields(memory / "memory.events").get("oom_kill")
    else:
        usage = int((memory / "memory.usage_in_bytes").read_text())
        inactive = _fields(memory / "memory.stat").get("total_inactive_file", 0)
        peak = _number(memory / "memory.max_usage_in_bytes")
        oom = _fields(memory / "memory.oom_control").get("oom_kill")
    return Reading(cpu_seconds, max(0, usage - inactive), peak, oom)


def describe(placement: Placement) -> str:
    """Where the figures come from, in words: "cgroup v2", or "cgroup v2 (CPU), v1 (memory)"."""
    cpu = "v2" if os.path.exists(os.path.join(placement.cpu, "cpu.stat")) else "v1"
    memory = "v2" if os.path.exists(os.path.join(placement.memory, "memory.current")) else "v1"
    return f"cgroup {cpu}" if cpu == memory else f"cgroup {cpu} (CPU), {memory} (memory)"
