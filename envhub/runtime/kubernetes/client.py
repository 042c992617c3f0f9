"""Connecting to a cluster: a kubeconfig file, else the in-cluster service account."""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from envhub.errors import ConfigurationError


def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
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
