"""Live tracking: incidents kept up to date as pulses arrive, and their revisions.

- :mod:`~fusion.tracking.incidents`: :class:`~fusion.tracking.incidents.IncidentTracker`, the facade.
- :mod:`~fusion.tracking.lifecycle`: an incident's revision states and their transitions.
- :mod:`~fusion.tracking.reach`: the sensors' neighbourhoods, a window's ranges and times.
- :mod:`~fusion.tracking.buffer`: the pulses held, in time order and per sensor.
- :mod:`~fusion.tracking.arrivals`: what located shots explain (arrivals, echoes, cracks) and their evidence.
- :mod:`~fusion.tracking.windows`: one anchor's window, located.
- :mod:`~fusion.tracking.sweep`: the windows of one sweep over the held pulses.
- :mod:`~fusion.tracking.revisions`: pairing located incidents with tracked ones, publishing revisions.

Imports only :mod:`fusion.locator` and :mod:`earwitness`; no I/O of its own.
"""
