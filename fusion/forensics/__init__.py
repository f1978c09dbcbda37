"""Casework around located gunfire: cameras that saw it, where to search for casings, 911 calls.

Pure computation on positions, no I/O beyond reading the user's CSV and GeoJSON files; the
server and the commands above it store and publish what it finds.
"""
