"""Endpoint convention shared by every socket the project opens (a light module: no torch)."""

from __future__ import annotations

from typing import Any

from radarstream.errors import RadarstreamError


class EndpointError(RadarstreamError, ValueError):
    """An endpoint that cannot be bound or connected (malformed, unknown host, port in use)."""


def attach(sock: Any, endpoint: str, default: str) -> str:
    """Bind or connect by the czmq convention: ``@endpoint`` binds, ``>endpoint`` connects, a
    bare endpoint does ``default``. Returns the resolved endpoint (ports chosen with ``:*``).
    A ZeroMQ refusal becomes an :class:`EndpointError` that says what was wrong and how to write
    an endpoint."""
    import zmq

    mode = default
    given = endpoint
    if endpoint.startswith("@"):
        mode, endpoint = "bind", endpoint[1:]
    elif endpoint.startswith(">"):
        mode, endpoint = "connect", endpoint[1:]
    try:
        if mode == "bind":
            sock.bind(endpoint)
            return sock.getsockopt_string(zmq.LAST_ENDPOINT)
        sock.connect(endpoint)
    except zmq.ZMQError as exc:
        why = {zmq.EADDRINUSE: "address already in use (another process has that port)",
               zmq.EADDRNOTAVAIL: "no such local address to bind",
               zmq.EPROTONOSUPPORT: "unknown transport"}.get(exc.errno, exc.strerror)
        raise EndpointError(f"cannot {mode} {given!r}: {why}; an endpoint looks like tcp://127.0.0.1:5556, "
                            "ipc:///tmp/radar.sock or tcp://*:5556 (prefix @ to bind, > to connect)") from None
    return endpoint
