"""A local environment's devcontainer.json: what the local runtime takes from it, and its lifecycle commands.

The configuration is read from envhub's own copy of the commit (see
``workspace.committed_file``), never from the workspace. What this runtime
cannot honour (an image, volumes, a user, a second public URL) joins the
configuration's own ``unsupported`` list, so the environment page says so.

Lifecycle commands run before the app starts, each in a sandbox exactly like
the app's (its own network namespace through the supervisor, the workspace as
the only writable folder), one provisioning step per hook; the named commands
of the object form run in parallel. Their output goes to the environment's
log, and its last lines into the step.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from envhub.domain.devcontainer import (
    HOOK_STEPS,
    MAX_BYTES,
    Command,
    Devcontainer,
    LifecycleStep,
    command_failed,
    find,
    parse,
    printable,
    without_reserved,
)
from envhub.private_files import open_private
from envhub.runtime.base import ProgressReporter
from envhub.runtime.local import launching, processes, workspace
from envhub.runtime.local.sandbox import NO_EXTRAS, Extras, Sandbox

STEP = "devcontainer"
_RECORD = "lifecycle.json"  # the commit whose postCreateCommand last succeeded
_TAIL = 15


def load(
    env_dir: Path,
    *,
    name: str | None,
    project_env: dict[str, str],
    base_env: dict[str, str],
    workdir: str,
    own_network: bool,
    taken: frozenset[int] = frozenset(),
) -> Devcontainer | None:
    """The configuration of the commit the workspace holds, with this runtime's limits listed."""
    if workspace.built_from(env_dir) is None:
        return None
    found = find(lambda path: workspace.committed_file(env_dir, path, limit=MAX_BYTES), name=name)
    if found is None:
        return None
    path, text = found
    config = without_reserved(
        parse(text, path=path, local_env=project_env, base_env=base_env, folder=workdir)
    )
    if config.image:
        config = config.refuse("image", "the local runtime runs processes on this machine, not images")
    if config.workspace_folder and config.workspace_folder != workdir:
        config = config.refuse("workspaceFolder", f"the local runtime mounts the workspace at {workdir}")
    if config.remote_user:
        config = config.refuse("remoteUser", "the local runtime runs every process as one unprivileged user")
    for index, mount in enumerate(config.mounts):
        config = config.refuse(
            f"mounts[{index}]",
            f"volume {mount.source}: the local runtime has no volumes (the workspace itself is kept)",
        )
    for port in [p for p in config.ports if p.port in taken]:
        # Never relayed to a public URL: it is a managed service's (a database's) port inside.
        config = config.refuse(f"forwardPorts.{port.port}", "a managed service of the project uses this port")
    config = replace(config, ports=tuple(p for p in config.ports if p.port not in taken))
    published = app_port(config, own_network=own_network, taken=taken)
    config = replace(config, published_port=published)
    if config.ports and not own_network:
        config = config.refuse(
            "forwardPorts",
            "this sandbox shares the host's network: the app gets a free port as $PORT, "
            "and no forwarded port gets a URL of its own",
        )
    return config


def other_ports(config: Devcontainer | None, *, app_port: int) -> tuple[int, ...]:
    """The forwarded ports relayed beside the app's, each to a URL of its own."""
    if config is None or config.published_port is None:
        return ()
    return tuple(port.port for port in config.ports if port.port != app_port)


def app_port(
    config: Devcontainer | None, *, own_network: bool, taken: frozenset[int] = frozenset()
) -> int | None:
    """The forwarded port the app is given as $PORT (and published on the environment's URL).

    Only in a network namespace of the environment's own (elsewhere the port is
    the host's, and envhub picks a free one), and not one a relayed service holds.
    """
    if config is None or not config.ports or not own_network or config.ports[0].port in taken:
        return None
    return config.ports[0].port


def needs_create(env_dir: Path) -> bool:
    """Whether postCreateCommand has yet to succeed for the commit the workspace holds."""
    try:
        done = json.loads((env_dir / _RECORD).read_text()).get("created")
    except (OSError, ValueError, AttributeError):
        done = None
    return done is None or done != workspace.built_from(env_dir)


def _created(env_dir: Path) -> None:
    with open_private(env_dir / _RECORD, "wb") as handle:
        handle.write(json.dumps({"created": workspace.built_from(env_dir)}).encode())


