"""The tables bench/releases.py prints: time and apiserver requests per release, envhub beside helm."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bench.apiserver_audit import Served, by_label

ENVHUB = ("envhub staging", "envhub production")
PHASES = ("install", "update")
# Objects envhub makes around every environment; a chart's own kinds are the rest.
ISOLATION = frozenset(
    {"namespaces", "resourcequotas", "limitranges", "networkpolicies", "roles", "rolebindings"}
)


@dataclass
class Sample:
    """One release along one path."""

    path: str  # one of ENVHUB, or "helm" (with its flags)
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


def verdicts(samples: list[Sample], helms: list[str]) -> list[list[str]]:
    """Each envhub path and phase against each helm run: met or MISSED, with both figures."""
    rows = []
    for path in ENVHUB:
        for phase in PHASES:
            ours = _pick(samples, path, phase)
            for helm in helms:
                theirs = _pick(samples, helm, phase)
                if not ours or not theirs:
                    continue
                mine, floor = p([s.seconds for s in ours], 50), p([s.seconds for s in theirs], 50)
                asked = sum(len(s.served) for s in ours) / len(ours)
                given = sum(len(s.served) for s in theirs) / len(theirs)
                rows.append(
                    [
                        path,
                        phase,
                        helm,
                        f"{'met' if mine <= floor else 'MISSED'} ({mine:.2f}s vs {floor:.2f}s)",
                        f"{'met' if asked < given else 'MISSED'} ({asked:.0f} vs {given:.0f})",
                    ]
                )
    return rows


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
    paths = [path for path in ENVHUB if any(s.path == path for s in samples)]
    helms = sorted({s.path for s in samples if s.path.startswith("helm")}, key=len)
    paths += helms
    rows = []
    for phase in PHASES:
        floors = []
        for helm in helms:
            chosen = _pick(samples, helm, phase)
            floors.append(
                (p([s.seconds for s in chosen], 50), sum(len(s.served) for s in chosen) / max(1, len(chosen)))
            )
        for path in paths:
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
                    *(_ratio(p(seconds, 50), floor[0]) for floor in floors),
                    f"{requests:.1f}",
                    *(_ratio(requests, floor[1]) for floor in floors),
                    f"{sum(jobs) / len(jobs):.1f}" if jobs else "-",
                    f"{min(s.load for s in chosen):.1f}-{max(s.load for s in chosen):.1f}",
                ]
            )
    short = [helm.replace(" --qps ", "_qps") for helm in helms]
    header = [
        "path", "phase", "n", "p50_s", "max_s", *(f"p50/{h}" for h in short), "requests/release",
        *(f"req/{h}" for h in short), "of_which_jobs", "load1",
    ]  # fmt: skip
    lines.append(table(rows, header))
    lines += [
        "",
        "envhub staging: signed push delivery sent -> staging release ready in the database;",
        "envhub production: approve_release called -> production release ready; helm: the command's run",
        "(helm: client-go's default 5 requests/s after a burst of 100; helm --qps N: N/s, own namespace).",
        "requests/release: served by the apiserver in the release's window, by client (audit log, user",
        "agent: envhub's workers or helm; the cluster's own controllers and kubelet are not counted), mean;",
        "of_which_jobs: envhub's own request log, the release jobs' share (the rest is the workers'",
        "reconciler and status watch, which run whether or not anything is released).",
    ]
    lines += ["", "Targets: no slower than helm (p50), and fewer apiserver requests", ""]
    lines.append(table(verdicts(samples, helms), ["path", "phase", "against", "time", "requests"]))
    lines += ["", "Apiserver requests per release, by verb and resource (mean)", ""]
    columns = [(path, phase) for path in paths for phase in PHASES if _pick(samples, path, phase)]
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
    names = [f"{path.replace('envhub ', '').replace(' --qps ', '_qps')}/{phase}" for path, phase in columns]
    lines.append(table(rows, ["request", *names]))

    lines += ["", "Where envhub's time went, beside what helm spent (p50 seconds; STYLE 15)", ""]
    rows = []
    for path in paths:
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
