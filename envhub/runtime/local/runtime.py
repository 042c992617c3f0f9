"""The local runtime: each environment is a sandboxed process tree on this machine.

Layout under the data folder::

    envs/<id>/workspace/    the environment's files (a git checkout when the project has a repo);
                            the only folder the sandbox sees, so nothing in it is trusted
    envs/<id>/git/          envhub's own copy of the repository (see workspace.py), never mounted
    envs/<id>/run/          envhub's private folder (0700, never mounted): app.sock, the
                            socket through which the gateway and health check reach the app
    envs/<id>/output.log    everything its processes print since they last started
    envs/<id>/output.previous.log   what the tree before printed (read after a crash)
    envs/<id>/state.json    pid, start time, port and generation of the running tree, its restarts
    envs/<id>/exit.json     how the running tree's app ended, once it has (exits.py)
    envs/<id>/.lock         serialises apply/destroy of one environment across workers
    envs/<id>/lifecycle.json  the commit whose devcontainer postCreateCommand last succeeded
    envs/<id>/hook<n>/, hook<n>.log  a lifecycle command's private folder and output while it runs
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from envhub.config import PROJECT_ROOT
from envhub.domain import browser, redaction
from envhub.domain.devcontainer import Devcontainer
from envhub.domain.progress import PROVISION_STEPS, TEARDOWN_STEPS
from envhub.domain.repos import GIT_TOKEN_SECRET, GIT_USERNAME_SECRET
from envhub.domain.specs import EnvironmentTarget, check_service_sockets
from envhub.errors import NotReady, ProcessExited, Unsupported, ValidationFailed
from envhub.private_files import open_private, private_dir
from envhub.runtime.base import (
    BackgroundState,
    ContainerInfo,
    ContainerUsage,
    Endpoint,
    EnvVarInfo,
    Inspection,
    PodInfo,
    ProbeInfo,
    ProcessOutputChunk,
    ProgressReporter,
    RuntimeState,
    RuntimeStatus,
    StatusHandler,
    Usage,
)
from envhub.runtime.local import (
    background,
    cgroups,
    exits,
    git_access,
    launching,
    lifecycle,
    network,
    processes,
    timing,
    workspace,
)
from envhub.runtime.local import browser as lent
from envhub.runtime.local.git_access import GitAccess
from envhub.runtime.local.sandbox import LAUNCHER_ENV, Extras, Launch, Sandbox, detect_sandbox
from envhub.runtime.local.shell import LocalExecSession

log = logging.getLogger(__name__)

_BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
USAGE_SOURCE = "process tree (psutil)"
# Seconds between two readings a CPU rate is taken from (the kernel counts CPU time in ticks
# of 10 ms): a tree seen for the first time is read twice this far apart.
_MIN_INTERVAL = 0.5
# The fetch token is envhub's, not the workload's: code in a pull request never sees it.
_WITHHELD = (GIT_TOKEN_SECRET, GIT_USERNAME_SECRET)


def _git_credentials(target: EnvironmentTarget) -> workspace.Credentials | None:
    token = target.secrets.get(GIT_TOKEN_SECRET)
    if not token:
        return None
    return workspace.Credentials(token, target.secrets.get(GIT_USERNAME_SECRET) or "x-access-token")


class LocalRuntime:
    name = "local"
    provision_plan = PROVISION_STEPS
    teardown_plan = TEARDOWN_STEPS
    # Local status is a cheap look at our own processes, so the reconciler asks.
    pushes_status = False

    def __init__(
        self,
        root: Path,
        *,
        sandbox: str = "auto",
        health_timeout: float = 60.0,
        lifecycle_timeout: float = 600.0,
        allow_local_repos: bool = False,
        git_config: Path | None = None,
        private_paths: Iterable[Path] | None = None,
        browser_mode: str = "feature",
        browser_chromium: str = "",
        output_limit: int = background.DEFAULT_OUTPUT_LIMIT,
        git_access: GitAccess | None = None,
    ) -> None:
        self.root = root
        # Who is lent the machine's Chromium and envhub's Playwright (``browser.py``).
        self.browser_mode = browser_mode
        self.browser_chromium = browser_chromium
        self.git_access = git_access  # None: git inside gets no credentials from envhub
        self.output_limit = output_limit  # bytes of a background process's output kept
        self.allow_local_repos = allow_local_repos
        self.git_config = git_config
        self._sandbox_preference = sandbox
        self._sandbox: Sandbox | None = None
        self.health_timeout = health_timeout
        self.lifecycle_timeout = lifecycle_timeout
        # envhub's own folders, hidden from every sandbox: by default the data
        # folder (the parent of ``envs/``), the install folder and the virtualenv.
        chosen = private_paths if private_paths is not None else default_private_paths(root)
        self.private_paths = tuple(chosen)
        # environment id -> ((pid, source), when, CPU seconds, rate) of the last usage reading:
        # rates are differences, of two readings of one tree from one source.
        self._last_usage: dict[int, tuple[tuple[int, str], float, float, float]] = {}
        self._usage_lock = threading.Lock()

    # -- paths -------------------------------------------------------------

    def _dir(self, environment_id: int) -> Path:
        return self.root / str(environment_id)

    def workspace_path(self, environment_id: int) -> Path:
        return self._dir(environment_id) / "workspace"

    def _state_path(self, environment_id: int) -> Path:
        return self._dir(environment_id) / "state.json"

    def _log_path(self, environment_id: int, *, previous: bool = False) -> Path:
        return self._dir(environment_id) / ("output.previous.log" if previous else "output.log")

    def _run_dir(self, environment_id: int) -> Path:
        return self._dir(environment_id) / "run"

    def _exit_path(self, environment_id: int) -> Path:
        return self._dir(environment_id) / "exit.json"

    def _end_tree(self, environment_id: int, state: processes.ProcessState | None) -> bool:
        """Stop the tree ``state`` records, if it runs (a stop of envhub's, not a restart), and remove
        its cgroups; whether it was running."""
        proc = processes.find_process(state)
        if proc is not None and state is not None:
            processes.kill_tree(proc)
            exits.mark_stopped(self._exit_path(environment_id), state.pid)
        placement = _placement(state) if state is not None else None
        if placement is not None:
            cgroups.remove(placement)
        return proc is not None

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox in use; raises ``SandboxUnavailable`` (tried again next time) when none fits."""
        if self._sandbox is None:
            self._sandbox = detect_sandbox(self._sandbox_preference, private_paths=self.private_paths)
        return self._sandbox

    @contextmanager
    def _locked(self, environment_id: int) -> Iterator[None]:
        directory = self._dir(environment_id)
        private_dir(directory)
        with open_private(directory / ".lock", "ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- the port ----------------------------------------------------------

    def prepare(self, target: EnvironmentTarget, *, progress: ProgressReporter) -> None:
        """Nothing to make ahead: an environment's sandbox is made when its processes start."""
        progress.skip("namespace", "the local runtime has no namespaces")
        progress.skip("isolation", "each start makes its own sandbox")

    def apply(self, target: EnvironmentTarget, *, progress: ProgressReporter) -> RuntimeStatus:
        return self._bring_up(target, progress, fetch=True)

    def wake(self, target: EnvironmentTarget, *, progress: ProgressReporter) -> RuntimeStatus:
        """Start the app again in the workspace as sleep left it (no fetch, no checkout)."""
        return self._bring_up(target, progress, fetch=False)

    def sleep(self, environment_id: int, *, progress: ProgressReporter) -> str:
        """Stop the app and its background processes; the workspace and state.json (its $PORT) stay."""
        directory = self._dir(environment_id)
        if not directory.exists():
            progress.skip("sleep", "nothing here")
            return "nothing here"
        progress.begin("sleep")
        with self._locked(environment_id):
            background.stop_all(directory)
            stopped = self._end_tree(environment_id, processes.read_state(self._state_path(environment_id)))
        done = "processes stopped; workspace kept" if stopped else "nothing was running"
        progress.finish("sleep", done)
        return done

    def _bring_up(
        self, target: EnvironmentTarget, progress: ProgressReporter, *, fetch: bool
    ) -> RuntimeStatus:
        with self._locked(target.id):
            state_path = self._state_path(target.id)
            state = processes.read_state(state_path)
            # Refused before anything stops: the app keeps its $PORT across restarts.
            check_service_sockets(target.service_sockets, app_port=state.port if state else None)
            self._check_not_in_environments(target)
            running = processes.find_process(state)
            current = (
                running is not None
                and state is not None
                and state.generation == target.generation
                # The relays' listeners are made at start: a change of services restarts.
                and state.services_digest == launching.services_digest(target.service_sockets)
            )

            if not fetch:
                self.workspace_path(target.id).mkdir(parents=True, exist_ok=True)
            elif current:
                progress.skip("workspace", "workspace already prepared")
            else:
                progress.begin("workspace")
                done = workspace.prepare(
                    self._dir(target.id),
                    repo_url=target.spec.repo_url,
                    ref=target.spec.ref,
                    allow_local=self.allow_local_repos,
                    credentials=_git_credentials(target),
                    git_config=self.git_config,
                )
                progress.finish("workspace", done)
            config = self._devcontainer(target, progress, quiet=current or not fetch)

            if current and state is not None:
                progress.skip("start", f"already running (pid {state.pid})")
            else:
                self._end_tree(target.id, state)
                restarts, last_exit = (
                    exits.after(state.restarts, exits.read(self._exit_path(target.id), state.pid))
                    if state is not None
                    else (0, {})
                )
                self._keep_previous_output(target.id)
                if config is not None and config.lifecycle:
                    self._run_hooks(target, config, progress, previous_port=state.port if state else None)
                progress.begin("start")
                state = self._start(
                    target,
                    previous_port=state.port if state else None,
                    config=config,
                    ended=(restarts, last_exit),
                )
                isolation = launching.describe(state)
                progress.finish(
                    "start", f"pid {state.pid} on port {state.port} ({isolation}){_relayed(target, state)}"
                )

            assert state is not None
            endpoint = self._endpoint(target.id, state)
            progress.begin("health", f"GET {target.spec.health_path} on port {state.port}")
            self._wait_healthy(target, state, endpoint, progress)
            progress.finish("health", f"answering on port {state.port}")
            details = _condition_details(state)
            if config is not None:
                details[lifecycle.STEP] = json.dumps(config.summary())
            return RuntimeStatus(
                RuntimeState.ready,
                "serving",
                generation=target.generation,
                endpoint=endpoint,
                details=details,
            )

    def _devcontainer(
        self, target: EnvironmentTarget, progress: ProgressReporter, *, quiet: bool
    ) -> Devcontainer | None:
        """The repository's devcontainer.json as this runtime honours it; None when it has none."""
        sandbox = self.sandbox
        home = sandbox.workdir_inside or str(self.workspace_path(target.id))
        # Reported only for a repository: an empty workspace has nothing to read.
        quiet = quiet or target.spec.repo_url is None
        if not quiet:
            progress.begin(lifecycle.STEP)
        config = lifecycle.load(
            self._dir(target.id),
            name=target.spec.devcontainer,
            project_env=dict(target.spec.env),
            base_env={"PATH": _BASE_PATH, "HOME": home},
            workdir=home,
            own_network=sandbox.own_network,
            taken=frozenset(s.port for s in target.service_sockets),
        )
        config = browser.honour(config, self.browser_mode)
        if not quiet:
            if config is None:
                progress.skip(lifecycle.STEP, "the repository has no devcontainer.json")
            else:
                refused = ", ".join(entry.key for entry in config.unsupported)
                progress.finish(
                    lifecycle.STEP, config.path + (f"; not honoured: {refused}" if refused else "")
                )
        return config

    def _run_hooks(
        self,
        target: EnvironmentTarget,
        config: Devcontainer,
        progress: ProgressReporter,
        *,
        previous_port: int | None,
    ) -> None:
        sandbox = self.sandbox
        port = self._app_port(target, config, previous_port=previous_port)
        extras, kit = lent.sandbox_extras(
            sandbox, lend=self._lends_browser(config), own_host="", chromium=self.browser_chromium
        )
        runner = lifecycle.HookRunner(
            env_dir=self._dir(target.id),
            sandbox=sandbox,
            env={**kit, **self._process_env(target, port=port, sandbox=sandbox, config=config)},
            log_path=self._log_path(target.id),
            timeout=self.lifecycle_timeout,
            extras=extras,
        )
        runner.run(config, create=lifecycle.needs_create(self._dir(target.id)), progress=progress)

    def _app_port(
        self, target: EnvironmentTarget, config: Devcontainer | None, *, previous_port: int | None
    ) -> int:
        """The app's $PORT: the first forwarded port in a network of its own, else a free port."""
        taken = frozenset(s.port for s in target.service_sockets)
        wanted = lifecycle.app_port(config, own_network=self.sandbox.own_network, taken=taken)
        return wanted if wanted is not None else processes.free_port(previous_port, avoid=taken)

    def _lends_browser(self, config: Devcontainer | None) -> bool:
        return browser.wanted(self.browser_mode, config.features if config is not None else ())

    def _check_not_in_environments(self, target: EnvironmentTarget) -> None:
        """A service's socket is envhub's own: never in an environment's folder, which its workload writes."""
        inside = [
            s.name
            for s in target.service_sockets
            if Path(s.socket).resolve().is_relative_to(self.root.resolve())
        ]
        if inside:
            raise ValidationFailed(
                f"services {', '.join(inside)}: a service's socket cannot be in an environment's folder",
                details={f"services.{name}": "the socket is in an environment's folder" for name in inside},
            )

    def _keep_previous_output(self, environment_id: int) -> None:
        """The tree before keeps its output (a crash's last words), as a kubelet keeps a restarted
        container's: one previous run, not every one. Done before the new tree's lifecycle hooks,
        whose output belongs with the run they prepare."""
        log_path = self._log_path(environment_id)
        with contextlib.suppress(FileNotFoundError):
            if log_path.stat().st_size:
                previous = self._log_path(environment_id, previous=True)
                log_path.replace(previous)
                launching.times_path(previous).unlink(missing_ok=True)
                launching.times_path(log_path).replace(launching.times_path(previous))

    def _start(
        self,
        target: EnvironmentTarget,
        *,
        previous_port: int | None,
        config: Devcontainer | None = None,
        ended: tuple[int, dict[str, Any]] = (0, {}),
    ) -> processes.ProcessState:
        """Start the tree; ``ended``: its restarts so far and how the last one ended (``exits.after``)."""
        ws = self.workspace_path(target.id)
        ws.mkdir(parents=True, exist_ok=True)
        sandbox = self.sandbox
        port = self._app_port(target, config, previous_port=previous_port)
        forwarded = lifecycle.other_ports(config, app_port=port)
        taken = [*forwarded, *(s.port for s in target.service_sockets)]
        lend = self._lends_browser(config)
        # Served inside only where it is tested: a new listener could take a port the app wants.
        own = browser.own_url_inside(target.public_url, taken=taken) if lend and sandbox.own_network else None
        extras, kit = lent.sandbox_extras(
            sandbox, lend=lend, own_host=own.host if own else "", chromium=self.browser_chromium
        )
        git = git_access.setup(self.git_access, target, own_network=sandbox.own_network)
        env = {**kit, **self._process_env(target, port=port, sandbox=sandbox, config=config), **git.variables}
        log_path = self._log_path(target.id)
        with open_private(log_path, "ab") as handle:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
            handle.write(
                f"--- envhub: starting generation {target.generation} at {stamp} UTC: "
                f"{target.spec.command}\n".encode()
            )
            if sandbox.own_network and not network.nameservers():
                handle.write(b"envhub: the host has no DNS resolver off its loopback to share: no DNS here\n")
        state = launching.start_supervised(
            sandbox=sandbox,
            argv=["/bin/sh", "-c", target.spec.command],
            env=env,
            workspace=ws,
            run_dir=self._run_dir(target.id),
            log_path=log_path,
            port=port,
            generation=target.generation,
            services=target.service_sockets,
            forwarded=forwarded,
            extras=extras,
            own_url_port=own.port if own else None,
            git_credentials=git.relay,
            cgroup=cgroups.place(self.root, target.id),
            exit_path=self._exit_path(target.id),
        )
        # What a shell beside the app is told too: the devcontainer's variables, then envhub's own.
        shared = {**(config.env if config is not None else {}), **target.variables, **git.variables}
        state = dataclasses.replace(
            state,
            variables=shared,
            command=target.spec.command,
            # Kept for inspection already redacted: no new copy of a secret-looking value on disk.
            env={name: redaction.shown_value(name, value).value for name, value in target.spec.env.items()},
            secret_names=sorted(key for key in target.secrets if key not in _WITHHELD),
            browser=lend,
            own_host=own.host if own else "",
            restarts=ended[0],
            last_exit=ended[1],
        )
        processes.write_state(self._state_path(target.id), state)
        return state

    def _endpoint(self, environment_id: int, state: processes.ProcessState) -> Endpoint | None:
        """Where envhub reaches the app: its private socket, or loopback for host-network sandboxes."""
        if state.network == "host":
            return Endpoint("127.0.0.1", state.port)
        path = network.private_socket(self._run_dir(environment_id))
        return Endpoint("127.0.0.1", state.port, unix_socket=path) if path else None

    def _process_env(
        self, target: EnvironmentTarget, *, port: int, sandbox: Sandbox, config: Devcontainer | None = None
    ) -> dict[str, str]:
        home = sandbox.workdir_inside or str(self.workspace_path(target.id))
        # The fetch token is envhub's, not the workload's: code in a pull request never sees it.
        secrets = {key: value for key, value in target.secrets.items() if key not in _WITHHELD}
        # The devcontainer's variables come first: the project's own settings win over the repository's.
        devcontainer = dict(config.env) if config is not None else {}
        return {
            **devcontainer,
            **target.spec.env,
            **secrets,
            "PATH": devcontainer.get("PATH", _BASE_PATH),
            "HOME": home,
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PORT": str(port),
            **target.variables,
        }

    def _wait_healthy(
        self,
        target: EnvironmentTarget,
        state: processes.ProcessState,
        endpoint: Endpoint | None,
        progress: ProgressReporter,
    ) -> None:
        deadline = time.monotonic() + self.health_timeout
        last_beat = 0.0
        while True:
            code = processes.probe_http(endpoint, target.spec.health_path) if endpoint else None
            if code is not None and code < 500:
                return
            if processes.find_process(state) is None:
                tail = processes.tail_lines(self._log_path(target.id), 20)
                raise ProcessExited(
                    "the environment's command exited before it answered on $PORT",
                    details={"command": target.spec.command, "log_tail": "\n".join(tail)},
                )
            if time.monotonic() - last_beat > 1.0:
                progress.heartbeat()
                last_beat = time.monotonic()
            if not processes.wait_until(deadline):
                detail = f"HTTP {code}" if code is not None else "no answer"
                raise NotReady(
                    f"not healthy after {self.health_timeout:.0f}s ({detail} on port {state.port})",
                    details={"port": state.port, "health_path": target.spec.health_path},
                )

    def status(self, environment_id: int) -> RuntimeStatus:
        state = processes.read_state(self._state_path(environment_id))
        if state is None:
            return RuntimeStatus(RuntimeState.absent, "not running")
        if processes.find_process(state) is None:
            return RuntimeStatus(RuntimeState.absent, "process is not running", generation=state.generation)
        endpoint = self._endpoint(environment_id, state)
        code = processes.probe_http(endpoint, "/", timeout=1.0) if endpoint else None
        if code is None:
            return RuntimeStatus(
                RuntimeState.starting, "not answering yet", generation=state.generation, endpoint=endpoint
            )
        return RuntimeStatus(
            RuntimeState.ready,
            "serving",
            generation=state.generation,
            endpoint=endpoint,
            details=_condition_details(state),
        )

    def port_endpoint(self, environment_id: int, port: int) -> Endpoint | None:
        """A forwarded port's own socket (a devcontainer's), in a network of the environment's own."""
        state = processes.read_state(self._state_path(environment_id))
        if (
            state is None
            or state.network == "host"
            or port == state.port
            or processes.find_process(state) is None
        ):
            return None
        path = network.private_socket(self._run_dir(environment_id), network.port_socket_name(port))
        return Endpoint("127.0.0.1", port, unix_socket=path) if path else None

    def endpoint(self, environment_id: int) -> Endpoint | None:
        state = processes.read_state(self._state_path(environment_id))
        if processes.find_process(state) is None or state is None:
            return None
        return self._endpoint(environment_id, state)

    def stop(self, environment_id: int) -> None:
        with self._locked(environment_id):
            state_path = self._state_path(environment_id)
            self._end_tree(environment_id, processes.read_state(state_path))
            state_path.unlink(missing_ok=True)

    def destroy(self, environment_id: int, *, progress: ProgressReporter) -> bool:
        directory = self._dir(environment_id)
        if not directory.exists():
            progress.skip("stop", "nothing running")
            progress.skip("cleanup", "nothing to remove")
            return True
        progress.begin("stop")
        background.stop_all(directory)
        self.stop(environment_id)
        progress.finish("stop", "process tree stopped")
        progress.begin("cleanup")
        workspace.remove(directory)
        progress.finish("cleanup", "workspace removed")
        return True

    def watch(self, handler: StatusHandler, stop: threading.Event) -> None:
        """Poll this machine's process trees (cheap, no network) and report changes.

        A running environment's isolation condition (no network, a sandbox for
        trusted code only) is reported the first time it is seen, so the
        environment page says so; "not running" only once it changes, since
        an environment being created has no process yet.
        """
        last: dict[int, tuple[RuntimeState, str]] = {}
        while not stop.wait(2.0):
            for environment_id in self.managed_environments():
                state = processes.read_state(self._state_path(environment_id))
                running = processes.find_process(state) is not None and state is not None
                current = RuntimeState.ready if running else RuntimeState.absent
                details = _condition_details(state) if running and state is not None else {}
                seen = (current, details.get("condition", ""))
                before = last.get(environment_id)
                if before != seen and (before is not None or seen[1]):
                    fallback = "process is running" if running else "process is not running"
                    message = details.get("message") or fallback
                    handler(environment_id, RuntimeStatus(current, message, details=details))
                last[environment_id] = seen

    def inspect(self, environment_id: int) -> Inspection:
        state = processes.read_state(self._state_path(environment_id))
        proc = processes.find_process(state)
        location = str(self.workspace_path(environment_id))
        if state is None:
            return Inspection(location=location)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.started_at))
        endpoint = self._endpoint(environment_id, state) if proc is not None else None
        container = ContainerInfo(
            name="main",
            state="running" if proc is not None else "terminated",
            ready=endpoint is not None and processes.probe_http(endpoint, "/", timeout=0.5) is not None,
            restarts=state.restarts,
            reason="" if proc is not None else self._how_it_ended(environment_id, state),
            image=state.command,
            last_termination=exits.termination(state.last_exit),
            probes=(ProbeInfo("readiness", f"HTTP GET :{state.port}/", "on each look, timeout 0.5s"),),
            env=_environment(state),
        )
        pod = PodInfo(
            name=f"pid {state.pid} ({launching.describe(state)}, port {state.port})",
            phase="Running" if proc is not None else "Stopped",
            containers=(container,),
            started_at=started,
        )
        return Inspection(pods=(pod,), location=location)

    def _how_it_ended(self, environment_id: int, state: processes.ProcessState) -> str:
        """A stopped tree's state reason, as Kubernetes words a terminated container's."""
        record = exits.read(self._exit_path(environment_id), state.pid)
        if record is not None and record.get("stopped"):
            return "stopped by envhub"
        ended = exits.termination(record) if record is not None else None
        if ended is None or ended.exit_code is None:
            return "exited without a recorded status"
        return f"{ended.reason} (code {ended.exit_code})"

    def usage(self, environment_id: int) -> Usage:
        """The tree's CPU (from the change since the last reading) and memory: from its cgroup, else
        from its process tree, the answer saying which (and why not the cgroup)."""
        state = processes.read_state(self._state_path(environment_id))
        proc = processes.find_process(state)
        if proc is None or state is None:
            return Usage(available=True)  # nothing measured, from no source
        placement = _placement(state)
        measure, source, note = _tree_measure(proc), USAGE_SOURCE, _no_cgroup(state.cgroup_note)
        if placement is not None:
            measure, source, note = _cgroup_measure(placement), cgroups.describe(placement), ""
        try:
            cpu, memory, peak = measure()
        except (OSError, KeyError, ValueError) as exc:  # the cgroup went away under a reading
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            measure, source = _tree_measure(proc), USAGE_SOURCE
            note = _no_cgroup(f"its cgroup could not be read ({why})")
            cpu, memory, peak = measure()
        now = time.monotonic()
        key = (state.pid, source)
        with self._usage_lock:
            last = self._last_usage.get(environment_id)
        if last is not None and last[0] == key and now - last[1] < _MIN_INTERVAL:
            rate = last[3]  # too soon for the kernel's CPU clock to tell: the rate found last
        else:
            if last is None or last[0] != key:
                # No earlier reading of this tree: take a second one a moment later.
                last = (key, now, cpu, 0.0)
                time.sleep(_MIN_INTERVAL)
                cpu, memory, peak = measure()
                now = time.monotonic()
            # A child that exited takes its time along (in a process tree): never below zero.
            rate = max(0.0, cpu - last[2]) / max(now - last[1], 1e-3) * 1000
            with self._usage_lock:
                self._last_usage[environment_id] = (key, now, cpu, rate)
        container = ContainerUsage(
            f"pid {state.pid}", "main", cpu_millicores=rate, memory_bytes=memory, memory_peak_bytes=peak
        )
        return Usage(available=True, containers=(container,), source=source, source_note=note)

    def managed_environments(self) -> set[int]:
        if not self.root.is_dir():
            return set()
        return {int(p.name) for p in self.root.iterdir() if p.is_dir() and p.name.isdigit()}

    def stop_all(self) -> int:
        """Stop every environment's processes (envhub is shutting down); data stays."""
        stopped = 0
        for environment_id in self.managed_environments():
            if processes.find_process(processes.read_state(self._state_path(environment_id))):
                self.stop(environment_id)
                stopped += 1
        return stopped

    def logs(
        self,
        environment_id: int,
        *,
        follow: bool = False,
        tail: int | None = 200,
        container: str | None = None,
        since_seconds: int | None = None,
        until: float | None = None,
        previous: bool = False,
        timestamps: bool = False,
    ) -> Iterator[str]:
        # One process tree per environment, so ``container`` has nothing to pick;
        # the output file has no timestamps to filter ``since_seconds`` by.
        if timestamps:
            return self._stamped_lines(
                environment_id, follow=follow and not previous, tail=tail, previous=previous, until=until
            )
        return self._lines(
            environment_id, follow=follow and not previous, tail=tail, previous=previous, until=until
        )

    def _stamped_lines(
        self, environment_id: int, *, follow: bool, tail: int | None, previous: bool, until: float | None
    ) -> Iterator[str]:
        """The lines with the time the supervisor noted for them (within a second), then, when
        following, new lines with the time they are read."""
        path = self._log_path(environment_id, previous=previous)
        if not path.exists():
            return iter(())
        notes = timing.read_notes(launching.times_path(path))
        if not notes:
            raise Unsupported(
                "this process tree's output has no recorded times (it started before envhub noted "
                "them, or has printed nothing yet), so it cannot show a time range or timestamps",
                hint="Redeploy the environment, or read the last lines without a time range.",
            )
        return self._lines(
            environment_id, follow=follow, tail=tail, previous=previous, until=until, notes=notes
        )

    def _lines(
        self,
        environment_id: int,
        *,
        follow: bool,
        tail: int | None,
        previous: bool,
        until: float | None,
        notes: list[tuple[int, float]] | None = None,
    ) -> Iterator[str]:
        """The last lines, then new ones while following; with ``notes``, each with its time."""
        path = self._log_path(environment_id, previous=previous)
        if not path.exists():
            # Reading must never create anything: a deleted environment stays gone.
            return
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            handle.seek(0, os.SEEK_END)
            if notes is None:
                yield from processes.tail_lines(path, tail or 0)
            else:
                noted = timing.noted_end(launching.times_path(path))
                yield from timing.stamped_tail(path, notes, tail or 0, end=handle.tell(), noted=noted)
            if not follow:
                return
            buffer = ""
            while until is None or time.monotonic() < until:
                chunk = handle.read(65536)
                if not chunk:
                    left = 0.25 if until is None else until - time.monotonic()
                    time.sleep(max(0.0, min(0.25, left)))
                    continue
                buffer += chunk
                *lines, buffer = buffer.split("\n")
                if notes is None:
                    yield from lines
                else:  # read within a quarter of a second of being printed
                    stamp = timing.rfc3339(time.time())
                    yield from (f"{stamp} {line}" for line in lines)

    def exec(
        self,
        environment_id: int,
        command: list[str] | None = None,
        *,
        tty: bool = True,
        container: str | None = None,
    ) -> LocalExecSession:
        """A shell in a sandbox of its own beside the app's, in the app's network namespace.

        So ``curl localhost:$PORT`` reaches the app, and the shell reaches
        nothing the app cannot (see :func:`launching.shell_launch`).
        """
        shell = ["/bin/bash", "-l"] if os.path.exists("/bin/bash") else ["/bin/sh", "-l"]
        launch, ws = self._beside_app(environment_id, command or shell, tty=tty)
        try:
            return LocalExecSession(launch.argv, cwd=str(ws), env=LAUNCHER_ENV, tty=tty, pass_fds=launch.fds)
        finally:
            launch.close()

    def _beside_app(self, environment_id: int, argv: list[str], *, tty: bool) -> tuple[Launch, Path]:
        """The sandboxed launch of ``argv`` beside the app, with the app's variables, and its workspace."""
        ws = self.workspace_path(environment_id)
        if not ws.is_dir():
            raise NotReady("the environment has no workspace yet")
        state = processes.read_state(self._state_path(environment_id))
        sandbox = self.sandbox
        env = {
            "PATH": _BASE_PATH,
            "HOME": sandbox.workdir_inside or str(ws),
            "TERM": "xterm-256color",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }
        extras = Extras()
        if state is not None:
            extras, kit = lent.sandbox_extras(
                sandbox, lend=state.browser, own_host=state.own_host, chromium=self.browser_chromium
            )
            # What the app was started with (project variables, secrets, managed services' URLs),
            # as a shell in a pod has its container's; envhub's own values on top.
            env = {**kit, **app_environment(state), **env, "PORT": str(state.port), **state.variables}
        launch = launching.shell_launch(
            sandbox, state, argv, workspace=ws, env=env, terminal=tty, extras=extras
        )
        return launch, ws

    # Background processes (runtime.base.BackgroundHost), kept in the environment's folder.

    def start_process(self, environment_id: int, key: str, argv: list[str]) -> None:
        launch, ws = self._beside_app(environment_id, argv, tty=False)
        try:
            background.start(self._dir(environment_id), key, launch, cwd=ws, output_limit=self.output_limit)
        finally:
            launch.close()

    def process_state(self, environment_id: int, key: str) -> BackgroundState:
        return background.state(self._dir(environment_id), key)

    def process_output(self, environment_id: int, key: str, offset: int, limit: int) -> ProcessOutputChunk:
        kept = background.output(self._dir(environment_id), key, offset, limit)
        return ProcessOutputChunk(kept.data, kept.offset, kept.size, kept.dropped)

    def stop_process(self, environment_id: int, key: str, grace: float) -> None:
        background.stop(self._dir(environment_id), key, grace)