@dataclass(frozen=True, slots=True)
class HookRunner:
    """Runs one environment's lifecycle commands in sandboxes like its app's."""

    env_dir: Path
    sandbox: Sandbox
    env: dict[str, str]
    log_path: Path
    timeout: float
    extras: Extras = NO_EXTRAS

    def run(self, config: Devcontainer, *, create: bool, progress: ProgressReporter) -> None:
        for hook, key in HOOK_STEPS.items():
            step = config.step(hook)
            if step is None:
                continue
            if hook == "postCreateCommand" and not create:
                progress.skip(key, "already ran for this commit")
                continue
            progress.begin(key, _describe(step))
            tails = self._run_step(step, progress)
            progress.finish(key, "\n".join(tails)[-2000:] or "done (no output)")
            if hook == "postCreateCommand":
                _created(self.env_dir)

    def _run_step(self, step: LifecycleStep, progress: ProgressReporter) -> list[str]:
        running: list[_Running] = []
        failures: list[tuple[Command, int | None, list[str]]] = []
        tails: list[str] = []
        try:
            for index, command in enumerate(step.commands):  # all started before any is waited for
                running.append(self._start(index, command))
            deadline = time.monotonic() + self.timeout
            for run in running:
                code = self._wait(run, deadline, progress)
                lines = _output(processes.tail_lines(run.log, 0), run.marker)
                self._append(step.hook, run.command, lines, code)
                prefix = printable(f"[{run.command.name}] ") if run.command.name else ""
                tails += [prefix + line for line in lines[-_TAIL:]]
                if code != 0:
                    failures.append((run.command, code, lines[-_TAIL:]))
        finally:
            for run in running:
                _clean(run)
        if failures:
            command, code, tail = failures[0]
            raise command_failed(step.hook, command, code, tail, timeout=self.timeout)
        return tails

    def _start(self, index: int, command: Command) -> _Running:
        marker = f"envhub-exit-{secrets.token_hex(8)}:"
        # The command's output sits between two marker lines (the sandbox's network helper
        # writes to the same log), the last one with its exit status: the supervisor, the
        # worker's child, may be reaped by anything in the worker that waits for children.
        script = (
            f'printf "{marker}start\\n"; "$@"; status=$?; printf "\\n{marker}%d\\n" "$status"; exit "$status"'
        )
        argv = ["/bin/sh", "-c", script, "envhub-hook", *command.argv_to_run()]
        log = self.env_dir / f"hook{index}.log"
        with open_private(log, "wb"):
            pass
        run_dir = self.env_dir / f"hook{index}"  # short: a UNIX socket's path is made in it
        state = launching.start_supervised(
            sandbox=self.sandbox,
            argv=argv,
            env=self.env,
            workspace=self.env_dir / workspace.WORKSPACE,
            run_dir=run_dir,
            log_path=log,
            port=int(self.env.get("PORT", "0")) or processes.free_port(),
            generation=0,
            extras=self.extras,
        )
        return _Running(command, state, log, run_dir, marker)

    def _wait(self, run: _Running, deadline: float, progress: ProgressReporter) -> int | None:
        """The command's exit status; None when it ran past ``deadline``."""
        last_beat = 0.0
        while processes.find_process(run.state) is not None:
            if time.monotonic() - last_beat > 1.0:
                progress.heartbeat()
                last_beat = time.monotonic()
            if not processes.wait_until(deadline):
                return None
        for line in reversed(processes.tail_lines(run.log, 5)):
            status = line[len(run.marker) :]
            if line.startswith(run.marker) and status.lstrip("-").isdigit():
                return int(status)
        return -1  # ended without saying how (killed)

    def _append(self, hook: str, command: Command, lines: list[str], code: int | None) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        label = printable(f" {command.name}:") if command.name else ""
        outcome = f"exit {code}" if code is not None else "timed out"
        with open_private(self.log_path, "ab") as handle:
            described = printable(command.describe())
            handle.write(f"--- envhub: {hook}{label} {described} at {stamp} UTC\n".encode())
            handle.write("".join(f"{line}\n" for line in lines).encode())
            handle.write(f"--- envhub: {hook}{label} {outcome}\n".encode())


@dataclass(frozen=True, slots=True)
class _Running:
    """One lifecycle command started in its sandbox."""

    command: Command
    state: processes.ProcessState
    log: Path
    run_dir: Path
    marker: str


def _clean(run: _Running) -> None:
    proc = processes.find_process(run.state)
    if proc is not None:
        processes.kill_tree(proc, grace=1.0)
    with contextlib.suppress(psutil.Error):  # reap the supervisor, the worker's own child
        psutil.Process(run.state.pid).wait(timeout=0)
    run.log.unlink(missing_ok=True)
    shutil.rmtree(run.run_dir, ignore_errors=True)


def _output(lines: list[str], marker: str) -> list[str]:
    """The command's own lines: after the start marker, before the exit marker (or the end)."""
    # Without the start marker (a very long output was cut at its head), everything read.
    start = next((i for i, line in enumerate(lines) if line == f"{marker}start"), -1)
    ours: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith(marker):
            break
        ours.append(printable(line))
    while ours and not ours[-1].strip():
        ours.pop()
    return ours[-200:]


def _describe(step: LifecycleStep) -> str:
    if len(step.commands) == 1:
        return printable(step.commands[0].describe())[:500]
    return printable("in parallel: " + ", ".join(command.name for command in step.commands))
