"""``envhub kubeconfig`` and ``envhub kube-credential``: plain kubectl and k9s on an environment.

``kubeconfig`` writes (or merges) a context for the environment's namespace:
the cluster's address and CA as envhub knows them, and a user that is an exec
credential plugin, ``envhub kube-credential ENV``. kubectl runs the plugin
when it needs a token; the plugin asks envhub for a fresh short-lived one
(``POST /api/v1/environments/{id}/credentials``, authorized and audited there)
and prints it as an ``ExecCredential``. No Kubernetes token is ever written
to disk. Only envhub's Kubernetes runtime has namespaces to offer; on the
local runtime envhub answers ``not_supported``.
"""

from __future__ import annotations

import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from envhub.cli import resources
from envhub.cli.client import Connection
from envhub.cli.output import Format, OutputOption, ServerOption, command, console, print_json
from envhub.cli.resources import EnvArgument

EXEC_API = "client.authentication.k8s.io/v1"


def _credentials(connection: Connection, environment_id: int) -> dict[str, Any]:
    answer: dict[str, Any] = connection.request(
        "POST", f"/api/v1/environments/{environment_id}/credentials", json={}
    )
    return answer


def default_kubeconfig() -> Path:
    configured = os.environ.get("KUBECONFIG", "")
    first = next((p for p in configured.split(os.pathsep) if p), "")
    return Path(first) if first else Path.home() / ".kube" / "config"


def plugin_command() -> str:
    """How kubectl should start this CLI: its absolute path when it can be found."""
    found = shutil.which("envhub")
    if found:
        return str(Path(found).resolve())
    launched = Path(sys.argv[0])
    if launched.name == "envhub" and launched.exists():
        return str(launched.resolve())
    return "envhub"


def _upsert(
    entries: list[dict[str, Any]], name: str, key: str, value: dict[str, Any]
) -> list[dict[str, Any]]:
    kept = [e for e in entries if isinstance(e, dict) and e.get("name") != name]
    return [*kept, {"name": name, key: value}]


def merge(
    config: dict[str, Any],
    *,
    name: str,
    cluster: dict[str, Any],
    user: dict[str, Any],
    namespace: str,
    switch: bool,
) -> dict[str, Any]:
    merged = dict(config)
    merged.setdefault("apiVersion", "v1")
    merged.setdefault("kind", "Config")
    merged["clusters"] = _upsert(merged.get("clusters") or [], name, "cluster", cluster)
    merged["users"] = _upsert(merged.get("users") or [], name, "user", user)
    context = {"cluster": name, "user": name, "namespace": namespace}
    merged["contexts"] = _upsert(merged.get("contexts") or [], name, "context", context)
    if switch or not merged.get("current-context"):
        merged["current-context"] = name
    return merged


def write_private(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(config, out, default_flow_style=False, sort_keys=False)
    os.replace(scratch, path)


@command
def kubeconfig(
    env: EnvArgument,
    output_file: Annotated[
        Path | None,
        typer.Option(
            "--output-file", help="The kubeconfig to write (default: $KUBECONFIG, else ~/.kube/config)."
        ),
    ] = None,
    no_switch: Annotated[bool, typer.Option("--no-switch", help="Keep the current context.")] = False,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Add a kubectl context for the environment's namespace, with short-lived tokens from envhub."""
    connection = Connection.signed_in(server)
    environment_id = resources.environment_id(connection, env)
    issued = _credentials(connection, environment_id)
    namespace = str(issued["namespace"])
    name = f"envhub-{namespace}"
    cluster: dict[str, Any] = {"server": issued["server"]}
    if issued.get("certificate_authority_data"):
        cluster["certificate-authority-data"] = issued["certificate_authority_data"]
    if issued.get("insecure_skip_tls_verify"):
        cluster["insecure-skip-tls-verify"] = True
    user = {
        "exec": {
            "apiVersion": EXEC_API,
            "command": plugin_command(),
            "args": ["kube-credential", str(environment_id), "--server", connection.server],
            "interactiveMode": "Never",
            "provideClusterInfo": False,
        }
    }
    path = output_file or default_kubeconfig()
    existing: dict[str, Any] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        existing = loaded if isinstance(loaded, dict) else {}
    write_private(
        path,
        merge(existing, name=name, cluster=cluster, user=user, namespace=namespace, switch=not no_switch),
    )
    if output is Format.json:
        print_json({"context": name, "namespace": namespace, "file": str(path), "cluster": issued["server"]})
    else:
        console.print(f"Context [bold]{name}[/] (namespace {namespace}) written to {path}.")
        if no_switch:
            console.print(f"Use it with: kubectl --context {name} get pods")


def _rfc3339(stamp: str) -> str:
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@command
def kube_credential(
    environment_id: Annotated[int, typer.Argument(help="The environment's id.", min=1)],
    server: ServerOption = None,
    output: OutputOption = Format.json,
) -> None:
    """kubectl's exec credential plugin: a fresh token for the environment (ExecCredential JSON)."""
    issued = _credentials(Connection.signed_in(server), environment_id)
    print_json(
        {
            "apiVersion": EXEC_API,
            "kind": "ExecCredential",
            "status": {"token": issued["token"], "expirationTimestamp": _rfc3339(str(issued["expires_at"]))},
        }
    )


def register(app: typer.Typer) -> None:
    app.command()(kubeconfig)
    app.command(name="kube-credential")(kube_credential)
