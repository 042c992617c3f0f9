"""The apiserver requests envhub's workers made, as logged by ``ENVHUB_KUBE_REQUEST_LOG``.

Each line of the log is one request (process, thread, verb, path, query, start
on the monotonic clock). Here they are named the way kubectl names them
(verb + resource), attributed to environments, and checked for two kinds of
waste: reading back (get, list) what the same job has just written, and
repeating the same read (polls, re-opened watches). A watch opened after a
write is counted apart, as a wait: it asks for what controllers change next
(a quota's status, a Deployment's availability), not for what was written.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from envhub.runtime.kubernetes.runtime import APPLY_THREADS

NAMESPACE_ID = re.compile(r"envhub-[a-z0-9-]*-(\d+)$")
SELECTOR_ID = re.compile(r"envhub\.dev/environment=(\d+)")


@dataclass(frozen=True)
class Request:
    pid: int
    thread: str
    method: str
    path: str
    query: str
    status: int | str
    start: float

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query)

    @property
    def by_job(self) -> bool:
        """Made by a job (the worker's main thread, or the threads it applies with), not by the
        reconciler and status watch beside it."""
        return self.thread == "MainThread" or self.thread.startswith(APPLY_THREADS)

    @property
    def is_watch(self) -> bool:
        return self.params.get("watch", [""])[0] in ("true", "1", "True")

    def shape(self) -> tuple[str, str, str | None, str | None]:
        """(verb, resource, namespace, name), kubectl's way of naming a request."""
        parts = [p for p in self.path.split("/") if p]
        if parts[:1] == ["api"]:
            rest = parts[2:]
        elif parts[:1] == ["apis"]:
            rest = parts[3:]
        else:
            rest = []
        if not rest:
            return "discover", self.path, None, None
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:  # namespaces/<ns>/<resource>[/<name>[/<sub>]]
            namespace, rest = rest[1], rest[2:]
        resource = rest[0]
        name = rest[1] if len(rest) > 1 else None
        if resource == "namespaces" and name is not None:
            namespace = name
        if len(rest) > 2:
            resource = f"{resource}/{rest[2]}"
        if self.method == "GET":
            verb = "watch" if self.is_watch else ("get" if name else "list")
        elif self.method == "PATCH":
            verb = "apply" if "fieldManager" in self.params else "patch"
        else:
            verb = {"POST": "create", "DELETE": "delete", "PUT": "update"}.get(
                self.method, self.method.lower()
            )
        return verb, resource, namespace, name

    def environment(self) -> int | None:
        _verb, _resource, namespace, _name = self.shape()
        if namespace and (match := NAMESPACE_ID.match(namespace)):
            return int(match[1])
        selector = " ".join(self.params.get("labelSelector", []))
        if match := SELECTOR_ID.search(selector):
            return int(match[1])
        return None


def read_requests(path: Path) -> list[Request]:
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        data = json.loads(line)
        found.append(
            Request(
                pid=data["pid"],
                thread=data.get("thread", ""),
                method=data["method"],
                path=data["path"],
                query=data["query"],
                status=data["status"],
                start=data["start"],
            )
        )
    return sorted(found, key=lambda r: r.start)


@dataclass
class Flags:
    reread: Counter[str] = field(default_factory=Counter)
    polls: Counter[str] = field(default_factory=Counter)
    waits: Counter[str] = field(default_factory=Counter)


def flag(requests: list[Request]) -> Flags:
    """Re-reads of what the same job had written, repeated reads, and waits, per (verb resource)."""
    flags = Flags()
    by_pid: dict[int, list[Request]] = defaultdict(list)
    for request in requests:
        by_pid[request.pid].append(request)
    for sequence in by_pid.values():
        written: set[tuple[str, str | None]] = set()
        seen: Counter[tuple[str, str, str]] = Counter()
        for request in sequence:
            verb, resource, namespace, _name = request.shape()
            label = f"{verb} {resource}"
            if verb in ("apply", "patch", "create", "update", "delete"):
                written.add((resource.split("/")[0], namespace))
                continue
            if (resource.split("/")[0], namespace) in written:
                if verb in ("get", "list"):
                    flags.reread[label] += 1
                elif verb == "watch":
                    flags.waits[label] += 1
            params = {
                k: v for k, v in request.params.items() if k not in ("resourceVersion", "timeoutSeconds")
            }
            key = (verb, request.path, json.dumps(params, sort_keys=True))
            seen[key] += 1
            if verb != "discover" and seen[key] > 1:
                flags.polls[label] += 1
    return flags


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += [
        "  ".join(
            str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join(out)
