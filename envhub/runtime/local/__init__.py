"""The embedded single-machine runtime."""

from envhub.runtime.local.runtime import LocalRuntime

__all__ = ["LocalRuntime"]
