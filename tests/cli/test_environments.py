"""``envhub projects`` and ``envhub env``: the real command against a running envhub and real workers.

The server is the production app under Granian (tests/cli/conftest.py); the
workers are real ``envhub.launcher worker`` processes on the local runtime
(tests/support/workers.py) taking jobs from the server's queue.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pexpect
import pytest
from sqlmodel import Session, select

from envhub.domain.devcontainer import parse
from envhub.domain.phases import Phase
from envhub.models import Environment, Project
from envhub.services.projects import create_project
from tests.cli.conftest import Cli
from tests.cli.proxy import answer_lost
from tests.support.waiting import wait_for
from tests.support.workers import Workers
from tests.support.world import World
from tests.terminal.harness import People

pytestmark = pytest.mark.slow

WRITER = ("read", "write", "shell")
ROW_KEYS = {"id", "name", "project", "team", "phase", "kind", "trigger", "url", "creator", "created_at"}


def signed_in(
    people: People, server: str, person: object, scopes: tuple[str, ...] = WRITER
) -> dict[str, str]:
    credential = people.token(person, scopes)  # type: ignore[arg-type]
    return {"ENVHUB_SERVER": server, "ENVHUB_TOKEN": credential.headers["Authorization"][7:]}


def on_a_terminal(cli: Cli, env: dict[str, str], *args: str) -> pexpect.spawn:
    """The command on a real pseudo-terminal, colour off (rich still draws its live display)."""
    return pexpect.spawn(
        str(cli.path), list(args), env=cli.environ(**env, NO_COLOR="1"), dimensions=(30, 120),
        timeout=60, encoding="utf-8",
    )  # fmt: skip


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_to_end(spawned: pexpect.spawn) -> tuple[int | None, str, str]:
    """Wait for the command to end: its status, its raw output, and that output without escapes."""
    spawned.expect(pexpect.EOF)
    spawned.close()
    raw = str(spawned.before)
    return spawned.exitstatus, raw, ANSI.sub("", raw)


def as_json(done: subprocess.CompletedProcess[str]) -> object:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def error_of(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    # The last line: with -o json, progress lines may come first on stderr.
    error: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])["error"]
    return error


def test_projects_are_created_and_listed_across_pages(
    cli: Cli, server: str, people: People, session: Session, world: World, project: Project
) -> None:
    owner = signed_in(people, server, world.owner)
    made = cli(
        "projects", "create", "web", "--team", "acme", "--command", "python3 -m http.server $PORT",
        "-e", "A=1", "-o", "json", **owner,
    )  # fmt: skip
    created = as_json(made)
    assert isinstance(created, dict)
    assert (created["name"], created["team_id"], created["command"]) == (
        "web",
        world.acme,
        "python3 -m http.server $PORT",
    )

    # More projects than one page of the API holds: every page is followed.
    for number in range(201):
        create_project(session=session, actor=world.owner, team_id=world.acme, name=f"p{number:03d}")
    listed = as_json(cli("projects", "ls", "-o", "json", **owner, timeout=180))
    assert isinstance(listed, list)
    names = [row["name"] for row in listed]
    assert len(names) == 203
    assert len(set(names)) == 203
    assert {"web", "shop", "p000", "p200"} <= set(names)
    assert set(listed[0]) == {"id", "name", "team", "description", "repo", "environments", "created_at"}
    assert len(as_json(cli("projects", "ls", "--limit", "5", "-o", "json", **owner))) == 5  # type: ignore[arg-type]
    table = cli("projects", "ls", "--search", "web", **owner)
    assert table.returncode == 0, table.stderr
    assert "NAME" in table.stdout
    assert "web" in table.stdout
    assert "p000" not in table.stdout

    viewer = cli(
        "projects",
        "create",
        "nope",
        "--team",
        "acme",
        "-o",
        "json",
        **signed_in(people, server, world.viewer),
    )
    assert viewer.returncode == 4
    assert error_of(viewer)["code"] == "forbidden"
    unknown = cli("projects", "create", "nope", "--team", "initech", **owner)
    assert unknown.returncode == 5
    assert "not_found" in unknown.stderr
    assert "next" in unknown.stderr
    bad = cli("projects", "create", "web2", "--team", "acme", "-e", "NOEQUALS", **owner)
    assert (bad.returncode, "validation_failed" in bad.stderr) == (7, True)


def test_a_projects_url_access_is_set_changed_and_shown(
    cli: Cli, server: str, people: People, world: World, project: Project
) -> None:
    owner = signed_in(people, server, world.owner)
    created = as_json(
        cli(
            "projects",
            "create",
            "intranet",
            "--team",
            "acme",
            "--url-access",
            "sign-in",
            "-o",
            "json",
            **owner,
        )
    )
    assert isinstance(created, dict)
    assert created["url_access"] == "sign_in"
    shown = cli("projects", "show", "shop", **owner)
    assert shown.returncode == 0, shown.stderr
    assert "url access" in shown.stdout
    assert "public (Anyone with the link)" in shown.stdout
    changed = cli("projects", "update", "shop", "--url-access", "sign_in", **owner)
    assert changed.returncode == 0, changed.stderr
    assert "sign_in (People signed in to envhub who can see the environment)" in changed.stdout
    header = as_json(cli("projects", "show", str(project.id), "-o", "json", **owner))
    assert isinstance(header, dict)
    assert header["url_access"] == "sign_in"
    wrong = cli("projects", "update", "shop", "--url-access", "private", **owner)
    assert wrong.returncode == 2  # refused by the command line itself, with the choices
    assert "public" in wrong.stderr
    assert "sign-in" in wrong.stderr
    nothing = cli("projects", "update", "shop", **owner)
    assert (nothing.returncode, "validation_failed" in nothing.stderr) == (7, True)


def test_an_environment_is_created_watched_read_redeployed_and_deleted(
    cli: Cli, server: str, people: People, world: World, project: Project, workers: Workers, tmp_path: Path
) -> None:
    workers.start()
    owner = signed_in(people, server, world.owner, (*WRITER, "admin"))  # deleting needs the admin scope
    created = cli(
        "env", "create", "shop", "review", "-e", "GREETING=hello-from-cli",
        "--command", "echo $GREETING; python3 -m http.server $PORT", "--wait", "--timeout", "120",
        **owner, timeout=180,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr + workers.log_tail()
    # Not a terminal: one plain line per change, then where it serves.
    assert "review is pending" in created.stdout or "review is provisioning" in created.stdout
    assert "done" in created.stdout
    assert "review (id " in created.stdout
    assert ") is ready at http://review.shop.acme." in created.stdout

    # On a terminal: a live table of the job's steps, each marked as it finishes.
    status, raw, seen = run_to_end(on_a_terminal(cli, owner, "env", "wait", "shop/review"))
    assert status == 0, seen
    assert "\x1b[?25l" in raw  # rich's live display (it hides the cursor while drawing)
    assert "review is ready" in seen
    assert "✓" in seen
    assert re.search(r"(\d+)/\1 steps", seen)  # the progress bar, full
    assert "review is ready at http://review.shop.acme." in seen

    status = as_json(cli("env", "status", "shop/review", "-o", "json", **owner))
    assert isinstance(status, dict)
    detail = status["detail"]
    assert detail["phase"] == "ready"
    assert detail["url"].startswith("http://review.shop.acme.")
    assert status["steps"]
    assert {step["status"] for step in status["steps"]} <= {"done", "skipped"}
    env_id = str(detail["id"])
    by_id = as_json(cli("env", "status", env_id, "-o", "json", **owner))
    assert isinstance(by_id, dict)
    assert by_id["detail"]["id"] == detail["id"]
    text = cli("env", "status", "shop/review", **owner)
    assert "phase" in text.stdout
    assert "ready" in text.stdout

    url = cli("env", "url", "shop/review", **owner)
    assert url.returncode == 0
    assert url.stdout == detail["url"] + "\n"
    assert as_json(cli("env", "url", env_id, "-o", "json", **owner)) == {"url": detail["url"]}
    opened = cli("env", "open", "shop/review", **owner)  # no browser here: it prints the address
    assert (opened.returncode, opened.stdout) == (0, detail["url"] + "\n")

    listed = as_json(cli("env", "ls", "--project", "shop", "-o", "json", **owner))
    assert isinstance(listed, list)
    [row] = [r for r in listed if r["name"] == "review"]
    assert set(row) == ROW_KEYS
    assert (row["project"], row["team"], row["phase"], row["trigger"], row["creator"]) == (
        "shop", "acme", "ready", "manual", "olivia",
    )  # fmt: skip
    assert as_json(cli("env", "ls", "-p", "shop", "--phase", "failed", "-o", "json", **owner)) == []
    assert as_json(cli("env", "ls", "-p", "shop", "--creator", "max", "-o", "json", **owner)) == []
    table = cli("env", "ls", "-p", str(project.id), "--search", "rev", **owner)
    assert "PHASE" in table.stdout
    assert "review" in table.stdout

    # The workers reconcile every half second here, and each pass's health probe is a line of the
    # app's log (http.server logs every request): the tail is long enough for a loaded machine.
    logs = wait_for(
        lambda: (
            (done := cli("env", "logs", "shop/review", "--tail", "2000", **owner)).returncode == 0
            and "hello-from-cli" in done.stdout
            and done
        ),
        timeout=30,
        what="the environment's output",
        describe=lambda: (
            cli("env", "logs", "shop/review", "--tail", "2000", **owner).stdout + workers.log_tail()
        ),
    )
    assert logs
    lines = as_json(cli("env", "logs", env_id, "-o", "json", **owner))["lines"]  # type: ignore[index]
    assert "hello-from-cli" in lines
    assert lines[0].startswith("--- envhub: starting generation 1")
    # The server searches; --save keeps every line that passes in a file.
    grepped = cli("env", "logs", env_id, "--grep", "HELLO-FROM-CLI", "-i", **owner).stdout.splitlines()
    assert "hello-from-cli" in grepped
    assert all("hello-from-cli" in line for line in grepped)
    saved = tmp_path / "review.log"
    answer = as_json(cli("env", "logs", env_id, "--save", str(saved), "-o", "json", **owner))
    assert answer == {
        "saved": str(saved),
        "lines": len(saved.read_text().splitlines()),
        "bytes": saved.stat().st_size,
    }
    assert "hello-from-cli" in saved.read_text().splitlines()
    # What it uses, as kubectl top prints it, and from where: the local runtime measures the
    # environment's cgroup (root here), with the memory peak the kernel keeps.
    top = cli("env", "top", "shop/review", **owner)
    assert top.returncode == 0, top.stderr
    assert top.stdout.split()[:7] == ["POD", "CONTAINER", "CPU", "MEMORY", "REQUESTS", "LIMITS", "PEAK"]
    assert "Measured from cgroup v" in top.stdout
    [row] = as_json(cli("env", "top", env_id, "-o", "json", **owner))["rows"]  # type: ignore[index]
    assert row["container"] == "main"
    assert row["memory_bytes"] > 0
    assert row["memory_peak"].endswith("Mi")
    # Its hours this month: running since it was provisioned, no prices set so no cost.
    cost = cli("env", "cost", "shop/review", **owner)
    assert cost.returncode == 0, cost.stderr
    assert "h running" in cost.stdout
    assert "No prices are set" in cost.stdout
    spent = as_json(cli("env", "cost", env_id, "--window", "30d", "-o", "json", **owner))
    assert spent["window"] == "30d"  # type: ignore[index]
    assert spent["figures"]["running_hours"] > 0  # type: ignore[index]
    assert spent["figures"]["cost"] is None  # type: ignore[index]
    team = cli("usage", "acme", **owner)
    assert team.returncode == 0, team.stderr
    assert "review" in team.stdout
    recent = cli("env", "logs", env_id, "--since", "15m", "--timestamps", **owner)
    assert recent.returncode == 0, recent.stderr
    assert any(re.fullmatch(r"\S+Z hello-from-cli", line) for line in recent.stdout.splitlines())

    # -f streams until Ctrl-C, which ends it with 130.
    follower = subprocess.Popen(
        [str(cli.path), "env", "logs", "shop/review", "-f", "-o", "json"],
        env=cli.environ(**owner),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        streamed = [json.loads(follower.stdout.readline())["line"] for _ in range(len(lines))]
        assert "hello-from-cli" in streamed
        time.sleep(0.5)
        follower.send_signal(signal.SIGINT)
        assert follower.wait(30) == 130
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()

    redeployed = cli("env", "redeploy", "shop/review", "--wait", "-o", "json", **owner, timeout=180)
    answer = as_json(redeployed)
    assert isinstance(answer, dict)
    assert answer["environment"]["phase"] == "ready"
    assert answer["job_id"]
    assert "ready" in redeployed.stderr  # progress goes to stderr when stdout is JSON
    assert as_json(cli("env", "status", env_id, "-o", "json", **owner))["run"]["kind"] == "redeploy"  # type: ignore[index]

    # A failure ends the wait with the environment's own code and advice, exit status 1.
    broken = cli(
        "env", "create", "shop", "broken", "--command", "exit 3", "--wait", "-o", "json", **owner, timeout=180
    )
    assert broken.returncode == 1, broken.stdout + broken.stderr
    failure = error_of(broken)
    assert failure["code"] not in ("", "wait_timed_out")
    assert "broken failed" in str(failure["message"])
    assert failure["hint"]

    unconfirmed = cli("env", "delete", "shop/review", **owner)  # no terminal to ask on
    assert unconfirmed.returncode == 2
    assert "confirmation_required" in unconfirmed.stderr
    deleted = cli("env", "delete", "shop/review", "--yes", "--wait", **owner, timeout=180)
    assert deleted.returncode == 0, deleted.stderr + workers.log_tail()
    assert "is deleted" in deleted.stdout
    gone = as_json(cli("env", "status", env_id, "-o", "json", **owner))
    assert isinstance(gone, dict)
    assert gone["detail"]["phase"] == "deleted"
    missing = cli("env", "url", "shop/review", **owner)
    assert missing.returncode == 5
    assert "not_found" in missing.stderr


def test_errors_print_the_code_and_next_step_and_exit_by_class(
    cli: Cli, server: str, people: People, world: World, environment: Environment
) -> None:
    owner = signed_in(people, server, world.owner)
    for ref in ("shop/nope", "nope/dev", "999999", "no-slash"):
        done = cli("env", "status", ref, **owner)
        assert done.returncode == 5, (ref, done.stderr)
        assert "not_found" in done.stderr
        assert "next" in done.stderr
    as_data = cli("env", "status", "999999", "-o", "json", **owner)
    assert (as_data.returncode, error_of(as_data)["code"], as_data.stdout) == (5, "not_found", "")

    stranger = cli(
        "env", "status", str(environment.id), "-o", "json", **signed_in(people, server, world.outsider)
    )
    assert (stranger.returncode, error_of(stranger)["code"]) == (5, "not_found")
    viewer = signed_in(people, server, world.viewer)
    assert as_json(cli("env", "status", "shop/dev", "-o", "json", **viewer))["detail"]["name"] == "dev"  # type: ignore[index]
    refused = cli("env", "redeploy", "shop/dev", "-o", "json", **viewer)
    assert (refused.returncode, error_of(refused)["code"]) == (4, "forbidden")
    read_only = cli("env", "delete", "shop/dev", "--yes", **signed_in(people, server, world.owner, ("read",)))
    assert read_only.returncode == 4
    assert "forbidden" in read_only.stderr

    # shell, exec and kubeconfig take project/name too.
    by_name = cli("exec", "shop/dev", "--", "echo", "by-name", **owner)
    assert (by_name.returncode, by_name.stdout) == (0, "by-name\n")
    unknown = cli("exec", "shop/nope", "--", "true", **owner)
    assert unknown.returncode == 255  # exec's own failures are 255, as ssh's
    assert "not_found" in unknown.stderr

    # On the local runtime kubeconfig is not supported: the name resolved, the runtime refused.
    kube = cli("kubeconfig", "shop/dev", "--output-file", "/dev/null", "-o", "json", **owner)
    assert (kube.returncode, error_of(kube)["code"]) == (10, "not_supported")

    no_url = cli("env", "url", "shop/dev", "-o", "json", **owner)  # pending: nothing serves yet
    assert (no_url.returncode, error_of(no_url)["code"]) == (8, "not_ready")
    nobody = cli("env", "ls", "-p", "shop", ENVHUB_SERVER=server)
    assert nobody.returncode == 3
    assert "not_signed_in" in nobody.stderr


def test_an_idempotency_key_sent_twice_makes_one_environment(
    cli: Cli, server: str, people: People, session: Session, world: World, project: Project
) -> None:
    owner = signed_in(people, server, world.member)
    command = ("env", "create", "shop", "retry", "--idempotency-key", "k-123", "-o", "json")
    first = as_json(cli(*command, **owner))
    again = as_json(cli(*command, **owner))
    assert isinstance(first, dict)
    assert isinstance(again, dict)
    assert first["environment"]["id"] == again["environment"]["id"]
    assert (first["replayed"], again["replayed"]) == (False, True)
    session.expire_all()
    made = session.exec(select(Environment).where(Environment.project_id == project.id)).all()
    assert [e.name for e in made] == ["retry"]

    # The answer to a create is lost on the way back: the command sends it again with
    # the same key and gets the first answer, not a second environment.
    with answer_lost(server) as lossy:
        retried = cli(
            "env", "create", "shop", "lost-answer", "-o", "json", **{**owner, "ENVHUB_SERVER": lossy.url}
        )
        answer = as_json(retried)
        assert isinstance(answer, dict)
        assert answer["replayed"] is True
        assert lossy.lost == 1
        assert len(lossy.keys) == 2
        assert lossy.keys[0] == lossy.keys[1] != ""
    session.expire_all()
    made = session.exec(select(Environment).where(Environment.project_id == project.id)).all()
    assert sorted(e.name for e in made) == ["lost-answer", "retry"]

    # Without a key each command is its own create: the name is taken the second time.
    other = cli("env", "create", "shop", "retry", **owner)
    assert other.returncode == 6
    assert "conflict" in other.stderr


def test_on_a_terminal_a_wait_is_drawn_live_and_a_delete_asks_first(
    cli: Cli, server: str, people: People, session: Session, world: World, environment: Environment
) -> None:
    owner = signed_in(people, server, world.owner, (*WRITER, "admin"))
    status, raw, seen = run_to_end(on_a_terminal(cli, owner, "env", "wait", "shop/dev", "--timeout", "1"))
    assert status == 9, seen  # timed out: no worker takes its job here
    assert "\x1b[?25l" in raw
    assert "dev is pending" in seen
    assert "wait_timed_out" in seen

    refused = on_a_terminal(cli, owner, "env", "delete", "shop/dev")
    refused.expect_exact(f"Delete dev (id {environment.id})? [y/N]:")
    refused.sendline("n")
    refused.expect(pexpect.EOF)
    refused.close()
    assert refused.exitstatus == 1
    session.expire_all()
    assert session.get(Environment, environment.id).desired_state == "present"  # type: ignore[union-attr]

    confirmed = on_a_terminal(cli, owner, "env", "delete", "shop/dev")
    confirmed.expect_exact("[y/N]:")
    confirmed.sendline("y")
    status, _, seen = run_to_end(confirmed)
    assert status == 0, seen
    assert "Deleting dev" in seen
    session.expire_all()
    assert session.get(Environment, environment.id).desired_state == "absent"  # type: ignore[union-attr]


def test_shell_completion_offers_commands_projects_and_environments(
    cli: Cli, server: str, people: People, world: World, environment: Environment
) -> None:
    owner = signed_in(people, server, world.member)

    def complete(*words: str) -> list[str]:
        line = " ".join(("envhub", *words))
        done = cli(_ENVHUB_COMPLETE="complete_bash", COMP_WORDS=line, COMP_CWORD=str(len(words)), **owner)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert {"ls", "create", "status", "wait", "delete", "logs"} <= set(complete("env", ""))
    assert complete("env", "status", "sh") == ["shop/"]
    assert complete("env", "status", "shop/") == ["shop/dev"]
    assert complete("exec", "shop/d") == ["shop/dev"]
    assert complete("env", "status", "nope/") == []  # silent when there is nothing to offer


def test_env_status_shows_the_devcontainer_its_ports_and_what_was_not_honoured(
    cli: Cli, server: str, people: People, world: World, environment: Environment, session: Session
) -> None:
    # What a deploy records (the runtime's summary of the repository's configuration).
    config = parse(
        '{"forwardPorts": [3000], "portsAttributes": {"3000": {"label": "Web"}}, "privileged": true,'
        ' "[link=https://evil.example]x[/link]": 1}',
        path=".devcontainer/devcontainer.json",
    )
    environment.devcontainer = config.summary()
    session.add(environment)
    session.commit()
    owner = signed_in(people, server, world.owner)
    text = cli("env", "status", "shop/dev", **owner)
    assert text.returncode == 0, text.stderr
    assert ".devcontainer/devcontainer.json" in text.stdout
    assert re.search(r"port 3000 \(Web\)\s+no public URL", text.stdout)
    assert re.search(r"not honoured: privileged\s+privileged containers would escape", text.stdout)
    # The repository's text is printed as it is, never read as markup.
    assert "not honoured: [link=https://evil.example]x[/link]" in text.stdout
    data = as_json(cli("env", "status", "shop/dev", "-o", "json", **owner))
    assert data["detail"]["devcontainer_unsupported"][0]["key"] == "privileged"  # type: ignore[index]


def test_idle_settings_pin_sleep_and_wake_from_the_command(
    cli: Cli, server: str, people: People, session: Session, world: World, project: Project
) -> None:
    member, owner = signed_in(people, server, world.member), signed_in(people, server, world.owner)
    changed = cli("projects", "update", "shop", "--sleep-after", "30", "--ttl", "72", **owner)
    assert changed.returncode == 0, changed.stderr
    assert "Development environments sleep after 30 min idle and are deleted after 3 d idle" in changed.stdout
    env = Environment(project_id=project.id or 0, name="dozy", phase=Phase.ready)
    session.add(env)
    session.commit()
    pinned = cli("env", "pin", "shop/dozy", **member)
    assert pinned.returncode == 0, pinned.stderr
    assert "is pinned: it neither sleeps nor expires" in pinned.stdout
    unpinned = as_json(cli("env", "unpin", "shop/dozy", "-o", "json", **member))
    assert isinstance(unpinned, dict)
    assert (unpinned["pinned"], unpinned["sleeps"].startswith("in "), unpinned["expires"] != "") == (
        False,
        True,
        True,
    )
    asleep = cli("env", "sleep", "shop/dozy", **member)
    assert asleep.returncode == 0, asleep.stderr
    assert "Putting to sleep dozy" in asleep.stdout
    refused = cli("env", "wake", "shop/dozy", "-o", "json", **member)  # ready, a sleep on its way: no error
    assert refused.returncode == 0, refused.stderr
    viewer = cli("env", "sleep", "shop/dozy", **signed_in(people, server, world.viewer, ("read",)))
    assert viewer.returncode != 0
