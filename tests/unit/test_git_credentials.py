"""Git credentials inside environments: the identity, git's configuration, the helper and its relay.

The helper (``git_credential_helper.py``) is run as git runs it, against a
real socket standing for the relay; the relay's own parsing and answering
(``git_relay.py``) are checked on git's wire format, and its identities
verify with the domain's rules (the two sides share no code).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from envhub.domain import git_credentials as rules
from envhub.runtime.local import git_relay
from envhub.runtime.local.sandbox import GIT_HELPER

KEY = rules.environment_key(b"s" * 32, 7, "acme", "shop", "pr-1")


def test_an_identity_verifies_for_its_environment_only_and_only_for_a_minute() -> None:
    now = time.time()
    identity = rules.mint_identity(KEY, 7, now)
    assert rules.claimed_environment(identity) == 7
    assert rules.verify_identity(KEY, identity, now)
    assert not rules.verify_identity(KEY, identity, now + rules.IDENTITY_TTL + 31)  # expired
    other = rules.environment_key(b"s" * 32, 7, "acme", "shop", "pr-2")  # same id, another environment
    assert not rules.verify_identity(other, identity, now)
    forged = identity.replace("ehe_7.", "ehe_8.")
    assert rules.claimed_environment(forged) == 8
    assert not rules.verify_identity(KEY, forged, now)
    far = rules.mint_identity(KEY, 7, now, ttl=3600)  # a long-lived one is refused even if signed
    assert not rules.verify_identity(KEY, far, now)
    for junk in ("", "ehe_", "ehp_abc", "ehe_7.1.2", "ehe_x.1." + "0" * 64):
        assert rules.claimed_environment(junk) is None
        assert not rules.verify_identity(KEY, junk, now)


def test_the_relay_mints_identities_the_domain_accepts() -> None:
    now = time.time()
    assert rules.verify_identity(KEY, git_relay.identity(KEY, 7, now), now)


def test_git_is_told_to_ask_envhub_for_the_repository_origin_only() -> None:
    assert rules.origin_of("https://GitHub.com/acme/shop") == "https://github.com"
    assert rules.origin_of("http://ghe.example:8080/acme/shop") == "http://ghe.example:8080"
    assert rules.same_origin("https", "github.com", "https://github.com")
    assert not rules.same_origin("https", "gitlab.com", "https://github.com")
    assert not rules.same_origin("http", "github.com", "https://github.com")
    variables = rules.git_config_variables("https://github.com", "/etc/envhub/h 1023")
    assert variables == {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "credential.https://github.com.helper",
        "GIT_CONFIG_VALUE_0": "",  # forget helpers configured elsewhere for this origin
        "GIT_CONFIG_KEY_1": "credential.https://github.com.helper",
        "GIT_CONFIG_VALUE_1": "/etc/envhub/h 1023",
    }


def test_the_relay_reads_git_requests_and_writes_git_answers() -> None:
    request = (
        b"protocol=https\nhost=github.com\npath=acme/shop.git\nwwwauth[]=Basic\nusername=x\n\nhost=evil\n"
    )
    assert git_relay.parse_request(request) == {
        "protocol": "https",
        "host": "github.com",
        "path": "acme/shop.git",
    }
    answer = {"username": "x-access-token", "password": "ghs_abc", "password_expiry_utc": 1700000000}
    assert git_relay.answer_lines(answer) == (
        b"username=x-access-token\npassword=ghs_abc\npassword_expiry_utc=1700000000\n"
    )
    # A value that would smuggle another line into git's input is left out.
    assert git_relay.answer_lines({"username": "a\nhost=evil", "password": "p"}) == b"password=p\n"
    assert git_relay.error_line("no\nway  here") == b"error=no way here\n"


@pytest.fixture
def relay() -> Iterator[tuple[int, list[bytes], list[bytes]]]:
    """A socket standing for the relay: records what the helper sent, answers the next queued reply."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []
    replies: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
                seen.append(data)
                conn.sendall(replies.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], seen, replies
    listener.close()


def _helper(port: int, action: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    # As git runs it: the configured value, then the action, through the shell.
    command = f"{sys.executable} {GIT_HELPER} {port} {action}"
    return subprocess.run(["sh", "-c", command], input=stdin, capture_output=True, timeout=30, check=False)


def test_the_helper_passes_git_request_on_and_prints_the_answer(
    relay: tuple[int, list[bytes], list[bytes]],
) -> None:
    port, seen, replies = relay
    replies.append(b"username=x-access-token\npassword=ghs_abc\npassword_expiry_utc=1700000000\n")
    done = _helper(port, "get", b"protocol=https\nhost=github.com\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"username=x-access-token\npassword=ghs_abc\npassword_expiry_utc=1700000000\n"
    assert seen == [b"protocol=https\nhost=github.com\n\n"]

    replies.append(b"error=project 'shop' is connected with a token (github_app_required).\n")
    refused = _helper(port, "get", b"protocol=https\nhost=github.com\n")
    assert refused.returncode == 1
    assert refused.stdout == b""
    assert b"github_app_required" in refused.stderr


def test_the_helper_stores_and_erases_nothing_and_says_when_envhub_is_unreachable() -> None:
    for action in ("store", "erase"):
        done = _helper(1, action, b"protocol=https\nhost=github.com\npassword=ghs_abc\n")
        assert (done.returncode, done.stdout) == (0, b"")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        closed_port = taken.getsockname()[1]
    lost = _helper(closed_port, "get", b"protocol=https\nhost=github.com\n")
    assert lost.returncode == 1
    assert b"cannot reach envhub" in lost.stderr
