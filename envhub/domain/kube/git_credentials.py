"""Git credentials in a Kubernetes workspace: a token the cluster signs, traded for a GitHub one.

The local runtime's relay signs an identity per request (``domain/git_credentials.py``);
on a cluster the kubelet does the signing. The workspace pod gets a projected
ServiceAccount token of the environment's workload account with the audience
:data:`AUDIENCE` and a ten-minute life, which the kubelet rotates. The API server
refuses it (its audience is not the API server's), so it opens nothing in the
cluster; envhub checks it with a TokenReview naming that audience, and the
account's namespace says which environment asks (a namespace belongs to one
environment: its id ends the name).

git is told, through ``GIT_CONFIG_*`` variables as in the local runtime, to ask
:data:`HELPER_NAME` for the project repository's origin and no other. The helper
is a POSIX ``sh`` script that needs ``curl`` (most dev container images have
both; none needs python): it POSTs git's ``protocol`` and ``host`` with the
token to envhub's endpoint and prints the username and the short-lived
installation token. It and the token come in one read-only projected volume (the
script from a ConfigMap of envhub's), so no image change is needed and nothing
long-lived is written into the container. A NetworkPolicy lets the workspace's
pod, and no other, reach envhub's web pods on their port.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envhub.domain.git_credentials import ENDPOINT, git_config_variables
from envhub.domain.kube.names import (
    GIT_HELPER_CONFIG_MAP,
    NAMESPACE_NAME_LABEL,
    POLICY_ALLOW_ENVHUB,
    WORKLOAD_ACCOUNT,
    metadata,
)

AUDIENCE = "envhub"  # the projected token's audience, and the one envhub's TokenReview names
TOKEN_SECONDS = 600  # the API server's minimum; the kubelet renews the token at 80% of it
HELPER_CONFIG_MAP = GIT_HELPER_CONFIG_MAP
VOLUME = "envhub-git"
MOUNT = "/var/run/envhub/git"
HELPER_NAME = "git-credential-envhub"
TOKEN_FILE = "token"  # noqa: S105 (a file name)
_ACCOUNT_PREFIX = "system:serviceaccount:"
_JWT = re.compile(r"[A-Za-z0-9_-]{10,4096}\.[A-Za-z0-9_-]{10,8192}\.[A-Za-z0-9_-]{10,4096}")

HELPER_SCRIPT = r"""#!/bin/sh
# envhub's git credential helper in a Kubernetes workspace (read-only, from a ConfigMap).
# git runs it as "git-credential-envhub URL get" with its request on stdin; it POSTs the
# protocol and host with the pod's projected token (beside this file) to envhub at URL, and
# prints what git reads: username, password (a short-lived token for the project's
# repository) and its expiry. It keeps nothing: store and erase do nothing. Needs sh and curl.
[ "${2:-}" = get ] || exit 0
fail() { printf 'envhub: %s\n' "$*" >&2; exit 1; }
protocol='' host=''
while IFS= read -r line; do
  [ -z "$line" ] && break
  case $line in
    protocol=*) protocol=${line#protocol=} ;;
    host=*) host=${line#host=} ;;
  esac
done
case $protocol in '' | *[!a-z0-9+.-]*) fail "git sent no usable protocol" ;; esac
case $host in '' | *[!A-Za-z0-9.:_-]*) fail "git sent no usable host" ;; esac
command -v curl >/dev/null 2>&1 || fail "no git credentials: the image has no curl (envhub's helper needs it)"
token=$(cat "${0%/*}/token" 2>/dev/null) || fail "no git credentials: the pod has no envhub token"
nl='
'
answer=$(printf 'Authorization: Bearer %s\n' "$token" | curl -sS --noproxy '*' --max-time 30 \
  -H @- -H 'Content-Type: application/json' -w "$nl%{http_code}" \
  --data-binary "{\"protocol\":\"$protocol\",\"host\":\"$host\"}" "$1") \
  || fail "cannot reach envhub for git credentials at $1"
