"""Namespace names: DNS-safe, at most 63 characters, deterministic, never shared."""

from __future__ import annotations

import itertools
import re

import pytest

from envhub.domain.kube import is_namespace_of, namespace_for, namespace_name
from envhub.domain.naming import validate_label

from .conftest import make_target

LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_short_names_are_readable() -> None:
    name = namespace_name(team="acme", project="shop", environment="dev-swift-otter", environment_id=42)
    assert name == "envhub-acme-shop-dev-swift-otter-42"


def test_long_names_are_cut_hashed_and_keep_the_id() -> None:
    long = "x" * 63
    name = namespace_name(team=long, project=long, environment=long, environment_id=9_876_543_210)
    assert len(name) == 63
    assert LABEL.match(name)
    assert name.endswith("-9876543210")
    assert validate_label(name) == name


def test_deterministic() -> None:
    target = make_target({})
    assert (
        namespace_for(target)
        == namespace_for(target)
        == namespace_name(team="acme", project="shop", environment="dev-swift-otter", environment_id=42)
    )


def test_a_recreated_environment_gets_a_new_namespace() -> None:
    names = {
        namespace_name(team="t", project="p", environment="dev", environment_id=i) for i in range(1, 200)
    }
    assert len(names) == 199


def test_different_inputs_never_collide() -> None:
    long = "a" * 40
    parts = ["a", "a-b", "b", long, long + "b", long[:-1] + "c"]
    seen: dict[str, tuple[str, str, str, int]] = {}
    for team, project, environment in itertools.product(parts, repeat=3):
        for env_id in (1, 12, 123456789):
            name = namespace_name(team=team, project=project, environment=environment, environment_id=env_id)
            assert len(name) <= 63, name
            assert LABEL.match(name), name
            key = (team, project, environment, env_id)
            # Only the same environment id may share a name, and then only when
            # the readable part is ambiguous ("a-b"+"c" vs "a"+"b-c"): one id is one environment.
            other = seen.setdefault(name, key)
            assert other == key or other[3] == env_id, (name, other, key)


def test_long_names_differing_only_at_the_end_differ() -> None:
    base = "team-" + "y" * 50
    one = namespace_name(team=base, project="p", environment="env-one", environment_id=5)
    two = namespace_name(team=base, project="p", environment="env-two", environment_id=5)
    assert one != two


def test_the_prefix_is_configurable_and_ids_must_be_sane() -> None:
    assert (
        namespace_name(team="t", project="p", environment="e", environment_id=1, prefix="dev")
        == "dev-t-p-e-1"
    )
    with pytest.raises(ValueError, match="negative"):
        namespace_name(team="t", project="p", environment="e", environment_id=-1)


def test_every_name_envhub_gives_is_recognised_as_that_environments_only() -> None:
    long = "x" * 63
    for team, project, environment, env_id in [("acme", "shop", "dev", 7), (long, long, long, 9_876_543_210)]:
        name = namespace_name(team=team, project=project, environment=environment, environment_id=env_id)
        assert is_namespace_of(name, env_id)
        assert not is_namespace_of(name, env_id + 1)
    # Labels can be put on any namespace; these names are never envhub's.
    for decoy in ("aaa-decoy-7", "kube-system", "envhub-7", "envhub", "team-envhub-shop-7", "envhub-shop-17"):
        assert not is_namespace_of(decoy, 7), decoy
