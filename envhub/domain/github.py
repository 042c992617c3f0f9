"""GitHub webhooks, pure: the signature, what a delivery says, and what a pull request should get.

No I/O here. The webhook route verifies and records (``services/webhooks.py``),
a job applies what was recorded (``services/pull_requests.py``); both read
GitHub's payloads through :func:`summarize`, which keeps the few fields envhub
acts on and checks their types, so nothing else ever walks an untrusted payload.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from envhub.domain.naming import scoped_name

SIGNATURE_PREFIX = "sha256="
# What envhub acts on; other events are recorded as ignored and answered 2xx.
HANDLED_EVENTS = frozenset({"pull_request", "push", "ping"})
# Pull-request actions that can change what the pull request should have.
PULL_REQUEST_ACTIONS = frozenset(
    {
        "opened",
        "reopened",
        "ready_for_review",
        "converted_to_draft",
        "synchronize",
        "closed",
        "labeled",
        "unlabeled",
        "edited",
    }
)
DELIVERY_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")
EVENT_NAME = re.compile(r"^[a-z_]{1,50}$")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")  # SHA-1, or SHA-256 repositories


class PayloadInvalid(ValueError):
    """A field envhub needs is missing or of the wrong type (the delivery is malformed)."""


def signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body`` signed with ``secret``."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, header: str) -> bool:
    """Constant-time comparison of the header with the expected signature."""
    return hmac.compare_digest(signature(secret, body).encode(), header.encode("utf-8", "replace"))


def body_digest(body: bytes) -> str:
    """Names a payload: a replay of a signed body under a new delivery id is the same event."""
    return hashlib.sha256(body).hexdigest()


def _get(payload: Any, *path: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
    value = payload
    for key in path:
        if not isinstance(value, dict) or key not in value:
            if optional:
                return None
            raise PayloadInvalid(f"the payload has no {'.'.join(path)}")
        value = value[key]
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise PayloadInvalid(f"{'.'.join(path)} has the wrong type")
    return value


def repository_of(payload: Any) -> str:
    """``owner/name`` of the repository a delivery is about ("" when it names none)."""
    name = _get(payload, "repository", "full_name", kind=str, optional=True)
    return name[:200] if name else ""


def summarize(event: str, payload: Any) -> dict[str, Any]:
    """The fields envhub acts on, typed and bounded; raises :class:`PayloadInvalid`."""
    if not isinstance(payload, dict):
        raise PayloadInvalid("the payload is not a JSON object")
    if event == "pull_request":
        pr = _get(payload, "pull_request", kind=dict)
        sha = _get(pr, "head", "sha", kind=str)
        if not _SHA.match(sha):
            raise PayloadInvalid("pull_request.head.sha is not a commit id")
        labels = _get(pr, "labels", kind=list, optional=True) or []
        return {
            "action": _get(payload, "action", kind=str)[:50],
            "number": _get(payload, "number", kind=int),
            "title": (_get(pr, "title", kind=str, optional=True) or "")[:500],
            "author": (_get(pr, "user", "login", kind=str, optional=True) or "")[:100],
            "html_url": (_get(pr, "html_url", kind=str, optional=True) or "")[:2000],
            "head_ref": _get(pr, "head", "ref", kind=str)[:255],
            "head_sha": sha,
            "state": _get(pr, "state", kind=str)[:10],
            "merged": bool(_get(pr, "merged", kind=bool, optional=True)),
            "draft": bool(_get(pr, "draft", kind=bool, optional=True)),
            "labels": sorted(
                {
                    label["name"][:100]
                    for label in labels
                    if isinstance(label, dict) and isinstance(label.get("name"), str)
                }
            ),
            "updated_at": (_get(pr, "updated_at", kind=str, optional=True) or "")[:40],
        }
    if event == "push":
        ref = _get(payload, "ref", kind=str)
        after = _get(payload, "after", kind=str)
        return {
            "ref": ref[:255],
            "branch": ref.removeprefix("refs/heads/")[:255] if ref.startswith("refs/heads/") else "",
            "after": after[:64],
            "deleted": bool(_get(payload, "deleted", kind=bool, optional=True)),
        }
    if event == "ping":
        return {"zen": (_get(payload, "zen", kind=str, optional=True) or "")[:200]}
    return {}


def ignored_because(event: str, summary: dict[str, Any]) -> str:
    """Why envhub does nothing with a delivery ("" when it acts on it)."""
    if event not in HANDLED_EVENTS:
        return f"envhub does not act on {event} events"
    if event == "pull_request" and summary["action"] not in PULL_REQUEST_ACTIONS:
        return f"envhub does not act on pull_request {summary['action']}"
    if event == "push" and not summary["branch"]:
        return "a push to a tag, not a branch"
    return ""


@dataclass(frozen=True)
class Policy:
    """A connection's pull-request and push settings."""

    pull_requests: bool = True
    drafts: bool = False
    opt_in_label: str | None = None
    opt_out_label: str = "envhub:skip"
    push_branches: tuple[str, ...] = ()


@dataclass(frozen=True)
class PullRequestState:
    state: str
    draft: bool
    labels: tuple[str, ...]


def skip_reason(policy: Policy, pr: PullRequestState) -> str:
    """Why a pull request gets no environment ("" when it gets one)."""
    if pr.state != "open":
        return "the pull request is closed"
    if not policy.pull_requests:
        return "pull-request environments are off for this project"
    if policy.opt_out_label and policy.opt_out_label in pr.labels:
        return f"labelled {policy.opt_out_label}"
    if policy.opt_in_label and policy.opt_in_label not in pr.labels:
        return f"not labelled {policy.opt_in_label}"
    if pr.draft and not policy.drafts:
        return "a draft (mark it ready for review, or let drafts have environments in the project's settings)"
    return ""


