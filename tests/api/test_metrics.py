"""``/metrics`` of the web, scraped over real HTTP from the real app (tests/api/conftest.py).

Requests are timed by route template, never by raw path or odd method; the
queue's depth is read from the test Redis at scrape time, and an unreachable
Redis says so without failing the scrape; the page answers an IP address as
Host (Prometheus scrapes a pod by its address), never a foreign name, and
wants the token once one is set.
The app runs in this process, so figures carry over between tests: each test
compares a scrape after with one before.
"""

from __future__ import annotations

import httpx

from envhub.config import Settings, override_settings
from envhub.queue.redis_queue import RedisJobQueue
from envhub.services import ports
from tests.api.conftest import Clients
from tests.conftest import build_settings
from tests.support.net import free_port
from tests.support.scrape import scrape

LATENCY = "envhub_http_request_duration_seconds"


def test_requests_are_timed_by_route_template_never_by_raw_path(
    clients: Clients, owner: httpx.Client, api_url: str
) -> None:
    before = scrape(f"{api_url}/metrics")
    missing = owner.get("/api/v1/environments/987654321")
    assert missing.status_code == 404
    assert owner.get("/api/v1/projects").status_code == 200
    assert owner.request("BREW", "/api/v1/projects").status_code == 405
    assert owner.get("/nothing/here/4242424242").status_code == 404
    after = scrape(f"{api_url}/metrics")

    def moved(**labels: str) -> float:
        return after.value(f"{LATENCY}_count", **labels) - before.value(f"{LATENCY}_count", **labels)

    assert moved(route="/api/v1/environments/{environment_id}", method="GET", status="4xx") == 1
    assert moved(route="/api/v1/projects", method="GET", status="2xx") == 1
    assert moved(route="/api/v1/projects", method="other", status="4xx") == 1
    assert moved(route="other", method="GET", status="4xx") == 1
    # Observed into buckets, with a time: the +Inf bucket holds the request, the sum grew.
    labels = {"route": "/api/v1/projects", "method": "GET", "status": "2xx"}
    assert after.value(f"{LATENCY}_bucket", le="+Inf", **labels) == after.value(f"{LATENCY}_count", **labels)
    assert after.value(f"{LATENCY}_sum", **labels) > before.value(f"{LATENCY}_sum", **labels)
    # No id, path or method a client chose became a label value.
    assert "987654321" not in after.text
    assert "4242424242" not in after.text
    assert "BREW" not in after.text
    assert after.label_values(f"{LATENCY}_count", "status") <= {"1xx", "2xx", "3xx", "4xx", "5xx"}


def test_metrics_answer_an_address_as_host_and_want_the_token_once_one_is_set(
    clients: Clients, api_url: str, settings: Settings
) -> None:
    # Prometheus names the pod by its address; other routes still refuse a foreign Host.
    foreign = {"Host": "10.1.2.3:3000"}
    assert httpx.get(f"{api_url}/metrics", headers=foreign, timeout=30).status_code == 200
    assert httpx.get(f"{api_url}/metrics", headers={"Host": "[fd00::17]:3000"}, timeout=30).status_code == 200
    assert httpx.get(f"{api_url}/api/v1/projects", headers=foreign, timeout=30).status_code == 400
    # A name that is not envhub's is what a DNS-rebinding page sends: refused, metrics too.
    rebound = httpx.get(f"{api_url}/metrics", headers={"Host": "attacker.example:3000"}, timeout=30)
    assert rebound.status_code == 400
    assert "envhub_" not in rebound.text

    with override_settings(build_settings(**{**settings.model_dump(), "metrics_token": "s3cret-metrics"})):
        refused = httpx.get(f"{api_url}/metrics", timeout=30)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert "envhub_" not in refused.text
        wrong = httpx.get(f"{api_url}/metrics", headers={"Authorization": "Bearer s3cret"}, timeout=30)
        assert wrong.status_code == 401
        page = scrape(f"{api_url}/metrics", {**foreign, "Authorization": "Bearer s3cret-metrics"})
        assert "envhub_http_request_duration_seconds" in page.text


def test_the_queues_depth_is_read_from_redis_at_scrape_time(
    clients: Clients, owner: httpx.Client, api_url: str, settings: Settings
) -> None:
    queue = settings.queue_name
    empty = scrape(f"{api_url}/metrics")
    assert empty.value("envhub_queue_up") == 1
    assert {s: empty.value("envhub_queue_jobs", queue=queue, state=s) for s in ("queued", "failed")} == {
        "queued": 0,
        "failed": 0,
    }
    assert empty.label_values("envhub_queue_jobs", "state") == {
        "queued",
        "started",
        "scheduled",
        "deferred",
        "failed",
    }

    made = owner.post("/api/v1/projects", json={"team_id": clients.world.acme, "name": "shop"})
    assert made.status_code == 201, made.text
    for name in ("dev", "qa"):  # no worker runs: the jobs wait in the queue
        created = owner.post(f"/api/v1/projects/{made.json()['id']}/environments", json={"name": name})
        assert created.status_code == 202, created.text
    assert scrape(f"{api_url}/metrics").value("envhub_queue_jobs", queue=queue, state="queued") == 2
    # A worker that may run none of them takes both and fails them: they move to RQ's failed registry.
    redis_queue = ports.queue()
    assert isinstance(redis_queue, RedisJobQueue)
    redis_queue.worker(runnable=frozenset()).work(burst=True)
    moved = scrape(f"{api_url}/metrics")
    assert moved.value("envhub_queue_jobs", queue=queue, state="queued") == 0
    assert moved.value("envhub_queue_jobs", queue=queue, state="failed") == 2

    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(build_settings(**{**settings.model_dump(), "redis_url": nowhere})):
        down = scrape(f"{api_url}/metrics")  # still a page: the other figures arrive
    assert down.value("envhub_queue_up") == 0
    assert "envhub_queue_jobs" not in down.names()
    assert f"{LATENCY}_count" in down.names()
