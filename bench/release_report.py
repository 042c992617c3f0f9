"""The tables bench/releases.py prints: time and apiserver requests per release, envhub beside helm."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bench.apiserver_audit import Served, by_label

PATHS = ("envhub staging", "envhub production", "helm")
PHASES = ("install", "update")
# Objects envhub makes around every environment; a chart's own kinds are the rest.
ISOLATION = frozenset(
    {"namespaces", "resourcequotas", "limitranges", "networkpolicies", "roles", "rolebindings"}
)


@dataclass
class Sample:
    """One release along one path."""

    path: str  # one of PATHS
    seconds: float
    window: tuple[float, float]  # wall clock, for the audit log
    load: float  # 1-minute load average as it started
    round: int = 0
    segments: dict[str, float] = field(default_factory=dict)
    served: list[Served] = field(default_factory=list)  # the audit log's, in the window
    job_requests: int | None = None  # envhub's own log: the release jobs' requests

    @property
    def phase(self) -> str:
        return "install" if self.round == 1 else "update"


def table(rows: list[list[str]], header: list[str]) -> str:
    """Columns padded to their widest cell: figures to the right, words to the left."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if _figure(cell) else cell.ljust(width)
            for cell, width in zip(cells, widths, strict=True)
        ).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def _figure(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or cell in ("-", "nan")) and " " not in cell


def p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _pick(samples: list[Sample], path: str, phase: str) -> list[Sample]:
    return [s for s in samples if s.path == path and s.phase == phase]


def _ratio(value: float, floor: float) -> str:
    return f"{value / floor:.2f}x" if floor == floor and floor > 0 else "-"


def report(samples: list[Sample], *, objects: int, workers: int) -> str:
    if not samples:
        return "no release finished: nothing to report"
    rounds = max(s.round for s in samples)
    loads = [s.load for s in samples]
    lines = [
        "",
        f"Releases of a {objects}-object Helm chart, {rounds} round(s) (round 1 installs, the rest update): "
        f"envhub ({workers} worker(s), Kubernetes runtime) beside helm upgrade --install --wait, on the test "
        "cluster (kube-apiserver v1.20.2, test kubelet)",
        f"load average (1 min) as releases started: {min(loads):.2f} to {max(loads):.2f}",
        "",
    ]
    rows = []
    for phase in PHASES:
        helm = _pick(samples, "helm", phase)
        helm_time = p([s.seconds for s in helm], 50)
        helm_requests = sum(len(s.served) for s in helm) / len(helm) if helm else float("nan")
        for path in PATHS:
            chosen = _pick(samples, path, phase)
            if not chosen:
                continue
            seconds = [s.seconds for s in chosen]
            requests = sum(len(s.served) for s in chosen) / len(chosen)
            jobs = [s.job_requests for s in chosen if s.job_requests is not None]
            rows.append(
                [
                    path,
                    phase,
                    str(len(chosen)),
                    f"{p(seconds, 50):.2f}",
                    f"{max(seconds):.2f}",
                    _ratio(p(seconds, 50), helm_time),
                    f"{requests:.1f}",
                    _ratio(requests, helm_requests),
                    f"{sum(jobs) / len(jobs):.1f}" if jobs else "-",
                    f"{min(s.load for s in chosen):.1f}-{max(s.load for s in chosen):.1f}",
                ]
            )
    header = "path phase n p50_s max_s p50/helm requests/release req/helm of_which_jobs load1"
    lines.append(table(rows, header.split()))
    lines += [
        "",
        "envhub staging: signed push delivery sent -> staging release ready in the database;",
        "envhub production: approve_release called -> production release ready; helm: the command's run.",
        "requests/release: served by the apiserver in the release's window, by client (audit log, user",
        "agent: envhub's workers or helm; the cluster's own controllers and kubelet are not counted), mean;",
        "of_which_jobs: envhub's own request log, the release jobs' share (the rest is the workers'",
        "reconciler and status watch, which run whether or not anything is released).",
    ]
    lines += ["", "Apiserver requests per release, by verb and resource (mean)", ""]
    columns = [(path, phase) for path in PATHS for phase in PHASES if _pick(samples, path, phase)]
    counts = {}
    for path, phase in columns:
        chosen = _pick(samples, path, phase)
        total: Counter[str] = Counter()
        for sample in chosen:
            total.update(by_label(sample.served))
        counts[(path, phase)] = {label: n / len(chosen) for label, n in total.items()}
    labels = sorted(
        {label for c in counts.values() for label in c},
        key=lambda label: -sum(c.get(label, 0.0) for c in counts.values()),
    )
    rows = [[label] + [f"{counts[c].get(label, 0.0):.1f}" for c in columns] for label in labels]
    rows.append(["total"] + [f"{sum(counts[c].values()):.1f}" for c in columns])
    isolation = [
        f"{sum(n for label, n in counts[c].items() if label.split(' ')[-1].split('/')[0] in ISOLATION):.1f}"
        for c in columns
    ]
    rows.append(["(namespace, quota, limits, policies, RBAC)", *isolation])
    names = [f"{path.replace('envhub ', '')}/{phase}" for path, phase in columns]
    lines.append(table(rows, ["request", *names]))

    lines += ["", "Where envhub's time went, beside what helm spent (p50 seconds; STYLE 15)", ""]
    rows = []
    for path in PATHS:
        for phase in PHASES:
            chosen = _pick(samples, path, phase)
            if not chosen:
                continue
            keys = list(dict.fromkeys(k for s in chosen for k in s.segments))
            for key in keys:
                values = [s.segments[key] for s in chosen if key in s.segments]
                rows.append([path, phase, key, f"{p(values, 50):.2f}", f"{max(values):.2f}"])
            rows.append([path, phase, "total", f"{p([s.seconds for s in chosen], 50):.2f}",
                         f"{max(s.seconds for s in chosen):.2f}"])  # fmt: skip
    lines.append(table(rows, ["path", "phase", "segment", "p50_s", "max_s"]))
    return "\n".join(lines)
