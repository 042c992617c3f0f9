"""Rendering a release artifact: the project's source at one commit, for every deployment environment.

One call renders all environments from the same inputs (the commit, the chart
and its digest, the shared values, the image digests CI sent), so they differ
only in what each declares for itself. What comes out is checked the way the
runtime will check it before applying (the manifest guard), and validated
against the Kubernetes schemas, so a bad chart fails here, with its object
and field, before any environment changes.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from envhub.config import get_settings
from envhub.domain import releases as rel
from envhub.domain.kube.deployments import render_deployment, render_service
from envhub.domain.kube.manifests import parse_manifests, scope_manifests
from envhub.domain.specs import EnvironmentSpec, EnvironmentTarget
from envhub.domain.workloads import ContainerService
from envhub.errors import HelmUnavailable, ManifestInvalid, ValidationFailed
from envhub.integrations import helm, schemas, sources

# The namespace the guard checks against: rendering happens before any namespace exists.
_CHECK_NAMESPACE = "envhub-render-check"
# When the cluster's version is not known (no Kubernetes runtime): the oldest schemas shipped.
DEFAULT_KUBE_VERSION = "1.25"
# helm template processes running at once for one artifact (each is one process, mostly CPU).
_TEMPLATES_AT_ONCE = 4


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's rule: maps merge key by key, anything else is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _guard(objects: list[dict[str, Any]], environment: str, namespace: str, kube_version: str) -> list[str]:
    """The runtime's manifest guard and the cluster's schemas, now: bad objects fail the
    render, before any environment changes."""
    scope_manifests(objects, namespace=namespace, labels={"app.kubernetes.io/managed-by": "envhub"})
    report = schemas.validate(objects, kube_version)
    if report.problems:
        first = report.problems[0]
        where = f" {first.field}" if first.field else ""
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise ManifestInvalid(
            f"{environment}: {first.object}{where}: {first.message}{more}",
            details={
                "problems": [
                    {"object": p.object, "field": p.field, "message": p.message} for p in report.problems[:20]
                ],
                "environment": environment,
                "schema_version": report.schema_version,
            },
        )
    notes = [f"validated against the Kubernetes {report.schema_version} schemas"]
    if report.note:
        notes.append(report.note)
    if report.unvalidated:
        notes.append("no schema for: " + ", ".join(report.unvalidated))
    return notes


def _image_objects(base: EnvironmentSpec, name: str) -> list[dict[str, Any]]:
    target = EnvironmentTarget(id=0, name=name, project="release", team="release", generation=0, spec=base)
    objects: list[dict[str, Any]] = []
    for service in base.services:
        rendered = render_service(target, service, namespace=_CHECK_NAMESPACE)
        if rendered is not None:
            objects.append(rendered)
        objects.append(render_deployment(target, service, namespace=_CHECK_NAMESPACE))
    return objects


def _namespace(request: rel.RenderRequest, env: rel.DeploymentEnvironment) -> str:
    return request.namespaces.get(env.name) or _CHECK_NAMESPACE


def _image_spec(request: rel.RenderRequest, env: rel.DeploymentEnvironment) -> dict[str, Any]:
    services = []
    for service in request.base_spec.get("services") or []:
        item = copy.deepcopy(dict(service))
        item["image"] = rel.pin_image(str(item["image"]), request.images)
        replicas = env.overrides.replicas.get(item["name"], env.overrides.replicas.get("*"))
        if replicas is not None:
            item["replicas"] = replicas
        item["env"] = {**dict(item.get("env") or {}), **env.overrides.env}
        services.append(item)
    return {**dict(request.base_spec), "services": services, "manifests": None}


def _objects_spec(request: rel.RenderRequest, text: str) -> dict[str, Any]:
    return {**dict(request.base_spec), "services": [], "manifests": text}


def warm(kube_version: str = DEFAULT_KUBE_VERSION) -> None:
    """Make the first render of a long-lived process as quick as the next ones: helm's version
    is checked (when helm is there at all) and the schemas of the kinds envhub renders itself
    are loaded and exercised. Nothing here fails: a render that needs what is missing says so."""
    with contextlib.suppress(HelmUnavailable):
        helm.Helm(get_settings().helm_binary).check()
    sample = EnvironmentSpec(services=(ContainerService(name="warm", image="warm:1", ports=(8080,)),))
    schemas.validate(_image_objects(sample, "warm"), kube_version)


def render(request: rel.RenderRequest, *, kube_version: str = DEFAULT_KUBE_VERSION) -> rel.RenderedArtifact:
    """Render ``request`` for every environment; raises an envhub error naming what is wrong.

    ``kube_version`` is the cluster's (helm's ``--kube-version``, and the
    schemas objects are validated against).
    """
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
            settings = get_settings()
            tree = sources.checkout(
                request.repo_url,
                request.commit,
                into=work / "tree",
                token=request.token,
                protocols=("https", "ssh", "file") if settings.allow_local_repos else ("https", "ssh"),
                git_config=settings.git_config,
            )
        charts = _render_charts(request, tree, work, kube_version) if kind is rel.SourceKind.helm else {}
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
                    made = charts[env.name]
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
                notes.extend(_guard(objects, env.name, _namespace(request, env), kube_version))
            # One dump serves both: the record of what was rendered and the objects' spec.
            rendered[env.name] = rel.canonical_yaml(objects)
            if kind is not rel.SourceKind.image:
                spec = _objects_spec(request, rendered[env.name])
            specs[env.name] = spec
    return rel.RenderedArtifact(
        rendered=rendered, specs=specs, chart=chart, notes="\n".join(dict.fromkeys(notes))
    )


def _render_charts(
    request: rel.RenderRequest, tree: Path | None, work: Path, kube_version: str
) -> dict[str, helm.RenderedChart]:
    """The chart rendered for every environment: prepared (pulled, dependencies built) once, so all
    render the same archive, then ``helm template`` for all environments at once."""
    source = request.source
    if source.path:
        assert tree is not None
        ref: helm.ChartRef = helm.LocalChart(tree, source.path)
    elif source.chart and source.chart.startswith("oci://"):
        ref = helm.OciChart(source.chart, version=source.version or "")
    else:
        ref = helm.RepoChart(source.chart or "", name=source.chart_name or "", version=source.version or "")
    values_files = []
    for item in source.values_files:
        assert tree is not None
        values_files.append(sources.inside(tree, item))
    binary = helm.Helm(get_settings().helm_binary)
    prepared = binary.prepare(ref, workdir=work / "chart")

    def template(env: rel.DeploymentEnvironment) -> helm.RenderedChart:
        return binary.template(
            prepared,
            release=request.project,
            namespace=_namespace(request, env),
            values_files=values_files,
            values=_merge(source.values, env.overrides.values),
            kube_version=kube_version,
            workdir=work / "environments" / env.name,
        )

    environments = list(request.environments)
    with ThreadPoolExecutor(max_workers=min(len(environments), _TEMPLATES_AT_ONCE) or 1) as pool:
        made = list(pool.map(template, environments))  # the first environment's error, if any
    return {env.name: chart for env, chart in zip(environments, made, strict=True)}
