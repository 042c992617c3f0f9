"""Rendering a release artifact: the project's source at one commit, for every deployment environment.

One call renders all environments from the same inputs (the commit, the chart
and its digest, the shared values, the image digests CI sent), so they differ
only in what each declares for itself. What comes out is checked the way the
runtime will check it before applying (the manifest guard), and validated
against the Kubernetes schemas, so a bad chart fails here, with its object
and field, before any environment changes.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envhub.config import get_settings
from envhub.domain import releases as rel
from envhub.domain.kube.deployments import render_deployment, render_service
from envhub.domain.kube.manifests import parse_manifests, scope_manifests
from envhub.domain.specs import EnvironmentSpec, EnvironmentTarget
from envhub.errors import ValidationFailed
from envhub.integrations import helm, schemas, sources

# The namespace the guard checks against: rendering happens before any namespace exists.
_CHECK_NAMESPACE = "envhub-render-check"


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's rule: maps merge key by key, anything else is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _guard(objects: list[dict[str, Any]], environment: str) -> list[str]:
    """The runtime's manifest guard, now: refused objects fail the render, not the deploy."""
    scope_manifests(objects, namespace=_CHECK_NAMESPACE, labels={"app.kubernetes.io/managed-by": "envhub"})
    problems = schemas.validate(objects, get_settings().kube_schema_version)
    if problems.errors:
        first = problems.errors[0]
        more = f" (and {len(problems.errors) - 1} more)" if len(problems.errors) > 1 else ""
        raise ValidationFailed(
            f"{environment}: {first.object} {first.path}: {first.message}{more}",
            hint="Fix the manifests or the chart's values; nothing was deployed.",
            details={"problems": [p.as_dict() for p in problems.errors[:20]], "environment": environment},
        )
    return list(problems.notes)


def _image_objects(base: EnvironmentSpec, name: str) -> list[dict[str, Any]]:
    target = EnvironmentTarget(id=0, name=name, project="release", team="release", generation=0, spec=base)
    objects: list[dict[str, Any]] = []
    for service in base.services:
        rendered = render_service(target, service, namespace=_CHECK_NAMESPACE)
        if rendered is not None:
            objects.append(rendered)
        objects.append(render_deployment(target, service, namespace=_CHECK_NAMESPACE))
    return objects


def _image_spec(request: rel.RenderRequest, env: rel.DeploymentEnvironment) -> dict[str, Any]:
    services = []
    for service in request.base_spec.get("services") or []:
        item = copy.deepcopy(dict(service))
        name = rel.pin_images(
            [{"kind": "Pod", "spec": {"containers": [{"image": item["image"]}]}}], request.images
        )
        item["image"] = name[0]["spec"]["containers"][0]["image"]
        replicas = env.overrides.replicas.get(item["name"], env.overrides.replicas.get("*"))
        if replicas is not None:
            item["replicas"] = replicas
        item["env"] = {**dict(item.get("env") or {}), **env.overrides.env}
        services.append(item)
    return {**dict(request.base_spec), "services": services, "manifests": None}


def _objects_spec(request: rel.RenderRequest, text: str) -> dict[str, Any]:
    return {**dict(request.base_spec), "services": [], "manifests": text}


def render(request: rel.RenderRequest) -> rel.RenderedArtifact:
    """Render ``request`` for every environment; raises an envhub error naming what is wrong."""
    kind = request.source.kind
    if kind is rel.SourceKind.command:
        return rel.render_command_source(request)
    with tempfile.TemporaryDirectory(prefix="envhub-render-") as scratch:
        work = Path(scratch)
        tree: Path | None = None
        if request.source.from_repository:
            if not request.repo_url:
                raise ValidationFailed(
                    f"{request.source.describe()} is read from the repository, and the project has none",
                    hint="Set the project's repository URL.",
                    details={"field": "repo_url"},
                )
            tree = sources.checkout(request.repo_url, request.commit, into=work / "tree", token=request.token)
        rendered: dict[str, str] = {}
        specs: dict[str, dict[str, Any]] = {}
        chart: dict[str, Any] = {}
        notes: list[str] = []
        for env in request.environments:
            if kind is rel.SourceKind.image:
                spec = _image_spec(request, env)
                objects = _image_objects(EnvironmentSpec.model_validate(spec), env.name)
            else:
                if kind is rel.SourceKind.manifests:
                    assert tree is not None
                    assert request.source.path is not None
                    text = sources.read_manifests(tree, request.source.path)
                else:
                    made = _render_chart(request, env, tree, work / env.name)
                    chart = {
                        "name": made.chart_name,
                        "version": made.chart_version,
                        "digest": made.chart_digest,
                        "helm": made.helm_version,
                    }
                    text = made.manifests
                objects = rel.apply_overrides(
                    rel.pin_images(parse_manifests(text), request.images), env.overrides
                )
                notes.extend(_guard(objects, env.name))
                spec = _objects_spec(request, rel.canonical_yaml(objects))
            rendered[env.name] = rel.canonical_yaml(objects)
            specs[env.name] = spec
    return rel.RenderedArtifact(
        rendered=rendered, specs=specs, chart=chart, notes="\n".join(dict.fromkeys(notes))
    )


def _render_chart(
    request: rel.RenderRequest, env: rel.DeploymentEnvironment, tree: Path | None, work: Path
) -> helm.RenderedChart:
    source = request.source
    if source.path:
        assert tree is not None
        chart: helm.ChartRef = helm.LocalChart(sources.inside(tree, source.path))
    elif source.chart and source.chart.startswith("oci://"):
        chart = helm.OciChart(source.chart, version=source.version or "")
    else:
        chart = helm.RepoChart(source.chart or "", name=source.chart_name or "", version=source.version or "")
    values_files = []
    for item in source.values_files:
        assert tree is not None
        values_files.append(sources.inside(tree, item))
    work.mkdir(parents=True, exist_ok=True)
    return helm.Helm(get_settings().helm_binary).render(
        chart,
        release=request.project,
        namespace=env.name,
        values_files=values_files,
        values=_merge(source.values, env.overrides.values),
        kube_version=get_settings().kube_schema_version,
        workdir=work,
    )
