"""envhub with 10,000 environments: ``make bench-scale`` (``python -m bench.scale``).

Starts a private PostgreSQL and redis-server (as bench/api.py does) and seeds
two databases with ``bench/scale_world.py``: the full world (``--environments``
in ``--projects`` projects of ``--teams`` teams, with ``--audit-days`` of audit
trail at a steady rate) and a baseline world with the same teams and projects
but ``--baseline-environments`` environments (100) and a few days of trail.
Every figure is measured on both in the same run and shown with its ratio:
what grows with the number of environments shows up as a ratio above 1.

* REST latency (p50, p99) under Granian, one worker, one request at a time:
  the cross-project list (first page, a page deep in the cursor chain, a
  search), a project's list, the projects list, the audit trail's first page;
  each also against the floor ``GET /healthz`` (HTTP plus ``SELECT 1``).
* SQL statements per API call (bounded: the same at 100 and at 10,000).
* A reconciler pass with nothing drifted: time, statements, runtime and queue
  calls; then with ``--drifted`` environments drifted (the calls should grow
  with the drift, not with the environments).
* Audit chain verification: the full check per 10,000 events, beside the
  floor of recomputing the MACs in memory; the incremental check after it.

* The dashboard's pages in headless Chromium against the production build
  (``bench/scale_pages.py``): the projects page, a project's environments and
  the cross-project environments page, time to the first row on screen
  (``--no-pages`` skips them: the build and the browser take a few minutes).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import scale_pages, scale_probes
from bench.api import Row, expect, measure
from bench.api import envhub_api as granian_api
from bench.scale_world import World, seed
from envhub.config import Settings, override_settings
from envhub.launcher import migrate
from envhub.models.db import engine_for
from envhub.wiring import install as wire_adapters
from tests.support.postgres import private_postgres
from tests.support.redis_server import private_redis

# Targets from issue 15.
REST_P99_MS = 100.0
RECONCILE_S = 1.0
PAGE_S = 1.0


@dataclass
class Measured:
    world: World
    rest: dict[str, Row]
    statements: dict[str, int]
    passes: list[scale_probes.Pass]
    chain: scale_probes.ChainTimes
    database_url: str
    pages: scale_pages.PageTimes | None = None


def _calls(world: World, deep_cursor: str) -> dict[str, str]:
    project = world.projects[0]
    return {
        "floor: GET /healthz": "/healthz",
        "all environments, first 20": "/api/v1/environments?limit=20",
        "all environments, deep page (cursor)": f"/api/v1/environments?limit=20&cursor={deep_cursor}",
        "all environments, search 'pr-99'": "/api/v1/environments?limit=20&q=pr-99",
        "one project's environments, first 20": f"/api/v1/projects/{project}/environments?limit=20",
        "projects, first 20": "/api/v1/projects?limit=20",
        "audit trail, first 50": "/api/v1/audit/trail?limit=50",
    }


def _deep_cursor(http: httpx.Client, world: World) -> str:
    """The cursor halfway down the cross-project list."""
    total = int(expect(http.get("/api/v1/environments", params={"limit": 1}), 200)["total"])
    seen, cursor = 0, None
    while seen < total // 2:
        step = min(100, total // 2 - seen)
        params: dict[str, str | int] = {"limit": step, **({"cursor": cursor} if cursor else {})}
        cursor = str(expect(http.get("/api/v1/environments", params=params), 200)["next_cursor"])
        seen += step
    return cursor or ""


def _getter(http: httpx.Client, path: str) -> Callable[[int], Any]:
    return lambda _: expect(http.get(path), 200)


def measure_world(settings: Settings, world: World, workdir: Path, args: argparse.Namespace) -> Measured:
    engine = engine_for(settings.database_url)
    rest: dict[str, Row] = {}
    with granian_api(settings, workdir) as (base, server):
        headers = {"Authorization": f"Bearer {world.token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
            calls = _calls(world, _deep_cursor(http, world))
            floor: Row | None = None
            for name, path in calls.items():
                row = Row("REST", name, floor=floor)
                rest[name] = measure(row, server, _getter(http, path), args.samples, args.warmup)
                floor = floor or rest[name]
    engine.dispose()
    statements = scale_probes.statements_per_call(engine, world.token, calls)
    statements.update(scale_probes.statements_per_page(engine, world))
    in_flight = scale_probes.settle(engine)
    passes = [
        scale_probes.reconciler_pass(
            engine, "nothing drifted, status watched (Kubernetes)", pushes_status=True
        ),
        scale_probes.reconciler_pass(engine, "nothing drifted, status polled (local)", pushes_status=False),
    ]
    scale_probes.drift(engine, args.drifted)
    passes.append(
        scale_probes.reconciler_pass(engine, f"{args.drifted} drifted, status watched", pushes_status=True)
    )
    print(f"  ({in_flight} environments have a run in flight, its job on the queue)", flush=True)
    chain = scale_probes.chain_times(engine)
    engine.dispose()
    return Measured(world, rest, statements, passes, chain, settings.database_url)


# -- the report ----------------------------------------------------------------


def _ratio(big: float, small: float) -> str:
    return f"{big / small:.2f}x" if small else "-"


def report(full: Measured, base: Measured, args: argparse.Namespace) -> list[str]:
    """Print the figures; returns the targets missed."""
    missed: list[str] = []
    w, b = full.world, base.world
    print()
    print(
        f"envhub at scale on PostgreSQL: {w.environments:,} environments in {len(w.projects)} projects and "
        f"{len(w.teams)} teams, {w.job_runs:,} job runs, {w.audit_events:,} audit events over "
        f"{args.audit_days:g} days (seeded in {w.seconds:.1f} s); baseline: {b.environments:,} environments, "
        f"{b.audit_events:,} events. Load average {os.getloadavg()[0]:.2f} on {psutil.cpu_count()} cores."
    )
    big, small = f"{w.environments:,} envs", f"{b.environments:,} envs"
    print()
    header = f"{'REST, one Granian worker':<40} {'p50 ms':>8} {'p99 ms':>8} {'p99 ' + small:>14} "
    header += f"{'ratio':>7} {'/floor':>7} {'target':>8}"
    print(header)
    print("-" * len(header))
    floor = full.rest["floor: GET /healthz"].percentile(99)
    for name, row in full.rest.items():
        p99 = row.percentile(99)
        baseline = base.rest[name].percentile(99)
        target = "" if name.startswith("floor") else f"<{REST_P99_MS:.0f}"
        verdict = ""
        if target and p99 * 1000 >= REST_P99_MS:
            verdict = " MISSED"
            missed.append(f"REST p99 {name}")
        print(
            f"{name:<40} {row.percentile(50) * 1000:>8.1f} {p99 * 1000:>8.1f} {baseline * 1000:>14.1f} "
            f"{_ratio(p99, baseline):>7} {_ratio(p99, floor):>7} {target:>8}{verdict}"
        )
    print()
    header = f"{'SQL statements per API call or page':<40} {big:>12} {small:>12} {'bounded':>8}"
    print(header)
    print("-" * len(header))
    for name, count in full.statements.items():
        bounded = count == base.statements[name]
        if not bounded:
            missed.append(f"statements {name}")
        print(f"{name:<40} {count:>12} {base.statements[name]:>12} {'yes' if bounded else 'NO':>8}")
    print()
    header = (
        f"{'reconciler pass':<44} {'ms':>8} {'ms ' + small:>14} {'ratio':>7} {'SQL':>5} {'SQL base':>8} "
        f"{'runtime calls':>14} {'base':>5} {'queue calls':>12} {'base':>5}"
    )
    print(header)
    print("-" * len(header))
    for mine, theirs in zip(full.passes, base.passes, strict=True):
        watched = "watched" in mine.label
        if watched and mine.seconds >= RECONCILE_S:
            missed.append(f"reconciler {mine.label}: {mine.seconds:.2f} s")
        if watched and "nothing" in mine.label and mine.runtime_calls != theirs.runtime_calls:
            missed.append("reconciler runtime calls grow with the environments")
        print(
            f"{mine.label:<44} {mine.seconds * 1000:>8.0f} {theirs.seconds * 1000:>14.0f} "
            f"{_ratio(mine.seconds, theirs.seconds):>7} {mine.statements:>5} {theirs.statements:>8} "
            f"{mine.runtime_calls:>14} {theirs.runtime_calls:>5} {sum(mine.queue.values()):>12} "
            f"{sum(theirs.queue.values()):>5}"
        )
    for p in full.passes:
        print(f"  {p.label}: runtime {dict(p.runtime)}, queue {dict(p.queue)}, runs started {p.started}")
    print()
    c, cb = full.chain, base.chain
    per = 10_000 / max(1, c.events)
    print(
        f"audit chain, full check: {c.events:,} events in {c.full_seconds:.2f} s = "
        f"{c.full_seconds * per * 1000:.0f} ms per 10k events; floor (the MACs alone, rows in memory) "
        f"{c.mac_floor_seconds * per * 1000:.0f} ms per 10k ({_ratio(c.full_seconds, c.mac_floor_seconds)}); "
        f"baseline world {cb.events:,} events: "
        f"{cb.full_seconds * 10_000 / max(1, cb.events) * 1000:.0f} ms per 10k"
    )
    print(
        f"audit chain, incremental check after it: {c.incremental_events} event(s) in "
        f"{c.incremental_seconds * 1000:.0f} ms ({_ratio(c.incremental_seconds, c.full_seconds)} of the full "
        f"check); {'intact' if c.ok and cb.ok else 'BROKEN'}"
    )
    if not (c.ok and cb.ok):
        missed.append("audit chain verification")
    if full.pages is not None and base.pages is not None:
        print()
        header = f"{'page in Chromium (production build)':<42} {'median ms':>10} {'max ms':>8} "
        header += f"{'median ' + small:>18} {'ratio':>7} {'target':>7}"
        print(header)
        print("-" * len(header))
        target = f"<{PAGE_S * 1000:.0f}"
        for name in full.pages.seconds:
            median, baseline = full.pages.median(name), base.pages.median(name)
            verdict = ""
            if median >= PAGE_S:
                verdict = " MISSED"
                missed.append(f"page {name}")
            print(
                f"{name:<42} {median * 1000:>10.0f} {full.pages.worst(name) * 1000:>8.0f} "
                f"{baseline * 1000:>18.0f} {_ratio(median, baseline):>7} {target:>7}{verdict}"
            )
        print(f"({args.page_runs} loads of each after a warm-up; from goto to the first row on screen)")
    print()
    print("targets missed: " + ("; ".join(missed) if missed else "none"))
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--environments", type=int, default=10_000)
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--teams", type=int, default=10)
    parser.add_argument("--audit-days", type=float, default=365)
    parser.add_argument("--baseline-environments", type=int, default=100)
    parser.add_argument("--drifted", type=int, default=10, help="environments drifted in the last pass")
    parser.add_argument("--samples", type=int, default=200, help="requests per REST operation")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--pages", action=argparse.BooleanOptionalAction, default=True, help="the pages in Chromium"
    )
    parser.add_argument("--page-runs", type=int, default=5, help="loads of each page")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="envhub-bench-scale-") as scratch, private_postgres() as postgres:
        workdir = Path(scratch)
        (workdir / "redis").mkdir()
        with private_redis(workdir / "redis") as redis:
            measured: list[Measured] = []
            worlds = [
                ("baseline", args.baseline_environments, min(args.audit_days, 3.0)),
                ("full", args.environments, args.audit_days),
            ]
            for name, environments, days in worlds:
                settings = Settings(
                    database_url=postgres.create_database(f"envhub_scale_{name}"),
                    redis_url=redis.url,
                    data_dir=workdir / f"data-{name}",
                    queue_name=f"bench-{name}",
                )
                with override_settings(settings):
                    wire_adapters()
                    migrate(settings)
                    print(
                        f"seeding the {name} world: {environments:,} environments, {days:g} days ...",
                        flush=True,
                    )
                    world = seed(
                        engine_for(settings.database_url),
                        environments=environments,
                        projects=args.projects,
                        teams=args.teams,
                        audit_days=days,
                    )
                    print(f"  seeded in {world.seconds:.1f} s; measuring ...", flush=True)
                    measured.append(measure_world(settings, world, workdir, args))
            if args.pages:
                print("the pages in Chromium (both worlds' envhub, production build) ...", flush=True)
                sites = [(m.database_url, m.world) for m in measured]
                timed = scale_pages.measure_pages(sites, redis.url, workdir, args.page_runs)
                for m, pages in zip(measured, timed, strict=True):
                    m.pages = pages
            missed = report(measured[1], measured[0], args)
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
