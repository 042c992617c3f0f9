"""The Kubernetes runtime adapter (the only code that imports ``kubernetes``)."""

from envhub.runtime.kubernetes.client import api_client, own_namespace
from envhub.runtime.kubernetes.runtime import KubernetesRuntime

__all__ = ["KubernetesRuntime", "api_client", "own_namespace"]
