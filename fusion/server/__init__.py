"""The server: ingest, store, alerts, evidence, the service loop; transport-independent.

Imports :mod:`fusion.tracking`, :mod:`fusion.locator` and :mod:`earwitness`; never a transport.
"""
