"""Live tracking: incidents kept up to date as pulses arrive, and their revisions.

Imports only :mod:`fusion.locator` and :mod:`earwitness`; no I/O of its own.
"""