def pull_request_environment_name(number: int) -> str:
    return f"pr-{number}"


def branch_wanted(policy: Policy, branch: str) -> bool:
    return any(fnmatch.fnmatchcase(branch, pattern) for pattern in policy.push_branches)


def branch_environment_name(branch: str) -> str:
    """``branch-<branch as a DNS label>``; a long name is cut and keeps a hash of the whole."""
    return scoped_name("branch", re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-") or "x")


# -- what GitHub is told -------------------------------------------------------------


def comment_marker(project_id: int) -> str:
    """Hidden in envhub's comment, so the comment is found again (one per project and pull request)."""
    return f"<!-- envhub:pull-request-environment project={project_id} -->"


@dataclass(frozen=True)
class CommentFacts:
    """What the pull request's comment says; every field already a plain string."""

    project_id: int
    project: str
    environment: str  # its name ("" when it has none)
    phase: str  # "" when it has none
    url: str  # the public URL ("" until ready)
    commit: str
    page: str  # the environment's page in envhub ("" when it has none)
    error: str = ""  # "code: message" when failed
    advice: str = ""
    skipped: str = ""  # why it has none


_STATES = {
    "pending": ("⏳", "Creating"),
    "provisioning": ("⏳", "Creating"),
    "updating": ("🔄", "Updating"),
    "ready": ("✅", "Ready"),
    "sleeping": ("💤", "Sleeping"),
    "failed": ("❌", "Failed"),
    "deleting": ("🧹", "Deleting"),
    "deleted": ("🗑️", "Deleted"),
}


def deployment_state(phase: str) -> str:
    """The GitHub Deployment status of an environment in ``phase``."""
    if phase in ("pending", "provisioning", "updating"):
        return "in_progress"
    if phase in ("ready", "sleeping"):
        return "success"
    if phase == "failed":
        return "failure"
    return "inactive"


def render_comment(facts: CommentFacts) -> str:
    """The one comment envhub keeps current on a pull request (Markdown)."""
    lines = [comment_marker(facts.project_id)]
    if not facts.environment:
        lines += [
            f"**envhub** · `{facts.project}`: no environment for this pull request ({facts.skipped}).",
        ]
        return "\n".join(lines) + "\n"
    icon, word = _STATES.get(facts.phase, ("•", facts.phase))
    lines += [f"### {icon} envhub · `{facts.project}/{facts.environment}` · {word}", ""]
    rows = []
    if facts.url and facts.phase in ("ready", "sleeping", "updating"):
        rows.append(("Preview", f"[{facts.url}]({facts.url})"))
    rows.append(("Commit", f"`{facts.commit[:12]}`"))
    if facts.page:
        rows.append(
            (
                "In envhub",
                f"[environment]({facts.page}) · [shell]({facts.page}#terminal-panel)"
                f" · [logs]({facts.page}#logs)",
            )
        )
    lines += ["| | |", "| --- | --- |", *[f"| {name} | {value} |" for name, value in rows]]
    if facts.phase == "failed" and facts.error:
        lines += ["", f"**{facts.error}**"]
        if facts.advice:
            lines += ["", f"Next step: {facts.advice}"]
    if facts.phase in ("deleting", "deleted"):
        lines += ["", "The environment is removed with the pull request."]
    return "\n".join(lines) + "\n"


# -- the check run of the head commit (App connections only) ------------------------

CHECK_RUN_NAME = "envhub preview"


@dataclass(frozen=True)
class CheckRunReport:
    """What a check run says: ``status`` in_progress or completed, with its ``conclusion``."""

    status: str
    conclusion: str  # "" while in progress; success, failure, neutral or cancelled
    title: str
    summary: str

    @property
    def state(self) -> str:
        """What the pull request remembers, so the run is updated only when this changes."""
        return self.conclusion or self.status


def check_run_report(facts: CommentFacts) -> CheckRunReport | None:
    """What the check run of ``facts.commit`` says (None: no environment runs it, nothing to report)."""
    if not facts.environment:
        return None
    state = deployment_state(facts.phase)
    where = f"`{facts.project}/{facts.environment}`"
    if state == "in_progress":
        _icon, word = _STATES.get(facts.phase, ("", facts.phase))
        return CheckRunReport(
            "in_progress",
            "",
            f"{word} {facts.project}/{facts.environment}",
            f"envhub is deploying {where} at `{facts.commit[:12]}`.",
        )
    if state == "success":
        url = facts.url or "(no public URL)"
        summary = f"{where} runs `{facts.commit[:12]}`"
        summary += f" at [{facts.url}]({facts.url})." if facts.url else "."
        return CheckRunReport("completed", "success", f"Ready: {url}", summary)
    if state == "failure":
        summary = f"{where} failed at `{facts.commit[:12]}`: **{facts.error or 'no error recorded'}**"
        if facts.advice:
            summary += f"\n\nNext step: {facts.advice}"
        return CheckRunReport("completed", "failure", f"Failed: {facts.error or facts.phase}"[:200], summary)
    return None


def check_run_ended(*, superseded_by: str = "", removed_because: str = "") -> CheckRunReport:
    """The last word of a run still in progress when its commit stopped mattering: ``cancelled``
    when a newer commit took over, ``neutral`` when the environment was removed (so a required
    check never blocks a pull request the project chose to leave without an environment)."""
    if superseded_by:
        return CheckRunReport(
            "completed",
            "cancelled",
            "Superseded by a newer commit",
            f"A newer commit, `{superseded_by[:12]}`, took over before this one was deployed.",
        )
    reason = removed_because or "the environment was deleted"
    return CheckRunReport(
        "completed",
        "neutral",
        "No environment",
        f"The environment was removed before it was ready: {reason}.",
    )
