"""Logs and exec through the runtime port, over the real apiserver to the test kubelet.

Exec speaks the WebSocket channel protocol: v5 by default, v4 when forced, when
the server only knows v4 (it picks v4 from the offer), and when a server refuses
an offer that contains v5 outright (the session offers v4 alone next).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from envhub.domain.kube import namespace_for
from envhub.domain.specs import EnvironmentTarget
from envhub.errors import EnvhubError, NotReady
from envhub.runtime.kubernetes import KubernetesRuntime, api_client
from envhub.runtime.kubernetes.streams import KubernetesExecSession
from tests.kube.apiproxy import V4, V5, ApiProxy
from tests.support.runtime import RecordingProgress, make_target
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kube

MakeEnv = Callable[..., EnvironmentTarget]
TICKER = "i=0; while true; do echo {name} $i; i=$((i+1)); sleep 0.2; done"


def ticker(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", TICKER.format(name=name)], **fields}


@pytest.fixture(scope="module")
def chatty(runtime: KubernetesRuntime, kube: Any) -> Iterator[EnvironmentTarget]:
    """One environment for the whole module: two services that print a numbered line every 0.2 s.

    ``boot`` prints "early" once, then, 5 s later, "late" lines: for since_seconds.
    """
    boot = {
        "name": "boot",
        "image": "busybox",
        "command": ["sh", "-c", "echo early; sleep 5; while true; do echo late; sleep 0.2; done"],
    }
    target = make_target(
        89001,
        name="chatty",
        services=[ticker("web", env={"ROLE": "web-role"}), ticker("side", env={"ROLE": "side-role"}), boot],
    )
    runtime.apply(target, progress=RecordingProgress())
    yield target
    kube.delete_namespace(namespace_for(target))


def read_all(session: KubernetesExecSession) -> bytes:
    out = b""
    while chunk := session.read(timeout=30):
        out += chunk
    return out


def numbers(lines: list[str], name: str) -> list[int]:
    return [int(line.split()[1]) for line in lines if line.startswith(f"{name} ")]


# -- logs -------------------------------------------------------------------------------


def test_logs_tail_and_per_container(runtime: KubernetesRuntime, chatty: EnvironmentTarget) -> None:
    wait_for(lambda: len(list(runtime.logs(chatty.id, tail=None, container="web"))) >= 5, what="some output")
    last = list(runtime.logs(chatty.id, tail=3, container="web"))
    assert len(last) == 3
    seq = numbers(last, "web")
    assert seq == list(range(seq[0], seq[0] + 3))
    side = list(runtime.logs(chatty.id, tail=2, container="side"))
    assert len(side) == 2
    assert all(line.startswith("side ") for line in side)


def test_logs_follow_streams_new_lines_as_they_come(
    runtime: KubernetesRuntime, chatty: EnvironmentTarget
) -> None:
    before = numbers(list(runtime.logs(chatty.id, tail=1, container="web")), "web")[0]
    lines = runtime.logs(chatty.id, follow=True, tail=1, container="web")
    seen: list[str] = []
    for line in lines:
        seen.append(line)
        if len(seen) == 8:
            break
    lines.close()  # type: ignore[attr-defined]
    seq = numbers(seen, "web")
    assert seq == list(range(seq[0], seq[0] + 8))
    assert seq[-1] > before + 3  # lines printed after the follow began arrived through it


def test_logs_since_seconds_leaves_out_older_output(
    runtime: KubernetesRuntime, chatty: EnvironmentTarget
) -> None:
    wait_for(
        lambda: "late" in list(runtime.logs(chatty.id, tail=1, container="boot")),
        timeout=60,
        what="the boot service's late lines",
    )
    everything = list(runtime.logs(chatty.id, tail=None, container="boot"))
    recent = list(runtime.logs(chatty.id, tail=None, container="boot", since_seconds=2))
    assert everything[0] == "early"
    assert "early" not in recent
    assert recent
    assert set(recent) == {"late"}


def test_logs_of_an_environment_without_pods_is_not_ready(runtime: KubernetesRuntime) -> None:
    with pytest.raises(NotReady):
        runtime.logs(1_000_001, tail=5)


# -- exec -------------------------------------------------------------------------------


def exercise_exec(runtime: KubernetesRuntime, target: EnvironmentTarget, protocol: str) -> None:
    """stdin, stdout, stderr and the exit code; then a TTY that is resized."""
    session = runtime.exec(
        target.id,
        ["sh", "-c", "read line; echo got $line; echo oops >&2; exit 3"],
        tty=False,
        container="web",
    )
    assert session.protocol == protocol
    session.write(b"hello\n")
    output = read_all(session)
    assert b"got hello\n" in output
    assert b"oops\n" in output
    assert session.wait(timeout=30) == 3
    session.close()

    tty = runtime.exec(
        target.id, ["sh", "-c", "read go; stty size; echo done $go"], tty=True, container="web"
    )
    assert tty.protocol == protocol
    tty.resize(100, 40)
    tty.write(b"now\n")
    output = read_all(tty)
    assert b"40 100" in output
    assert b"done now" in output
    assert tty.wait(timeout=30) == 0
    tty.resize(80, 24)  # after the end: harmless
    tty.close()


def test_exec_over_v5(runtime: KubernetesRuntime, chatty: EnvironmentTarget) -> None:
    exercise_exec(runtime, chatty, V5)


def test_exec_forced_to_v4(runtime: KubernetesRuntime, chatty: EnvironmentTarget) -> None:
    exercise_exec(KubernetesRuntime(runtime.api, exec_protocols=(V4,)), chatty, V4)


def test_exec_negotiates_v4_with_a_server_that_only_knows_v4(
    cluster: Any, chatty: EnvironmentTarget, tmp_path: Path
) -> None:
    with ApiProxy(cluster, tmp_path) as proxy:
        proxy.state.exec_mode = "old-kubelet"
        exercise_exec(KubernetesRuntime(api_client(str(proxy.kubeconfig))), chatty, V4)
        assert set(proxy.state.offers) == {f"{V5},{V4}"}  # one handshake each: v4 was picked from the offer


def test_exec_falls_back_to_v4_when_v5_is_refused(
    cluster: Any, chatty: EnvironmentTarget, tmp_path: Path
) -> None:
    with ApiProxy(cluster, tmp_path) as proxy:
        proxy.state.exec_mode = "strict"
        exercise_exec(KubernetesRuntime(api_client(str(proxy.kubeconfig))), chatty, V4)
        assert proxy.state.offers == [f"{V5},{V4}", V4] * 2  # refused, then v4 alone, for each session
        assert [s.status for s in proxy.requests("GET", "/exec")] == [400, None, 400, None]


def test_exec_default_shell_and_picking_a_container(
    runtime: KubernetesRuntime, chatty: EnvironmentTarget
) -> None:
    shell = runtime.exec(chatty.id, container="web")  # a login shell, with a TTY
    shell.write(b"echo $ROLE $((6 * 7))\n")
    shell.write(b"exit 5\n")
    assert b"web-role 42" in read_all(shell)
    assert shell.wait(timeout=30) == 5
    shell.close()

    side = runtime.exec(chatty.id, ["sh", "-c", "echo $ROLE"], tty=False, container="side")
    assert read_all(side) == b"side-role\n"
    assert side.wait(timeout=30) == 0
    side.close()


def test_logs_and_exec_default_to_the_specs_first_service(
    runtime: KubernetesRuntime, chatty: EnvironmentTarget
) -> None:
    # The spec says web, side, boot: web is the default, though its pod sorts last by name.
    wait_for(lambda: numbers(list(runtime.logs(chatty.id, tail=5)), "web"), what="web's output by default")
    assert all(line.startswith("web ") for line in runtime.logs(chatty.id, tail=5))
    session = runtime.exec(chatty.id, ["sh", "-c", "echo $ROLE"], tty=False)
    assert read_all(session) == b"web-role\n"
    assert session.wait(timeout=30) == 0
    session.close()


def test_exec_refusals_keep_their_meaning(runtime: KubernetesRuntime, chatty: EnvironmentTarget) -> None:
    with pytest.raises(NotReady):
        runtime.exec(1_000_001, ["true"])
    session = runtime.exec(chatty.id, ["/no/such/program"], tty=False)
    assert session.wait(timeout=30) == 127
    session.close()
    namespace, pod, _ = runtime._pod(chatty.id, None)
    with pytest.raises(EnvhubError) as refused:
        KubernetesExecSession(
            runtime.core, namespace=namespace, pod=pod, container="nope", command=["true"], tty=False
        )
    assert refused.value.code == "cluster_rejected"  # a 400 from the apiserver, not "cluster unreachable"
    assert "nope" in refused.value.message


def test_exec_does_not_disturb_concurrent_calls_on_the_shared_client(
    runtime: KubernetesRuntime, chatty: EnvironmentTarget
) -> None:
    failures: list[BaseException] = []
    done = threading.Event()

    def keep_listing() -> None:
        while not done.is_set():
            try:
                runtime.core.list_namespace(
                    _preload_content=False
                ).release_conn()  # no retries: every failure shows
            except BaseException as exc:
                failures.append(exc)

    lister = threading.Thread(target=keep_listing, daemon=True)
    lister.start()
    try:
        for _ in range(15):
            session = runtime.exec(chatty.id, ["true"], tty=False)
            assert session.wait(timeout=30) == 0
            session.close()
    finally:
        done.set()
        lister.join(timeout=30)
    assert failures == []


# -- background processes ---------------------------------------------------------------


def test_background_processes_run_detached_through_exec(
    runtime: KubernetesRuntime, chatty: EnvironmentTarget
) -> None:
    """Started by one exec, alive after it; output by offset, state and stop by further execs."""
    runtime.start_process(
        chatty.id, "41", ["sh", "-c", "echo started; while :; do echo tick; sleep 0.2; done"]
    )
    wait_for(
        lambda: runtime.process_output(chatty.id, "41", 0, 100).data.startswith(b"started\ntick\ntick\n"),
        timeout=60,
        what="the background process's output",
    )
    assert runtime.process_state(chatty.id, "41").running
    later = runtime.process_output(chatty.id, "41", 8, 5)
    assert (later.data, later.offset) == (b"tick\n", 8)
    assert later.size >= 18
    runtime.stop_process(chatty.id, "41", 2)
    ended = runtime.process_state(chatty.id, "41")
    assert (ended.running, ended.exit_code) == (False, 143)

    runtime.start_process(chatty.id, "42", ["sh", "-c", "echo bye; exit 7"])
    wait_for(lambda: not runtime.process_state(chatty.id, "42").running, timeout=60, what="it to end")
    assert runtime.process_state(chatty.id, "42").exit_code == 7
    assert runtime.process_output(chatty.id, "42", 0, 100).data == b"bye\n"
    with pytest.raises(EnvhubError) as missing:
        runtime.process_state(chatty.id, "43")
    assert missing.value.code == "not_found"
