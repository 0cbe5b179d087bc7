"""The wire: ZeroMQ multipart messages byte by byte (``protocol``, the reference implementation of
docs/protocol.md), endpoint strings (``endpoints``: ``@`` binds, ``>`` connects) and CurveZMQ keys
and allow-lists (``security``).

Owns bytes and sockets' set-up. Never holds model state, never runs a model, never raises on bad
bytes (a decode error is a value).
"""
