"""A shard's checkpoint: its service's state and its log position, as bytes without pickle.

``encode`` / ``decode`` move a tree of plain values (dict with str keys, list, tuple, deque,
Counter, str, int, float including NaN/±Inf, bool, None, bytes), numpy arrays and scalars, and
numpy ``Generator`` objects (their bit generator's state). The layout is a JSON document (values
tagged where JSON has no word for them) followed by the raw bytes of the arrays; decoding builds
only these types, so a checkpoint cannot run code. Floats round-trip exactly (JSON ``repr``).
"""

from __future__ import annotations

import json
import struct
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

MAGIC = b"RSCK"
VERSION = 1
_HEAD = struct.Struct("<4sHQ")  # magic, version, JSON length


class CheckpointError(ValueError):
    """Bytes that are not a checkpoint this version can read."""


@dataclass(frozen=True)
class Checkpoint:
    position: int
    """Last log (stream) sequence number whose record is in ``state``; replay starts after it."""
    state: dict
    """``StreamService.get_state()``."""
    meta: dict
    """Shard, shard count, partition count, wall time (informational)."""


def encode(ckpt: Checkpoint) -> bytes:
    blobs: list[bytes] = []
    doc = {"position": int(ckpt.position), "meta": _tree(ckpt.meta, blobs), "state": _tree(ckpt.state, blobs)}
    text = json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()
    lens = struct.pack(f"<I{len(blobs)}Q", len(blobs), *(len(b) for b in blobs))
    return _HEAD.pack(MAGIC, VERSION, len(text)) + text + lens + b"".join(blobs)


def decode(data: bytes) -> Checkpoint:
    try:
        magic, version, n = _HEAD.unpack_from(data, 0)
        if magic != MAGIC or version != VERSION:
            raise CheckpointError(f"not a version-{VERSION} checkpoint (magic {magic!r}, version {version})")
        pos = _HEAD.size
        doc = json.loads(bytes(data[pos:pos + n]))
        pos += n
        (count,) = struct.unpack_from("<I", data, pos)
        lens = struct.unpack_from(f"<{count}Q", data, pos + 4)
        pos += 4 + 8 * count
        blobs = []
        for size in lens:
            if pos + size > len(data):
                raise CheckpointError("truncated checkpoint")
            blobs.append(bytes(data[pos:pos + size]))
            pos += size
        return Checkpoint(int(doc["position"]), _untree(doc["state"], blobs), _untree(doc["meta"], blobs))
    except CheckpointError:
        raise
    except (struct.error, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(f"unreadable checkpoint: {exc}") from exc


def _tree(v: Any, blobs: list[bytes]) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v if not isinstance(v, np.integer) else _tree(np.asarray(v), blobs)
    if isinstance(v, float):
        return v if np.isfinite(v) else {"$f": repr(v)}
    if isinstance(v, np.generic):
        return {"$s": _tree(np.asarray(v), blobs)}
    if isinstance(v, np.ndarray):
        if v.dtype.hasobject:
            raise TypeError("object arrays cannot be checkpointed")
        blobs.append(np.ascontiguousarray(v).tobytes())
        return {"$a": len(blobs) - 1, "dtype": v.dtype.str, "shape": list(v.shape)}
    if isinstance(v, np.random.Generator):
        return {"$g": type(v.bit_generator).__name__, "state": _tree(v.bit_generator.state, blobs)}
    if isinstance(v, Counter):
        return {"$c": [[_tree(k, blobs), _tree(x, blobs)] for k, x in v.items()]}
    if isinstance(v, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in v):
            return {k: _tree(x, blobs) for k, x in v.items()}
        return {"$d": [[_tree(k, blobs), _tree(x, blobs)] for k, x in v.items()]}
    if isinstance(v, deque):
        return {"$q": [_tree(x, blobs) for x in v], "maxlen": v.maxlen}
    if isinstance(v, tuple):
        return {"$t": [_tree(x, blobs) for x in v]}
    if isinstance(v, list):
        return [_tree(x, blobs) for x in v]
    if isinstance(v, (bytes, bytearray)):
        blobs.append(bytes(v))
        return {"$b": len(blobs) - 1}
    raise TypeError(f"cannot checkpoint a {type(v).__name__}")


_BITGENS = {"PCG64": np.random.PCG64, "PCG64DXSM": np.random.PCG64DXSM, "Philox": np.random.Philox,
            "SFC64": np.random.SFC64, "MT19937": np.random.MT19937}


def _untree(v: Any, blobs: list[bytes]) -> Any:
    if isinstance(v, list):
        return [_untree(x, blobs) for x in v]
    if not isinstance(v, dict):
        return v
    if "$f" in v:
        return float(v["$f"])
    if "$a" in v:
        return np.frombuffer(blobs[v["$a"]], np.dtype(v["dtype"])).reshape(v["shape"]).copy()
    if "$s" in v:
        return _untree(v["$s"], blobs)[()]
    if "$g" in v:
        gen = _BITGENS.get(v["$g"])
        if gen is None:
            raise CheckpointError(f"unknown bit generator {v['$g']!r}")
        bg = gen()
        bg.state = _untree(v["state"], blobs)
        return np.random.Generator(bg)
    if "$c" in v:
        return Counter({_untree(k, blobs): _untree(x, blobs) for k, x in v["$c"]})
    if "$d" in v:
        return {_untree(k, blobs): _untree(x, blobs) for k, x in v["$d"]}
    if "$q" in v:
        return deque((_untree(x, blobs) for x in v["$q"]), v["maxlen"])
    if "$t" in v:
        return tuple(_untree(x, blobs) for x in v["$t"])
    if "$b" in v:
        return blobs[v["$b"]]
    return {k: _untree(x, blobs) for k, x in v.items()}
