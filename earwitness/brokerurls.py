"""A broker's URL, ``scheme://host[:port]``, split and checked with a one-line reason.

The node's configuration, the fusion server's MQTT and NATS links and the simulator read broker
URLs; ``urllib.parse.urlsplit`` raises on some malformed ones (an unbalanced ``[`` of an IPv6 host)
and on a bad port only when the port is read, so each reader checked both in its own words. Here
once, in the words of what is being read.

Example::

    host, port, scheme = split_broker_url("mqtts://broker.example.org", MQTT_SCHEMES, "mqtt.url")
    # ('broker.example.org', 8883, 'mqtts')
"""
from __future__ import annotations

import urllib.parse

# MQTT's schemes and their IANA ports, for the node's and the fusion server's links alike.
MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}


def split_broker_url(url: str, default_ports: dict[str, int], what: str) -> tuple[str, int, str]:
    """``url`` as (host, port, scheme); ``default_ports``: the schemes allowed and each one's port where the URL
    names none; ``what``: the URL's name in the ValueError's one-line message."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # an unbalanced [ or ] of an IPv6 host
        raise ValueError(f"{what} is not a URL: {url!r}") from None
    if parts.scheme not in default_ports or not parts.hostname:
        forms = " or ".join(f"{scheme}://host[:port]" for scheme in default_ports)
        raise ValueError(f"{what} must be {forms}, not {url!r}")
    try:
        port = parts.port or default_ports[parts.scheme]
    except ValueError:  # parsed on access: not a number, or out of range
        raise ValueError(f"bad port in {what} {url!r}") from None
    return parts.hostname, port, parts.scheme