def default_private_paths(root: Path) -> tuple[Path, ...]:
    """envhub's data folder (``root``'s parent), its install folder and its virtualenv."""
    paths = [root.parent, PROJECT_ROOT]
    if sys.prefix != sys.base_prefix:
        paths.append(Path(sys.prefix))
    return tuple(paths)


def _relayed(target: EnvironmentTarget, state: processes.ProcessState) -> str:
    """The services a start relays, for its step detail."""
    if not target.service_sockets:
        return ""
    if state.network == "host":  # trusted-code sandboxes: 127.0.0.1 is the host's, not the environment's
        return "; services not relayed (the host's network is shared)"
    listed = ", ".join(f"{s.name} on 127.0.0.1:{s.port}" for s in target.service_sockets)
    return f"; services: {listed}"


def _environment(state: processes.ProcessState) -> tuple[EnvVarInfo, ...]:
    """What the app was started with: the project's variables, its secrets (by name), envhub's own."""
    rows = [EnvVarInfo(name, value) for name, value in state.env.items()]
    rows += [
        EnvVarInfo(name, source="secret", reference=f"project secret {name}") for name in state.secret_names
    ]
    rows.append(EnvVarInfo("PORT", str(state.port)))
    rows += [EnvVarInfo(name, value) for name, value in state.variables.items()]
    return tuple(rows)


