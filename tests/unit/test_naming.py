"""DNS-safe names: validation, scoping and generated names."""

from __future__ import annotations

import itertools
import re

import pytest

from envhub.domain.naming import (
    DNS_LABEL_MAX,
    generate_environment_name,
    local_host,
    scoped_name,
    suggest_label,
    validate_label,
)
from envhub.errors import InvalidName, ValidationFailed

LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize("value", ["a", "0", "a-b", "web", "pr-1234", "a" * DNS_LABEL_MAX, "1a", "a--b"])
def test_valid_labels_are_returned_unchanged(value: str) -> None:
    assert validate_label(value) == value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "must not be empty"),
        ("Web", "must be lower-case"),
        ("ALLCAPS", "must be lower-case"),
        ("a" * (DNS_LABEL_MAX + 1), "maximum is 63"),
        ("-web", "must start and end"),
        ("web-", "must start and end"),
        ("-", "must start and end"),
        ("we_b", "may contain only"),
        ("we.b", "may contain only"),
        ("we b", "may contain only"),
        ("café", "may contain only"),
        ("web\n", "may contain only"),
    ],
)
def test_invalid_labels_raise_invalid_name(value: str, fragment: str) -> None:
    with pytest.raises(InvalidName) as caught:
        validate_label(value, field="environment name")
    error = caught.value
    assert error.code == "invalid_name"
    assert isinstance(error, ValidationFailed)
    assert fragment in error.message
    assert error.message.startswith("environment name")
    assert error.details["field"] == "environment name"
    assert error.hint  # tells the person what a valid name looks like


def test_too_long_message_gives_the_length() -> None:
    with pytest.raises(InvalidName, match="is 70 characters long"):
        validate_label("x" * 70)


@pytest.mark.parametrize(
    ("text", "label"),
    [("My Shop!", "my-shop"), ("  --a__b--  ", "a-b"), ("!!!", "x"), ("Ü" * 3, "x"), ("A" * 80, "a" * 63)],
)
def test_suggest_label_always_gives_a_valid_label(text: str, label: str) -> None:
    assert suggest_label(text) == label
    validate_label(suggest_label(text))


def test_scoped_name_keeps_short_names_readable() -> None:
    assert scoped_name("acme", "shop", "dev") == "acme-shop-dev"


def test_scoped_name_of_long_parts_stays_within_the_limit_and_valid() -> None:
    name = scoped_name("a" * 40, "b" * 40)
    assert len(name) <= DNS_LABEL_MAX
    assert LABEL.match(name)
    assert name.startswith("a" * 40)


def test_scoped_name_never_ends_with_a_dash_before_the_hash() -> None:
    # The cut falls right after a '-': it must be stripped, not doubled.
    name = scoped_name("a" * 53, "bbbbbbbbbbbbbb")
    assert "--" not in name
    assert LABEL.match(name)


def test_scoped_name_is_collision_free_where_truncation_would_collide() -> None:
    prefix = "p" * 60
    inputs = [(prefix, suffix) for suffix in ("a", "b", "aa", "ab", "x" * 30)]
    inputs += [(prefix, "q-r"), (prefix + "q", "r")]
    names = [scoped_name(*parts) for parts in inputs]
    # Different full names give different scoped names, even though all share the cut-off prefix.
    full = ["-".join(parts) for parts in inputs]
    assert len(set(full)) == len(full)
    assert len(set(names)) == len(names)
    assert all(len(n) <= DNS_LABEL_MAX for n in names)


def test_scoped_name_is_deterministic_and_respects_a_custom_limit() -> None:
    many = {scoped_name("team", "project", f"env-{i}" * 5, limit=30) for i in range(500)}
    assert len(many) == 500
    assert all(len(n) <= 30 for n in many)
    assert scoped_name("team", "x" * 80, limit=30) == scoped_name("team", "x" * 80, limit=30)


def test_generate_environment_name_is_a_free_valid_label() -> None:
    taken: set[str] = set()
    for _ in range(200):
        name = generate_environment_name(taken)
        assert name not in taken
        assert validate_label(name) == name
        assert name.startswith("dev-")
        taken.add(name)


def test_generate_environment_name_falls_back_to_random_when_all_words_are_taken() -> None:
    from envhub.domain import naming

    everything = {f"pr-{a}-{n}" for a, n in itertools.product(naming._ADJECTIVES, naming._NOUNS)}
    name = generate_environment_name(everything, prefix="pr")
    assert name not in everything
    assert re.fullmatch(r"pr-[0-9a-f]{8}", name)


def test_local_host() -> None:
    assert local_host(environment="dev", project="shop", team="acme", domain="localhost") == (
        "dev.shop.acme.localhost"
    )
