"""Endpoint convention shared by every socket the project opens (a light module: no torch)."""

from __future__ import annotations

from typing import Any


def attach(sock: Any, endpoint: str, default: str) -> str:
    """Bind or connect by the czmq convention: ``@endpoint`` binds, ``>endpoint`` connects, a
    bare endpoint does ``default``. Returns the resolved endpoint (ports chosen with ``:*``)."""
    import zmq

    mode = default
    if endpoint.startswith("@"):
        mode, endpoint = "bind", endpoint[1:]
    elif endpoint.startswith(">"):
        mode, endpoint = "connect", endpoint[1:]
    if mode == "bind":
        sock.bind(endpoint)
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)
    sock.connect(endpoint)
    return endpoint
