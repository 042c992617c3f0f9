"""Connecting to a cluster: a kubeconfig file, else the in-cluster service account."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from envhub.errors import ConfigurationError

# Measuring only (bench/provision.py): when set, every request to the cluster is
# appended to this file as one JSON line. Off unless the variable is set.
REQUEST_LOG_VARIABLE = "ENVHUB_KUBE_REQUEST_LOG"


# Where Kubernetes tells a pod which namespace it runs in.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def own_namespace(path: Path = SERVICE_ACCOUNT_NAMESPACE) -> str | None:
    """The namespace envhub's own pod runs in; None outside a cluster."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    return _log_requests(_connect(kubeconfig, context))


def _connect(kubeconfig: str | None, context: str | None) -> client.ApiClient:
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        path = path or str(Path.home() / ".kube" / "config")
        if not Path(path).is_file():
            raise ConfigurationError(
                f"ENVHUB_KUBECONFIG: no kubeconfig at {path}",
                hint="Point ENVHUB_KUBECONFIG at a kubeconfig, or run envhub inside the cluster.",
            )
        try:
            loaded: client.ApiClient = config.new_client_from_config(config_file=path, context=context)
            return loaded
        except (ConfigException, ValueError) as exc:
            raise ConfigurationError(f"ENVHUB_KUBECONFIG: {path} is not usable: {exc}") from exc
    try:
        config.load_incluster_config()
    except ConfigException as exc:
        raise ConfigurationError(f"in-cluster Kubernetes configuration failed: {exc}") from exc
    return client.ApiClient()


def _log_requests(api: client.ApiClient) -> client.ApiClient:
    target = os.environ.get(REQUEST_LOG_VARIABLE)
    if not target:
        return api
    send = api.rest_client.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        status: int | str = "error"
        try:
            response = send(method, url, *args, **kwargs)
            status = int(getattr(response, "status", 0))
            return response
        finally:
            parts = urlsplit(url)
            line = {
                "pid": os.getpid(),
                "thread": threading.current_thread().name,
                "method": method.upper(),
                "path": parts.path,
                "query": parts.query,
                "status": status,
                "start": started,
                "seconds": round(time.monotonic() - started, 6),
            }
            with open(target, "a", encoding="utf-8") as log:  # one short append per line
                log.write(json.dumps(line) + "\n")

    api.rest_client.request = request  # type: ignore[method-assign]
    return api
