"""The Reflex dashboard."""