def _placement(state: processes.ProcessState) -> cgroups.Placement | None:
    if not (state.cgroup_cpu and state.cgroup_memory):
        return None
    return cgroups.Placement(cpu=state.cgroup_cpu, memory=state.cgroup_memory)


Measure = Callable[[], tuple[float, int, "int | None"]]  # CPU seconds, memory bytes, peak bytes


def _cgroup_measure(placement: cgroups.Placement) -> Measure:
    def measure() -> tuple[float, int, int | None]:
        reading = cgroups.read(placement)
        return reading.cpu_seconds, reading.memory_bytes, reading.memory_peak_bytes

    return measure


def _tree_measure(proc: psutil.Process) -> Measure:
    def measure() -> tuple[float, int, int | None]:
        cpu, memory = processes.tree_usage(proc)
        return cpu, memory, None

    return measure


def _no_cgroup(why: str) -> str:
    reason = why or "it started before envhub gave each environment a cgroup; redeploy it to measure one"
    return f"No cgroup for this environment: {reason}. Processes that already exited are not counted."


def _condition_details(state: processes.ProcessState | None) -> dict[str, str]:
    found = launching.condition(state) if state is not None else None
    return {"condition": found[0], "message": found[1]} if found else {}


_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Set per process by the sandbox or the shell itself, never carried over from the app's.
_PER_PROCESS = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "TERM", "HOME", "PATH", "LANG"})


def app_environment(state: processes.ProcessState) -> dict[str, str]:
    """The environment the running app was started with; empty when it is not running.

    Read from the kernel (``/proc/<pid>/environ``) of the recorded process or,
    under bubblewrap, of the sandboxed program below it: the first one that
    carries envhub's ``ENVHUB_ENVIRONMENT``. Nothing of it is kept on disk.
    """
    root = processes.find_process(state)
    if root is None:
        return {}
    try:
        candidates = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}
    for candidate in candidates:
        try:
            found = candidate.environ()
        except psutil.Error:
            continue
        if "ENVHUB_ENVIRONMENT" in found:
            return {
                key: value
                for key, value in found.items()
                if _VARIABLE_NAME.fullmatch(key) and key not in _PER_PROCESS and "\0" not in value
            }
    return {}
