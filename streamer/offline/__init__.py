"""Offline: whole recordings or simulations scored through the same engine and backends as
``serve`` (``scoring``), with the bidirectional, classical and hybrid estimates beside the causal one;
one window of a simulation or a recording, and the model, for ``explain`` (``explain_windows``).

Never opens a socket.
"""