status=${answer##*"$nl"}
body=${answer%"$nl"*}
field() { printf '%s' "$body" | sed -n "s/.*\"$1\": *\"\([^\"\\\\]*\)\".*/\1/p"; }
number() { printf '%s' "$body" | sed -n "s/.*\"$1\": *\([0-9][0-9]*\).*/\1/p"; }
if [ "$status" != 200 ]; then
  fail "no git credentials: $(field message) ($(field code) HTTP $status). $(field hint)"
fi
username=$(field username) password=$(field password) expiry=$(number password_expiry_utc)
[ -n "$username" ] && [ -n "$password" ] || fail "no git credentials: envhub's answer could not be read"
printf 'username=%s\npassword=%s\n' "$username" "$password"
[ -n "$expiry" ] && printf 'password_expiry_utc=%s\n' "$expiry"
exit 0
"""


@dataclass(frozen=True, slots=True)
class EnvhubWeb:
    """envhub's web as workspace pods reach it: the URL the helper calls (its Service), and what a
    NetworkPolicy matches (policies select pods, after the Service's translation: their port)."""

    url: str  # http://envhub-web.envhub.svc:80
    namespace: str
    pods: Mapping[str, str] = field(default_factory=dict)  # the web pods' labels
    port: int | str = 3000  # the web pods' port (a number, or the container port's name)


def helper_command(web: EnvhubWeb) -> str:
    """git's ``credential.<origin>.helper``: the helper in the volume, and where envhub answers."""
    return f"{MOUNT}/{HELPER_NAME} {web.url.rstrip('/')}{ENDPOINT}"


def git_variables(origin: str, web: EnvhubWeb) -> dict[str, str]:
    return git_config_variables(origin, helper_command(web))


def volume() -> dict[str, Any]:
    """The projected volume: the workload account's token for envhub, and the helper (executable)."""
    return {
        "name": VOLUME,
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": AUDIENCE,
                        "expirationSeconds": TOKEN_SECONDS,
                        "path": TOKEN_FILE,
                    }
                },
                {
                    "configMap": {
                        "name": HELPER_CONFIG_MAP,
                        "items": [{"key": HELPER_NAME, "path": HELPER_NAME, "mode": 0o555}],
                    }
                },
            ],
        },
    }


def volume_mount() -> dict[str, Any]:
    return {"name": VOLUME, "mountPath": MOUNT, "readOnly": True}


def render_helper_config_map(*, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(HELPER_CONFIG_MAP, namespace, labels),
        "data": {HELPER_NAME: HELPER_SCRIPT},
    }


def render_envhub_policy(
    web: EnvhubWeb, *, namespace: str, labels: dict[str, str], pods: Mapping[str, str]
) -> dict[str, Any]:
    """Egress from ``pods`` (the workspace's) to envhub's web pods, on their port only."""
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: web.namespace}}}
    if web.pods:
        peer["podSelector"] = {"matchLabels": dict(web.pods)}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(POLICY_ALLOW_ENVHUB, namespace, labels),
        "spec": {
            "podSelector": {"matchLabels": dict(pods)},
            "policyTypes": ["Egress"],
            "egress": [{"to": [peer], "ports": [{"protocol": "TCP", "port": web.port}]}],
        },
    }


def looks_like_service_account_token(token: str) -> bool:
    """Whether ``token`` is shaped like a signed JWT: nothing else is worth a TokenReview (and no
    one's envhub token, sent here by mistake, is passed on to the cluster)."""
    return bool(_JWT.fullmatch(token))


def workload_account(username: str) -> tuple[str, str] | None:
    """``(namespace, account)`` of a ServiceAccount's user name (``system:serviceaccount:NS:NAME``),
    or None for any other user."""
    if not username.startswith(_ACCOUNT_PREFIX):
        return None
    namespace, sep, account = username.removeprefix(_ACCOUNT_PREFIX).partition(":")
    if not sep or not namespace or not account or ":" in account:
        return None
    return namespace, account


def environment_of_namespace(namespace: str) -> int | None:
    """The environment id a namespace's name ends with (``envhub-...-<id>``); the runtime still checks
    that the namespace is that environment's (``names.is_namespace_of`` and its labels)."""
    _head, sep, tail = namespace.rpartition("-")
    return int(tail) if sep and tail.isdigit() and len(tail) < 19 else None


def is_workspace_account(account: str) -> bool:
    """Only the workload account's tokens count (the workspace pod runs as it)."""
    return account == WORKLOAD_ACCOUNT
