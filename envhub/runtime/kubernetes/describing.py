"""What a pod's containers are, as ``kubectl describe`` shows them: images with digests, the last
termination, probes, requests and limits, and environment variables (references, never the
values of Secrets); and what they use, from the metrics API."""

from __future__ import annotations

from typing import Any

from kubernetes.utils.quantity import parse_quantity

from envhub.runtime.base import ContainerUsage, EnvVarInfo, LastTermination, ProbeInfo

PROBES = (("liveness", "livenessProbe"), ("readiness", "readinessProbe"), ("startup", "startupProbe"))
# kubelet's defaults, shown only when the spec differs from them
_DEFAULTS = {"periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3, "initialDelaySeconds": 0}


def image_digest(status: dict[str, Any]) -> str:
    """The digest the node pulled (``sha256:...``), else the runtime's image id as it is."""
    image_id = str(status.get("imageID") or "")
    _, at, digest = image_id.rpartition("@")
    return digest if at else image_id


def last_termination(status: dict[str, Any]) -> LastTermination | None:
    ended = (status.get("lastState") or {}).get("terminated")
    if not ended:
        return None
    code = ended.get("exitCode")
    signal = ended.get("signal")
    return LastTermination(
        exit_code=int(code) if code is not None else None,
        reason=str(ended.get("reason") or ""),
        finished_at=str(ended.get("finishedAt") or ""),
        signal=int(signal) if signal else None,
    )


def _action(probe: dict[str, Any]) -> str:
    if "httpGet" in probe:
        get = probe["httpGet"]
        scheme = "HTTPS " if str(get.get("scheme", "")).upper() == "HTTPS" else ""
        return f"{scheme}HTTP GET :{get.get('port', '')}{get.get('path', '/')}"
    if "tcpSocket" in probe:
        return f"TCP :{probe['tcpSocket'].get('port', '')}"
    if "exec" in probe:
        return "exec " + " ".join(str(part) for part in probe["exec"].get("command") or [])
    if "grpc" in probe:
        return f"gRPC :{probe['grpc'].get('port', '')}"
    return "unknown"


def _timing(probe: dict[str, Any]) -> str:
    values = {key: probe.get(key, default) for key, default in _DEFAULTS.items()}
    parts = []
    if values["initialDelaySeconds"]:
        parts.append(f"after {values['initialDelaySeconds']}s")
    parts.append(f"every {values['periodSeconds']}s")
    parts.append(f"timeout {values['timeoutSeconds']}s")
    parts.append(f"{values['failureThreshold']} failures")
    return ", ".join(parts)


def probes(spec: dict[str, Any]) -> tuple[ProbeInfo, ...]:
    return tuple(
        ProbeInfo(kind=kind, action=_action(spec[key]), timing=_timing(spec[key]))
        for kind, key in PROBES
        if spec.get(key)
    )


def resources(spec: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(requests, limits) of a container's spec, quantities as written."""
    found = spec.get("resources") or {}
    return (
        {str(k): str(v) for k, v in (found.get("requests") or {}).items()},
        {str(k): str(v) for k, v in (found.get("limits") or {}).items()},
    )


def _from(source: dict[str, Any]) -> tuple[str, str]:
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        return "secret", f"secret {ref.get('name', '')}, key {ref.get('key', '')}"
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        return "configmap", f"config map {ref.get('name', '')}, key {ref.get('key', '')}"
    if "fieldRef" in source:
        return "field", str(source["fieldRef"].get("fieldPath", ""))
    if "resourceFieldRef" in source:
        return "resource", str(source["resourceFieldRef"].get("resource", ""))
    return "unknown", ""


def environment(spec: dict[str, Any]) -> tuple[EnvVarInfo, ...]:
    """The container's variables in order; whole Secrets and ConfigMaps (``envFrom``) as one row each."""
    rows = []
    for item in spec.get("envFrom") or []:
        prefix = str(item.get("prefix") or "")
        if "secretRef" in item:
            name = str(item["secretRef"].get("name", ""))
            rows.append(
                EnvVarInfo(name=prefix + "*", source="secret", reference=f"every key of secret {name}")
            )
        elif "configMapRef" in item:
            name = str(item["configMapRef"].get("name", ""))
            rows.append(
                EnvVarInfo(name=prefix + "*", source="configmap", reference=f"every key of config map {name}")
            )
    for item in spec.get("env") or []:
        source = item.get("valueFrom")
        if source:
            kind, reference = _from(source)
            rows.append(EnvVarInfo(name=str(item.get("name", "")), source=kind, reference=reference))
        else:
            rows.append(EnvVarInfo(name=str(item.get("name", "")), value=str(item.get("value") or "")))
    return tuple(rows)


NO_METRICS_API = (
    "this cluster serves no metrics API (metrics.k8s.io): CPU and memory cannot be measured "
    "until its operator installs metrics-server"
)


def pod_metrics(found: dict[str, Any]) -> tuple[ContainerUsage, ...]:
    """A ``PodMetricsList`` (metrics.k8s.io/v1beta1) as usage per container, by pod and name."""
    rows = []
    for item in found.get("items") or []:
        pod = str((item.get("metadata") or {}).get("name", ""))
        for container in item.get("containers") or []:
            usage = container.get("usage") or {}
            rows.append(
                ContainerUsage(
                    pod=pod,
                    container=str(container.get("name", "")),
                    cpu_millicores=float(parse_quantity(usage.get("cpu", "0")) * 1000),
                    memory_bytes=int(parse_quantity(usage.get("memory", "0"))),
                )
            )
    return tuple(sorted(rows, key=lambda row: (row.pod, row.container)))
