"""Errors of rendering user-supplied manifests (defined with the rest in ``envhub/errors.py``).

They are :class:`envhub.errors.ValidationFailed`: the user's input is at fault and
resubmitting the same input fails the same way, so nothing here is retryable.
"""

from __future__ import annotations

from envhub.errors import EgressDenied, ManifestInvalid, ManifestRejected

__all__ = ["EgressDenied", "ManifestInvalid", "ManifestRejected"]
