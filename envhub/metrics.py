"""envhub's Prometheus metrics: every name, label and bucket in one place.

Each process counts what it does itself, in its own memory (prometheus_client's
default registry), and serves its own figures: the web at ``/metrics`` on its
HTTP port, a worker and its reconciler process each on a port of their own
(``ENVHUB_WORKER_METRICS_PORT``, envhub/jobs/worker.py). Prometheus adds them
up across replicas, so nothing here is shared between processes.

Label values come from short fixed sets (route templates, job functions,
JobRun kinds, outcomes, drift kinds, directions), never from ids, names,
emails or raw paths: the number of series stays bounded, and a scrape says
nothing about who uses envhub or what their environments are called.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUEST_DURATION = Histogram(
    "envhub_http_request_duration_seconds",
    "HTTP requests to envhub's web process, from the first byte in to the last byte out, "
    "by route template, method and status class",
    ["route", "method", "status"],
)

JOBS = Counter(
    "envhub_jobs",
    "Jobs this process ran, by job function and outcome",
    ["kind", "outcome"],
)
JOB_DURATION = Histogram(
    "envhub_job_duration_seconds",
    "Time one job took to run in this process, by job function",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
PROVISIONING_DURATION = Histogram(
    "envhub_provisioning_duration_seconds",
    "From a JobRun's creation (the request, or the reconciler's re-drive) to its environment "
    "ready, by JobRun kind (provision, redeploy, resync, release)",
    ["kind"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
)

RECONCILER_PASS_DURATION = Histogram(
    "envhub_reconciler_pass_duration_seconds",
    "One reconciler pass of the leader, by outcome (ok, error)",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RECONCILER_DRIFT = Counter(
    "envhub_reconciler_drift",
    "What the reconciler found astray and put right, by kind",
    ["kind"],
)
# The ReconcileReport fields that are drift (envhub/services/reconciliation.py): work lost
# with a worker or the queue, environments whose processes went, things nobody owns.
DRIFT_KINDS = (
    "requeued",
    "restarted",
    "started",
    "orphans_removed",
    "urls_withdrawn",
    "deliveries_redriven",
    "syncs_redriven",
    "services_removed",
)

TERMINAL_SESSIONS = Gauge(
    "envhub_terminal_sessions_open",
    "Browser terminal sessions (shells) open in this web process, attached or in their grace period",
)
TERMINAL_BYTES = Counter(
    "envhub_terminal_bytes",
    "Bytes relayed by browser terminals: input (typed, to the shell) and output (from the shell, "
    "counted once however many people watch)",
    ["direction"],
)
