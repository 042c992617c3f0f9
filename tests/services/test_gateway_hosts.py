"""Which environment (and which forwarded port) an Ingress or tunnel host names (services/gateway.py)."""

from __future__ import annotations

from sqlmodel import Session

from envhub.domain.phases import Phase
from envhub.domain.public import port_host
from envhub.models import Environment, Project
from envhub.runtime.base import Endpoint
from envhub.services.gateway import resolve_url_host
from envhub.urls.ingress import IngressUrls
from tests.security.test_gateway import FORWARDED, StubRuntime
from tests.support.runtime import make_target

URLS = IngressUrls(domain="preview.example.com")


def test_a_forwarded_port_s_host_resolves_to_that_port_of_its_environment(
    session: Session, project: Project
) -> None:
    assert project.id is not None
    rows = [Environment(project_id=project.id, name=name, phase=Phase.ready) for name in ("dev", "5678-dev")]
    for row in rows:
        session.add(row)
        session.flush()
        assert row.id is not None
        row.public_url = URLS.address(make_target(row.id, name=row.name)).url
    session.commit()
    dev, numbered = rows
    assert dev.id is not None
    runtime = StubRuntime({dev.id: Endpoint("127.0.0.1", 1)})
    host = URLS.host(make_target(dev.id, name="dev"))

    own = resolve_url_host(session=session, runtime=runtime, host=host)
    assert (own.environment_id, own.port, own.endpoint) == (dev.id, None, Endpoint("127.0.0.1", 1))
    forwarded = resolve_url_host(session=session, runtime=runtime, host=port_host(host, FORWARDED))
    assert (forwarded.environment_id, forwarded.port) == (dev.id, FORWARDED)
    assert forwarded.endpoint == Endpoint("127.0.0.1", 1)
    assert forwarded.label == f"shop/dev port {FORWARDED}"
    # An environment whose own name starts with a number is its own host, not dev's port.
    assert numbered.public_url is not None
    named = resolve_url_host(session=session, runtime=runtime, host=numbered.public_url[8:-1])
    assert (named.environment_id, named.port) == (numbered.id, None)
    # A port host whose digest no environment has, or another port of dev's: found, not served.
    assert not resolve_url_host(
        session=session, runtime=runtime, host=f"5678-dev-shop-0badc0de.{URLS.domain}"
    ).found
    other = resolve_url_host(session=session, runtime=runtime, host=port_host(host, 9000))
    assert (other.found, other.endpoint) == (True, None)
