"""The settings editor's form and the stored document: a round trip keeps what the form does not show."""

from __future__ import annotations

import pytest

from envhub.domain.releases import DeploymentSettings
from envhub.errors import ValidationFailed
from envhub.ui.pages.deployment_settings import FROM_MERGES, _env_document, _env_form
from envhub.ui.views import diff_lines

STORED = {
    "name": "production",
    "overrides": {"env": {"STAGE": "production"}, "hosts": {"shop.example": "www.shop.example"}},
    "promotion": {
        "promote_from": "staging",
        "approvals": 2,
        "approver_role": "owner",
        "rollout_deadline_seconds": 900,
        "gates": {"soak_minutes": 30, "window": {"days": ["mon", "fri"], "start": "08:00", "end": "18:00"}},
    },
}


def test_a_form_saved_unchanged_is_the_document_it_came_from() -> None:
    form = _env_form(STORED)
    assert (form["promote_from"], form["approvals"], form["soak"], form["window"]) == (
        "staging",
        "2",
        "30",
        "true",
    )
    assert form["days"] == "mon,fri"
    doc = _env_document(form, STORED, 1)
    assert doc["overrides"]["hosts"] == {"shop.example": "www.shop.example"}  # only the JSON shows hosts
    assert doc["promotion"]["rollout_deadline_seconds"] == 900
    env = DeploymentSettings.model_validate(
        {"source": {"kind": "command"}, "environments": [{"name": "staging"}, doc]}
    ).environments[1]
    assert env.promotion.approvals == 2
    assert env.promotion.gates.soak_minutes == 30
    assert env.promotion.gates.window is not None
    assert env.promotion.gates.window.days == ("mon", "fri")


def test_form_fields_become_the_document() -> None:
    form = {**_env_form({"name": "staging"}), "replicas": "web=3\nworker=0", "env": "A=1", "window": "false"}
    form["promote_from"] = FROM_MERGES
    doc = _env_document(form, {}, 0)
    assert doc["overrides"] == {"replicas": {"web": 3, "worker": 0}, "env": {"A": "1"}}
    assert doc["promotion"]["promote_from"] is None
    assert doc["promotion"]["gates"]["window"] is None


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("replicas", "web=three", "deployments.environments.0.overrides.replicas"),
        ("env", "no equals sign", "deployments.environments.0.overrides.env"),
        ("approvals", "one", "deployments.environments.0.promotion.approvals"),
        ("soak", "an hour", "deployments.environments.0.promotion.gates.soak_minutes"),
    ],
)
def test_a_field_the_form_cannot_read_is_named(field: str, value: str, named: str) -> None:
    form = {**_env_form({"name": "staging"}), field: value}
    with pytest.raises(ValidationFailed) as refused:
        _env_document(form, {}, 0)
    assert refused.value.details["field"] == named


def test_diff_lines_are_toned() -> None:
    diff = "--- a\n+++ a\n@@ -1 +1 @@\n-old\n+new\n same"
    assert [line["tone"] for line in diff_lines(diff)] == ["head", "head", "hunk", "del", "add", "same"]
