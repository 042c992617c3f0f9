"""Errors of rendering user-supplied manifests, in envhub's error tree.

Both are :class:`envhub.errors.ValidationFailed`: the user's input is at fault and
resubmitting the same input fails the same way, so nothing here is retryable.

    ValidationFailed              validation_failed
    ├── ManifestInvalid           manifest_invalid   (not YAML, not an object, fields missing)
    ├── ManifestRejected          manifest_rejected  (well-formed, but would break isolation)
    └── EgressDenied              egress_denied      (the egress allowlist names what the platform denies)
"""

from __future__ import annotations

from envhub.errors import ValidationFailed


class ManifestInvalid(ValidationFailed):
    code = "manifest_invalid"
    default_hint = "Fix the named document (apiVersion, kind and metadata.name are required) and redeploy."


class ManifestRejected(ValidationFailed):
    code = "manifest_rejected"
    default_hint = (
        "envhub runs every environment in its own namespace with fixed isolation; "
        "remove or change the named object and redeploy."
    )


class EgressDenied(ValidationFailed):
    code = "egress_denied"
    default_hint = (
        "The platform never lets environments reach the cloud metadata service, the API server, "
        "kube-system or envhub itself; remove the named egress entry."
    )
