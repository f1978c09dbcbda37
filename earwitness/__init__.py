"""Earwitness: open acoustic gunshot detection and location; the core the programs share.

``edge`` (the sensor node), ``fusion`` (the server) and ``simulator`` import this package and
never each other (but the simulator, which runs the other two).  It holds only what they
share: the ``earwitness`` command line (:mod:`earwitness.cli`), the pulse wire format
(:mod:`earwitness.wire`), topic names (:mod:`earwitness.topics`), the clip format
(:mod:`earwitness.clip`), record types (:mod:`earwitness.records`), units and constants
(:mod:`earwitness.units`) and the C extension ``earwitness._native`` built from ``csrc/``.
"""
__version__ = "0.1.0"
