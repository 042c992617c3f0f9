"""Wrappers around vendor SDKs (authlib for OpenID Connect, ...).

Only this package imports them, so the rest of envhub sees envhub's own types
and errors (``.importlinter`` checks it).
"""
