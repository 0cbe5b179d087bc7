"""Sensor → partition → shard: the fixed, documented mapping every part of the cluster shares.

A sensor's partition is ``crc32(sensor id as UTF-8) mod PARTITIONS`` (zlib's CRC-32, the same as
``binascii.crc32`` and most languages' "crc32"), never Python's ``hash`` (salted per process). The
number of partitions is fixed for the life of a log (the bridge and every shard must agree): it
is stored in the log's stream metadata and checked. A shard ``k`` of ``N`` owns the partitions
``p`` with ``p mod N == k``, so adding shards moves whole partitions, never single sensors.
"""

from __future__ import annotations

import zlib

PARTITIONS = 256
"""Default partition count (a power of two: 1, 2, 4 … 256 shards divide it evenly)."""


def partition_of(sensor: str, partitions: int = PARTITIONS) -> int:
    """The partition of ``sensor`` (``crc32(utf-8) mod partitions``); stable across processes,
    machines and restarts."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return zlib.crc32(sensor.encode("utf-8")) % partitions


def shard_partitions(shard: int, shards: int, partitions: int = PARTITIONS) -> list[int]:
    """The partitions shard ``shard`` (0-based) of ``shards`` owns: ``p mod shards == shard``."""
    if not 1 <= shards <= partitions:
        raise ValueError(f"shards must lie in 1..{partitions} (the partition count), got {shards}")
    if not 0 <= shard < shards:
        raise ValueError(f"shard must lie in 0..{shards - 1}, got {shard}")
    return list(range(shard, partitions, shards))


def shard_of(sensor: str, shards: int, partitions: int = PARTITIONS) -> int:
    """The shard that serves ``sensor``."""
    return partition_of(sensor, partitions) % shards


def topic_sensor(topic: bytes) -> str | None:
    """The sensor id of a wire topic (``samples/<id>``, ``event/<id>``), None when unreadable. A
    topic that does not parse still gets a partition (``_malformed``) so the shard that owns it
    reports it exactly as ``serve`` would."""
    slash = topic.find(b"/")
    if slash < 0:
        return None
    try:
        return topic[slash + 1:].decode("utf-8")
    except UnicodeDecodeError:
        return None
