"""Pure algorithms: association, multilateration, shooters, classification; no I/O, no threads.

The bottom layer of the server: imports only :mod:`earwitness` and libraries.
"""
