"""The devcontainer summary a run records: each forwarded port's URL (services/convergence.py)."""

from __future__ import annotations

import json

from envhub.services.convergence import with_port_urls
from envhub.urls.ingress import IngressUrls
from envhub.urls.local import LocalUrls
from tests.support.runtime import make_target

PORTS = [{"port": 8000, "label": "Storefront"}, {"port": 5678, "label": "Debugger"}]


def summary(**fields: object) -> str:
    return json.dumps({"ports": [dict(p) for p in PORTS], "unsupported": [], **fields})


def recorded(urls: object, **fields: object) -> dict[str, object]:
    done = with_port_urls(summary(**fields), make_target(3, name="dev"), urls, "U")  # type: ignore[arg-type]
    assert done is not None
    result: dict[str, object] = json.loads(done)
    return result


def test_a_cluster_workspace_relays_every_port_to_its_own_url() -> None:
    target = make_target(3, name="dev")
    urls = LocalUrls(base_url="http://localhost:3000")
    # Beside container services: no port is the app's, and each still gets a URL of its own.
    done = recorded(urls, published_port=None, ports_relayed=True)
    assert [p["url"] for p in done["ports"]] == [urls.port_url(target, 8000), urls.port_url(target, 5678)]
    assert done["unsupported"] == []
    # The workspace serving the app: its port is the environment's own URL.
    done = recorded(urls, published_port=8000, ports_relayed=True)
    assert [p["url"] for p in done["ports"]] == ["U", urls.port_url(target, 5678)]


def test_the_cluster_providers_give_each_port_its_own_host() -> None:
    target = make_target(3, name="dev")
    urls = IngressUrls(domain="envs.example.test")
    done = recorded(urls, published_port=8000, ports_relayed=True)
    assert [p["url"] for p in done["ports"]] == ["U", urls.port_url(target, 5678)]
    assert done["unsupported"] == []
    # Nothing relayed at all (a local sandbox on the host's network): no URLs, nothing more to say.
    done = recorded(urls, published_port=None)
    assert [p["url"] for p in done["ports"]] == ["", ""]
    assert done["unsupported"] == []
