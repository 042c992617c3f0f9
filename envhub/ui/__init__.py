"""The Reflex dashboard: pages, their substates, and the components they share.

Only ``envhub/envhub.py`` imports this package, so workers and the CLI never load
Reflex (``.importlinter`` checks it).
"""
