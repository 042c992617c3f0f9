"""A repository's devcontainer.json on the local runtime, for real: bubblewrap sandboxes, a git checkout."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from envhub.domain.specs import ServiceSocket
from envhub.errors import DevcontainerInvalid, LifecycleCommandFailed
from envhub.runtime.local import LocalRuntime
from tests.support.components import require
from tests.support.repos import WorkRepo
from tests.support.runtime import RecordingProgress, endpoint_get, kill_environments, make_target

pytestmark = pytest.mark.slow

SERVE = "python3 -m http.server $PORT"

CONFIG = """// The shop's dev container
{
  "name": "shop",
  "image": "mcr.microsoft.com/devcontainers/python:1-3.12",
  "features": { "ghcr.io/devcontainers/features/git:1": {} },
  "containerEnv": { "SHOP_MODE": "dev", "GREETING": "${localEnv:GREETING:hello}", "PORT": "1" },
  "remoteEnv": { "SHOP_HOME": "${containerWorkspaceFolder}/shop" },
  "forwardPorts": [3000, 5173],
  "portsAttributes": { "3000": { "label": "Storefront" }, "5173": { "label": "Vite" } },
  // Each form of lifecycle command: a shell line, an argument vector, named commands in parallel.
  "postCreateCommand": "echo creating in $PWD; echo created >> created.txt",
  "postStartCommand": ["/bin/sh", "-c", "echo \\"mode=$SHOP_MODE port=$PORT\\" > started.txt; echo started"],
  "postAttachCommand": {
    "left": "echo left side > left.txt; echo from-left",
    "right": ["/bin/sh", "-c", "echo right side > right.txt; echo from-right"],
  },
  "runArgs": ["--privileged"],
}
"""


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LocalRuntime]:
    require("bwrap")
    rt = LocalRuntime(tmp_path / "envs", sandbox="auto", health_timeout=30, allow_local_repos=True)
    yield rt
    kill_environments(rt)


def details(progress: RecordingProgress, key: str) -> str:
    return next(d for e, k, d in reversed(progress.events) if k == key and e in ("finish", "skip"))


def test_the_devcontainer_sets_variables_runs_its_lifecycle_and_lists_what_it_does_not_honour(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    repo = WorkRepo(tmp_path / "repo")
    files = {".devcontainer/devcontainer.json": CONFIG, "index.html": "shop\n", "vite/hello.txt": "vite\n"}
    repo.commit("dev container", files)
    progress = RecordingProgress()
    # The app, and a second server on the other forwarded port.
    command = f"python3 -m http.server 5173 --directory vite & {SERVE}"
    status = runtime.apply(make_target(1, command=command, repo_url=str(repo.path)), progress=progress)
    assert status.endpoint is not None

    # Each hook was its own step, in order, with its output.
    hooks = [k for e, k, _ in progress.events if e == "begin" and k.startswith("post_")]
    assert hooks == ["post_create", "post_start", "post_attach"]
    assert "creating in /workspace" in details(progress, "post_create")
    assert details(progress, "post_start").strip() == "started"
    attach = details(progress, "post_attach")
    assert "[left] from-left" in attach
    assert "[right] from-right" in attach

    # The app got the devcontainer's variables and its first forwarded port as $PORT.
    assert status.endpoint.port == 3000
    assert endpoint_get(status.endpoint, "/started.txt").text == "mode=dev port=3000\n"
    assert endpoint_get(status.endpoint, "/left.txt").text == "left side\n"
    assert endpoint_get(status.endpoint, "/right.txt").text == "right side\n"
    # The git feature is honoured because git is there already.
    shell = runtime.exec(1, ["/bin/sh", "-c", "echo $GREETING $SHOP_HOME; git --version"], tty=False)
    try:
        output = b""
        while chunk := shell.read(timeout=30):
            output += chunk
    finally:
        shell.close()
    greeting, version = output.decode().strip().splitlines()
    assert greeting == "hello /workspace/shop"
    assert version.startswith("git version ")

    # What the runtime did not honour is listed, with why; and the log has every hook's output.
    summary = json.loads(status.details["devcontainer"])
    refused = {entry["key"]: entry["reason"] for entry in summary["unsupported"]}
    assert set(refused) == {"runArgs", "image", "containerEnv.PORT"}
    assert summary["published_port"] == 3000
    # The other forwarded port has a socket of its own, relayed to it inside the environment.
    vite = runtime.port_endpoint(1, 5173)
    assert vite is not None
    assert endpoint_get(vite, "/hello.txt").text == "vite\n"
    assert runtime.port_endpoint(1, 9999) is None
    assert [(p["port"], p["label"]) for p in summary["ports"]] == [(3000, "Storefront"), (5173, "Vite")]
    assert "runArgs" in details(progress, "devcontainer")
    log = "\n".join(runtime.logs(1, tail=200))
    assert "--- envhub: postCreateCommand" in log
    assert "from-right" in log

    # A restart of the same commit starts again, but postCreateCommand ran for it already.
    again = RecordingProgress()
    runtime.apply(make_target(1, command=command, repo_url=str(repo.path), generation=2), progress=again)
    assert again.outcome("post_create") == "skip"
    assert again.outcome("post_start") == "finish"
    assert endpoint_get(status.endpoint, "/created.txt").text == "created\n"


def test_a_failing_lifecycle_command_fails_the_apply_with_its_output(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    repo = WorkRepo(tmp_path / "repo")
    failing = '{"postCreateCommand": "echo installing; echo missing package >&2; exit 3"}'
    repo.commit("broken setup", {".devcontainer.json": failing})
    with pytest.raises(LifecycleCommandFailed) as caught:
        runtime.apply(make_target(1, command=SERVE, repo_url=str(repo.path)), progress=RecordingProgress())
    assert caught.value.details["exit_code"] == 3
    assert "missing package" in caught.value.details["log_tail"]


def test_a_named_configuration_is_used_and_a_missing_one_is_an_error(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    repo = WorkRepo(tmp_path / "repo")
    repo.commit(
        "two configurations",
        {
            ".devcontainer/devcontainer.json": '{"containerEnv": {"WHICH": "default"}}',
            ".devcontainer/docs/devcontainer.json": '{"postStartCommand": "echo $WHICH > which.txt"}',
        },
    )
    status = runtime.apply(
        make_target(1, command=SERVE, repo_url=str(repo.path), devcontainer="docs"),
        progress=RecordingProgress(),
    )
    assert status.endpoint is not None
    assert endpoint_get(status.endpoint, "/which.txt").text == "\n"  # the named one, not the default
    with pytest.raises(DevcontainerInvalid) as caught:
        runtime.apply(
            make_target(2, command=SERVE, repo_url=str(repo.path), devcontainer="nope"),
            progress=RecordingProgress(),
        )
    assert caught.value.details["reason"] == "missing"


def test_a_lifecycle_command_that_runs_too_long_is_stopped(tmp_path: Path) -> None:
    require("bwrap")
    runtime = LocalRuntime(
        tmp_path / "envs", health_timeout=30, lifecycle_timeout=1.5, allow_local_repos=True
    )
    repo = WorkRepo(tmp_path / "repo")
    repo.commit(
        "a server in postStartCommand",
        {".devcontainer.json": '{"postStartCommand": "echo up; sleep 60.4242"}'},
    )
    try:
        with pytest.raises(LifecycleCommandFailed) as caught:
            runtime.apply(
                make_target(1, command=SERVE, repo_url=str(repo.path)), progress=RecordingProgress()
            )
        assert caught.value.details["exit_code"] is None
        assert "ran past" in caught.value.message
        assert caught.value.details["log_tail"] == "up"
        # Nothing of it is left running.
        assert not any(
            "sleep 60.4242" in " ".join(p.cmdline()) for p in psutil.process_iter() if _readable(p)
        )
    finally:
        kill_environments(runtime)


def _readable(proc: psutil.Process) -> bool:
    try:
        proc.cmdline()
    except psutil.Error:
        return False
    return True


def test_lifecycle_output_reaches_steps_and_errors_without_terminal_escapes(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    repo = WorkRepo(tmp_path / "repo")
    noisy = r'{"postCreateCommand": "printf \"\\033]0;owned\\007[bold]plain\\033[31m red\\n\"; exit 1"}'
    repo.commit("escapes", {".devcontainer.json": noisy})
    with pytest.raises(LifecycleCommandFailed) as caught:
        runtime.apply(make_target(1, command=SERVE, repo_url=str(repo.path)), progress=RecordingProgress())
    assert caught.value.details["log_tail"] == "[bold]plain red"
    assert "\x1b" not in caught.value.message


def test_a_managed_service_s_port_is_never_forwarded(runtime: LocalRuntime, tmp_path: Path) -> None:
    repo = WorkRepo(tmp_path / "repo")
    repo.commit("db port", {".devcontainer.json": '{"forwardPorts": [3000, 5432]}'})
    target = dataclasses.replace(
        make_target(1, command=SERVE, repo_url=str(repo.path)),
        service_sockets=(ServiceSocket("db", 5432, str(tmp_path / "db.sock")),),
    )
    status = runtime.apply(target, progress=RecordingProgress())
    summary = json.loads(status.details["devcontainer"])
    assert [port["port"] for port in summary["ports"]] == [3000]
    assert {
        "key": "forwardPorts.5432",
        "reason": "a managed service of the project uses this port",
    } in summary["unsupported"]
    assert runtime.port_endpoint(1, 5432) is None


BROWSER_CONFIG = """{
  "features": { "envhub/playwright": {} },
  "postStartCommand": {
    "chromium": "echo $PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH > chromium.txt",
    "lent": "ls /opt/envhub-browser/python > lent.txt 2>&1 || true",
  },
}
"""


def _said(runtime: LocalRuntime, environment_id: int, line: str) -> str:
    shell = runtime.exec(environment_id, ["/bin/sh", "-c", line], tty=False)
    try:
        output = b""
        while chunk := shell.read(timeout=30):
            output += chunk
    finally:
        shell.close()
    return output.decode().strip()


def test_the_playwright_feature_lends_a_browser_unless_the_operator_turned_browsers_off(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    require("chromium")
    repo = WorkRepo(tmp_path / "repo")
    repo.commit("browser", {".devcontainer/devcontainer.json": BROWSER_CONFIG})
    # The default (ENVHUB_BROWSER=feature): the lifecycle commands and the shells beside the app get it.
    status = runtime.apply(
        make_target(1, command=SERVE, repo_url=str(repo.path)), progress=RecordingProgress()
    )
    assert status.endpoint is not None
    assert endpoint_get(status.endpoint, "/chromium.txt").text.strip().endswith("chromium")
    assert endpoint_get(status.endpoint, "/lent.txt").text.split() == ["greenlet", "playwright"]
    assert _said(runtime, 1, "echo $ENVHUB_PLAYWRIGHT_PYTHONPATH") == "/opt/envhub-browser/python"
    assert json.loads(status.details["devcontainer"])["features"] == ["envhub/playwright"]

    off = LocalRuntime(tmp_path / "off", health_timeout=30, allow_local_repos=True, browser_mode="off")
    try:
        refused = off.apply(
            make_target(2, command=SERVE, repo_url=str(repo.path)), progress=RecordingProgress()
        )
        summary = json.loads(refused.details["devcontainer"])
        assert summary["features"] == []
        assert {e["key"]: e["reason"] for e in summary["unsupported"]} == {
            "features.envhub/playwright": "this envhub lends environments no browser "
            "(its operator set ENVHUB_BROWSER=off)"
        }
        assert (
            _said(
                off,
                2,
                'echo "[$PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH]"; test -e /opt/envhub-browser || echo none',
            )
            == "[]\nnone"
        )
    finally:
        kill_environments(off)
