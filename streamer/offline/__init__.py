"""Offline: whole recordings or simulations scored through the same engine and backends as
``serve`` (``scoring``), with the bidirectional, classical and hybrid estimates beside the causal one.

Never opens a socket.
"""
