"""Sleep and wake on a cluster: the environment's workloads scale to zero and back.

The namespace, its volumes, Services, Secrets and isolation stay as they are;
only pods go. ``domain/kube/dormancy.py`` says what each object's patch is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes.client import AppsV1Api

from envhub.domain.kube.dormancy import SCALABLE_KINDS, applied_patch, sleep_patch, wake_patch
from envhub.runtime.kubernetes.errors import kube_json

_LISTS = {"Deployment": "list_namespaced_deployment", "StatefulSet": "list_namespaced_stateful_set"}
_PATCHES = {"Deployment": "patch_namespaced_deployment", "StatefulSet": "patch_namespaced_stateful_set"}


def _workloads(apps: AppsV1Api, namespace: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for api_version, kind in SCALABLE_KINDS:
        listing = kube_json(f"reading {kind}s", getattr(apps, _LISTS[kind]), namespace)
        for item in listing.get("items", []):
            found.append({**item, "apiVersion": api_version, "kind": kind})
    return found


def _patch_all(
    apps: AppsV1Api, namespace: str, patch_of: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Patch each scalable workload that needs it; (patched as stored, all of them as now)."""
    patched: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    for obj in _workloads(apps, namespace):
        patch = patch_of(obj)
        if patch is None:
            current.append(obj)
            continue
        name = str(obj["metadata"]["name"])
        stored = kube_json(
            f"scaling {obj['kind']} {name}", getattr(apps, _PATCHES[obj["kind"]]), name, namespace, patch
        )
        stored = {**stored, "apiVersion": obj["apiVersion"], "kind": obj["kind"]}
        patched.append(stored)
        current.append(stored)
    return patched, current


def scale_to_zero(apps: AppsV1Api, namespace: str) -> list[str]:
    """Scale every Deployment and StatefulSet to zero, remembering its replicas; ``Kind/name`` scaled."""
    patched, _ = _patch_all(apps, namespace, sleep_patch)
    return [f"{obj['kind']}/{obj['metadata']['name']}" for obj in patched]


def restore(apps: AppsV1Api, namespace: str) -> list[dict[str, Any]]:
    """Give every sleeping workload back its replicas; returns every scalable workload as it now is."""
    _, current = _patch_all(apps, namespace, wake_patch)
    return current


def finish_waking(apps: AppsV1Api, namespace: str, workloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``workloads`` as an apply returned them, with any that slept woken (no request when none did)."""
    woken = []
    for obj in workloads:
        patch = applied_patch(obj) if (obj.get("apiVersion"), obj.get("kind")) in SCALABLE_KINDS else None
        if patch is None:
            woken.append(obj)
            continue
        name = str(obj["metadata"]["name"])
        stored = kube_json(
            f"waking {obj['kind']} {name}", getattr(apps, _PATCHES[obj["kind"]]), name, namespace, patch
        )
        woken.append({**stored, "apiVersion": obj["apiVersion"], "kind": obj["kind"]})
    return woken
