"""The Playwright sidecar: rendered only into the public service's pod, valid, hardened, sharing a folder."""

from __future__ import annotations

import dataclasses
from typing import Any

import kubernetes_validate
import pytest

from envhub.domain import browser
from envhub.domain.kube import render_environment
from envhub.domain.kube.browser import CONTAINER, SHARED_PATH, VOLUME, BrowserSidecar
from envhub.domain.kube.pod_guard import workload_problems

from .conftest import make_target

SIDECAR = BrowserSidecar("mcr.microsoft.com/playwright/python:v1.65.2-noble")
TARGET = dataclasses.replace(
    make_target(
        {
            "services": [
                {"name": "db", "image": "postgres:16", "ports": [5432], "public": False},
                {"name": "web", "image": "shop:1", "ports": [8080], "public": True},
            ]
        }
    ),
    public_url="https://dev-swift-otter-shop-1a2b3c4d.preview.example.com/",
)


def _deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "Deployment"}


def test_only_the_public_pod_gets_the_sidecar_and_the_shared_folder() -> None:
    deployments = _deployments(render_environment(TARGET, browser=SIDECAR))
    assert [c["name"] for c in deployments["db"]["spec"]["template"]["spec"]["containers"]] == ["db"]
    pod = deployments["web"]["spec"]["template"]["spec"]
    app, sidecar = pod["containers"]
    assert (app["name"], sidecar["name"], sidecar["image"]) == ("web", CONTAINER, SIDECAR.image)
    assert pod["volumes"] == [{"name": VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}]
    shared = [{"name": VOLUME, "mountPath": SHARED_PATH}]
    assert (app["volumeMounts"], sidecar["volumeMounts"]) == (shared, shared)
    env = {item["name"]: item["value"] for item in sidecar["env"]}
    assert env["ENVHUB_PUBLIC_URL"] == TARGET.public_url
    assert env[browser.ARGS_VARIABLE].split() == list(browser.CHROMIUM_ARGS)
    assert "--no-sandbox" in env[browser.ARGS_VARIABLE]
    requests = {"cpu": "100m", "memory": "512Mi"}
    assert sidecar["resources"] == {"requests": requests, "limits": {"memory": "2Gi"}}


def test_without_it_nothing_changes() -> None:
    assert render_environment(TARGET, browser=None) == render_environment(TARGET)
    no_public = make_target({"services": [{"name": "worker", "image": "shop:1"}]})
    assert render_environment(no_public, browser=SIDECAR) == render_environment(no_public)


@pytest.mark.parametrize("version", ["1.33", kubernetes_validate.latest_version()])
def test_the_sidecar_is_valid_kubernetes_and_passes_the_pod_guard(version: str) -> None:
    web = _deployments(render_environment(TARGET, browser=SIDECAR))["web"]
    kubernetes_validate.validate(web, version, strict=True)
    assert workload_problems(web) == []
    context = web["spec"]["template"]["spec"]["containers"][1]["securityContext"]
    # Pod Security "restricted": not root, nothing gained, no capability; the pod's seccomp is RuntimeDefault.
    assert context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    pod_context = web["spec"]["template"]["spec"]["securityContext"]
    assert pod_context == {"seccompProfile": {"type": "RuntimeDefault"}}
