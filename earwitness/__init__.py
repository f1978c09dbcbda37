"""Earwitness: open acoustic gunshot detection and location.

This package holds only the ``earwitness`` command line, which joins the three
programs (``edge``, ``fusion``, ``simulator``) under one console script.
"""
__version__ = "0.1.0"
