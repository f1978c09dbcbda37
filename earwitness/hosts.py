"""Whether a broker's host name exists: a typo fails at start, an unreachable name server does not.

The name server's answer that a name does not exist (``getaddrinfo``'s EAI_NONAME, or EAI_NODATA
where the C library has it) is a configuration error that no waiting mends.  Any other failure
(EAI_AGAIN: no name server reachable now, as at boot before the network is up) is an outage,
waited out as a broker that is down is.

Example::

    reason = unknown_host("brokr.example.org", 8883)   # 'Name or service not known', or None
"""
from __future__ import annotations

import socket

_NO_SUCH_NAME = frozenset({socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)})


def unknown_host(host: str, port: int | None) -> str | None:
    """The resolver's reason if it says ``host`` does not exist; None if it resolves or may later."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return exc.strerror if exc.errno in _NO_SUCH_NAME else None
    except UnicodeError as exc:   # a label the IDNA codec refuses (empty, over 63 characters)
        return f"not a host name: {exc}"
    return None
