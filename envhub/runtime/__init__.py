"""Runtimes: the only package that talks to process sandboxes and Kubernetes."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from envhub.config import RuntimeKind, Settings, get_settings
from envhub.domain.git_credentials import IDENTITY_KEY_PURPOSE
from envhub.runtime.base import Runtime


def get_runtime(settings: Settings | None = None) -> Runtime:
    settings = settings or get_settings()
    if settings.runtime is RuntimeKind.local:
        from envhub.runtime.local import LocalRuntime
        from envhub.runtime.local.git_access import GitAccess
        from envhub.runtime.local.runtime import default_private_paths

        private = [settings.data_dir, *default_private_paths(settings.envs_dir)]
        database = make_url(settings.database_url)
        if database.get_backend_name() == "sqlite" and database.database not in (None, "", ":memory:"):
            private.append(Path(database.database))  # a database file kept outside the data folder
        return LocalRuntime(
            settings.envs_dir,
            sandbox=settings.local_sandbox,
            health_timeout=settings.health_timeout,
            lifecycle_timeout=settings.lifecycle_timeout,
            allow_local_repos=settings.allow_local_repos,
            git_config=settings.git_config,
            private_paths=private,
            browser_mode=settings.browser,
            browser_chromium=settings.browser_chromium,
            output_limit=int(settings.background_output_limit_mb * 1024 * 1024),
            # The relay of git's credential helper calls envhub's API where this process serves it.
            git_access=GitAccess(settings.internal_address, settings.derived_key(IDENTITY_KEY_PURPOSE)),
        )
    from envhub.domain.kube import EgressDenyList, PlatformLimits
    from envhub.domain.kube.browser import BrowserSidecar
    from envhub.domain.kube.builds import BuilderSettings
    from envhub.domain.kube.git_credentials import EnvhubWeb
    from envhub.domain.kube.network import ClusterNetwork
    from envhub.domain.kube.workspace import WorkspaceSettings
    from envhub.errors import ConfigurationError
    from envhub.runtime.kubernetes import KubernetesRuntime, api_client, own_namespace

    own = settings.kube_own_namespace or own_namespace()
    builder = None
    if settings.kube_image_builder == "buildkit":
        if not settings.kube_builder_namespace or not settings.kube_builder_registry:
            raise ConfigurationError(
                "ENVHUB_KUBE_IMAGE_BUILDER=buildkit needs ENVHUB_KUBE_BUILDER_NAMESPACE and "
                "ENVHUB_KUBE_BUILDER_REGISTRY",
                hint="Name the namespace build Jobs run in and the registry they push to, "
                "or set the builder to none.",
            )
        builder = BuilderSettings(
            namespace=settings.kube_builder_namespace,
            registry=settings.kube_builder_registry,
            image=settings.kube_builder_image,
            push_secret=settings.kube_builder_push_secret,
            timeout=settings.kube_builder_timeout,
        )
    return KubernetesRuntime(
        api_client(settings.kubeconfig, settings.kube_context),
        limits=PlatformLimits(pod_security=settings.kube_pod_security),
        ingress_namespaces=settings.ingress_namespaces,
        deny=EgressDenyList(
            cidrs=settings.egress_deny_cidrs,
            namespaces=(*settings.egress_deny_namespaces, *([own] if own else [])),
        ),
        ready_timeout=settings.kube_ready_timeout,
        clusters=ClusterNetwork(
            operator_namespaces=settings.cloudnative_pg_namespaces, store_ports=settings.object_store_ports
        ),
        browser=BrowserSidecar(settings.kube_browser_image) if settings.browser != "off" else None,
        browser_mode=settings.browser,
        workspace=WorkspaceSettings(
            git_image=settings.kube_workspace_git_image,
            storage_class=settings.kube_workspace_storage_class,
            size=settings.kube_workspace_size,
            volume_size=settings.kube_workspace_volume_size,
            # Where a workspace's git credential helper reaches envhub: the web's Service, in envhub's
            # namespace (the chart sets both). Without them git inside gets no credentials from envhub.
            envhub=EnvhubWeb(
                url=settings.gateway_internal_url,
                namespace=own,
                pods=settings.web_pod_labels,
                port=settings.kube_web_pod_port,
            )
            if settings.gateway_internal_url and own
            else None,
        ),
        git_config=settings.git_config,
        allow_local_repos=settings.allow_local_repos,
        lifecycle_timeout=settings.lifecycle_timeout,
        builder=builder,
    )
