"""The ``local`` URL provider on Kubernetes: envhub's gateway through the API server's service proxy.

Tried as a new user would: a project, an environment, a worker converging it on
the cluster, and its URL opened through envhub's own gateway. The pods are real
processes (the test kubelet); the API server proxies to them because they
report one of this machine's non-loopback addresses as their pod IP (Endpoints
may not name loopback, and the service proxy only goes to addresses of pods).
That needs a cluster of its own, started here, whose kubelet reports that
address; nothing else differs from the shared one.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from sqlalchemy.engine import Engine
from sqlmodel import Session
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

from envhub.api.app import create_api
from envhub.config import Settings, override_settings
from envhub.domain.kube import namespace_for
from envhub.domain.phases import Phase
from envhub.runtime.kubernetes import KubernetesRuntime, api_client
from envhub.services import ports
from envhub.services.environments import create_environment
from envhub.services.projects import create_project
from tests.conftest import build_settings
from tests.kube.helpers import KubeWorkers, load_cluster_module
from tests.kube.test_lifecycle import wait_phase
from tests.support.components import require
from tests.support.net import free_port, machine_address
from tests.support.runtime import RecordingProgress, make_target
from tests.support.servers import serve_asgi
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = [pytest.mark.kube, pytest.mark.slow]

HOST = "pr-1.shop.acme.localhost:3000"

APP = textwrap.dedent(
    '''
    """An app that tells what it received, and answers the ways a real app does."""
    import json, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class App(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, status, body, kind="application/json", extra=()):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_GET(self):
            if self.path == "/page":
                links = '<a href="/next">next</a><img src="/static/logo.png"><form action="/send"></form>'
                return self.answer(200, "<html><body>" + links + "</body></html>", "text/html; charset=utf-8")
            if self.path == "/old":
                return self.answer(302, "", extra=[("Location", "/new?x=1")])
            if self.path == "/teapot":
                return self.answer(418, "short and stout", "text/plain", [("X-App", "kettle")])
            if self.path == "/big":
                return self.answer(200, b"x" * (3 << 20), "application/octet-stream")
            self.echo()

        def read_body(self):
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return body

        def echo(self):
            body = self.read_body().decode()
            seen = {"method": self.command, "path": self.path, "body": body,
                    "headers": {k.lower(): v for k, v in self.headers.items()}}
            self.answer(200, json.dumps(seen))

        do_POST = do_PUT = do_PATCH = do_DELETE = echo

    ThreadingHTTPServer(("", int(sys.argv[1])), App).serve_forever()
    '''
)


@pytest.fixture(scope="module")
def proxy_cluster() -> Iterator[Any]:
    require("cluster")
    address = machine_address()
    if address is None:
        pytest.fail("the service proxy test needs a non-loopback IPv4 address on this machine", pytrace=False)
    with load_cluster_module().TestCluster(pod_ip=address) as started:
        yield started


@pytest.fixture
def proxy_settings(settings: Settings, proxy_cluster: Any) -> Iterator[Settings]:
    values = {
        **settings.model_dump(),
        "runtime": "kubernetes",
        "kubeconfig": str(proxy_cluster.kubeconfig),
        "kube_ready_timeout": 30.0,
        "reconcile_interval": 0.5,
        "job_stale_after": 2.0,
    }
    with override_settings(build_settings(**values)) as configured:
        ports.reset()
        yield configured
    ports.reset()


@pytest.fixture
def proxy_workers(proxy_settings: Settings, tmp_path: Path) -> Iterator[KubeWorkers]:
    pool = KubeWorkers(proxy_settings, tmp_path)
    yield pool
    pool.stop_all()


WEBSOCKET_APP = textwrap.dedent(
    """
    import asyncio, sys
    from websockets.asyncio.server import serve

    async def echo(ws):
        seen = ws.request.headers
        await ws.send(f"path={ws.request.path} protocol={ws.subprotocol} auth={seen.get('Authorization')}")
        async for message in ws:
            await ws.send(message)

    async def main():
        async with serve(echo, "", int(sys.argv[1]), subprotocols=["chat"]):
            await asyncio.Future()

    asyncio.run(main())
    """
)


def ready_environment(
    session: Session, world: World, db: Engine, workers: KubeWorkers, tmp_path: Path, app: str = APP
) -> tuple[int, int]:
    """A project whose one service is ``app``, an environment of it, converged by a worker: (id, port)."""
    script = tmp_path / "app.py"
    script.write_text(app)
    port = free_port()
    web = {"name": "web", "image": "python:3.12-slim", "command": [sys.executable, str(script), str(port)]}
    project = create_project(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        name="shop",
        workloads={"services": [{**web, "ports": [port]}]},
    )
    assert project.id is not None
    workers.start()
    env = create_environment(
        session=session, actor=world.member, queue=ports.queue(), project_id=project.id, name="pr-1"
    )
    assert env.id is not None
    ready = wait_phase(db, env.id, Phase.ready, workers)
    assert ready.public_url == f"http://{HOST}/"
    return env.id, port


def test_a_ready_environment_answers_at_its_url_through_the_service_proxy(
    session: Session, world: World, db: Engine, proxy_workers: KubeWorkers, tmp_path: Path
) -> None:
    ready_environment(session, world, db, proxy_workers, tmp_path)

    with (
        serve_asgi(create_api()) as gateway,
        httpx.Client(base_url=f"http://127.0.0.1:{gateway}", headers={"Host": HOST}, timeout=30) as browser,
    ):
        # Methods, paths, queries, headers and bodies arrive as sent.
        sent = browser.post("/api/items?page=2", content=b"hello", headers={"X-Trace": "t1"})
        assert sent.status_code == 200, sent.text
        seen = sent.json()
        assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/api/items?page=2", "hello")
        assert seen["headers"]["x-trace"] == "t1"
        assert seen["headers"]["x-forwarded-host"] == HOST
        for verb in ("PUT", "PATCH", "DELETE"):
            assert browser.request(verb, "/v").json()["method"] == verb

        # The app's own statuses and headers come back.
        teapot = browser.get("/teapot")
        assert (teapot.status_code, teapot.text, teapot.headers["x-app"]) == (
            418,
            "short and stout",
            "kettle",
        )

        # What the API server's proxy rewrites is undone: links and redirects point at the app's paths.
        page = browser.get("/page")
        assert page.status_code == 200
        assert '<a href="/next">' in page.text
        assert 'src="/static/logo.png"' in page.text
        assert 'action="/send"' in page.text
        assert "/api/v1/" not in page.text
        moved = browser.get("/old")
        assert (moved.status_code, moved.headers["location"]) == (302, "/new?x=1")

        # A large body streams through whole.
        big = browser.get("/big")
        assert big.status_code == 200
        assert len(big.content) == 3 << 20

        # The client's credentials never reach the API server as envhub's, nor the app.
        claimed = browser.get(
            "/who", headers={"Authorization": "Bearer stolen", "Impersonate-User": "system:admin"}
        )
        assert claimed.status_code == 200
        headers = claimed.json()["headers"]
        assert "authorization" not in headers
        assert not any(name.startswith("impersonate") for name in headers)

        # Dot segments cannot walk out of the Service into the rest of the API
        # (sent raw: httpx, like browsers, would resolve them before sending).
        # Plain ones are resolved against the app's root; encoded ones are refused.
        def raw_get(path: str) -> tuple[int, bytes]:
            raw = http.client.HTTPConnection("127.0.0.1", gateway, timeout=30)
            try:
                raw.request("GET", path, headers={"Host": HOST})
                answer = raw.getresponse()
                return answer.status, answer.read()
            finally:
                raw.close()

        status, body = raw_get("/a/../../../../pods")
        assert status == 200
        assert json.loads(body)["path"] == "/pods"  # the app's /pods, not the cluster's
        for path in ("/a/%2e%2e/%2E%2E/%2e%2E/%2E./pods", "/%2e/x"):
            assert raw_get(path)[0] == 400, path


def test_nothing_behind_the_service_is_the_not_ready_page_and_a_dead_port_not_answering(
    session: Session, world: World, db: Engine, proxy_workers: KubeWorkers, tmp_path: Path, proxy_cluster: Any
) -> None:
    env_id, port = ready_environment(session, world, db, proxy_workers, tmp_path)
    namespace = namespace_for_id(proxy_cluster, env_id)
    admin = proxy_cluster.api_client()
    core, apps = client.CoreV1Api(admin), client.AppsV1Api(admin)

    with (
        serve_asgi(create_api()) as gateway,
        httpx.Client(base_url=f"http://127.0.0.1:{gateway}", headers={"Host": HOST}, timeout=30) as browser,
    ):
        assert browser.get("/").status_code == 200

        # The Service points at a port nothing listens on: the app is not answering.
        dead = free_port()
        core.patch_namespaced_service(
            "web",
            namespace,
            {
                "spec": {
                    "ports": [{"name": f"tcp-{port}", "port": port, "targetPort": dead, "protocol": "TCP"}]
                }
            },
        )

        def status_is(code: int) -> bool:
            return browser.get("/").status_code == code

        wait_for(lambda: status_is(502), timeout=20, what="the not-answering page")
        assert "Environment not answering" in browser.get("/").text

        # No pod behind it at all (scaled to zero behind envhub's back): not ready.
        apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 0}})
        wait_for(lambda: status_is(503), timeout=30, what="the not-ready page")
        page = browser.get("/")
        assert "Environment not ready" in page.text
        assert page.headers["content-type"].startswith("text/html")


def namespace_for_id(cluster: Any, env_id: int) -> str:
    runtime = KubernetesRuntime(api_client(str(cluster.kubeconfig)))
    endpoint = runtime.endpoint(env_id)
    assert endpoint is not None
    assert endpoint.relay
    return endpoint.host.split(".")[1]


def test_the_endpoint_is_the_public_service_by_its_namespace_annotation(proxy_cluster: Any) -> None:
    runtime = KubernetesRuntime(api_client(str(proxy_cluster.kubeconfig)), ready_timeout=30)
    port = free_port()
    worker = {"name": "worker", "image": "busybox", "command": ["sleep", "3600"]}
    web = {
        "name": "web",
        "image": "python",
        "command": ["python3", "-m", "http.server", str(port)],
        "ports": [port],
    }
    target = make_target(70001, services=[worker, web])
    assert runtime.endpoint(target.id) is None  # nothing applied yet
    runtime.apply(target, progress=RecordingProgress())
    endpoint = runtime.endpoint(target.id)
    assert endpoint is not None
    assert (endpoint.host, endpoint.port, endpoint.relay) == (f"web.{namespace_for(target)}.svc", port, True)


def test_websockets_reach_the_app_through_the_service_proxy(
    session: Session, world: World, db: Engine, proxy_workers: KubeWorkers, tmp_path: Path
) -> None:
    ready_environment(session, world, db, proxy_workers, tmp_path, app=WEBSOCKET_APP)
    with serve_asgi(create_api()) as gateway:
        sock = socket.create_connection(("127.0.0.1", gateway))
        with ws_connect(
            f"ws://{HOST}/live?room=1",
            sock=sock,
            subprotocols=[Subprotocol("chat")],
            additional_headers={"Authorization": "Bearer stolen"},
            open_timeout=30,
        ) as ws:
            assert ws.subprotocol == "chat"
            # The app's own path; neither the client's credentials nor envhub's. The query
            # is sent, but kube-apiserver 1.20's proxy drops it from upgrade requests
            # (UpgradeAwareHandler.tryUpgrade dials the location without it): a known
            # limit of this path, which a newer API server may not have.
            greeting = ws.recv(timeout=30)
            assert greeting in (
                "path=/live?room=1 protocol=chat auth=None",
                "path=/live protocol=chat auth=None",
            )
            ws.send("hello")
            assert ws.recv(timeout=30) == "hello"
            ws.send(b"\x00\x01")
            assert ws.recv(timeout=30) == b"\x00\x01"
