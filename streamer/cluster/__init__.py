"""Past one machine: sensor shards on a Ray cluster fed from a durable intake log (docs/cluster.md).

One module per role:

* ``partitions`` — sensor id → partition (a stable hash, fixed count) → shard; pure functions.
* ``framing`` — the raw ZeroMQ multipart frames of one message as one log record, unchanged.
* ``log`` — the intake log on NATS JetStream: one subject per partition in one stream, appends
  deduplicated by message id, replay from a stream position, the checkpoint key-value bucket.
* ``bridge`` — ZeroMQ feed → log (stateless; several may run on the same or different feeds).
* ``checkpoint`` — a shard's state (every sensor's engine, hybrid, domain and alert state) and its
  log position as bytes (a tagged binary format, no pickle).
* ``shard`` — one shard: the same ``StreamService`` drain as ``serve``, over its partitions' log
  records, checkpointed before each batch; and the Ray actor that hosts it.
* ``proxy`` — the XSUB/XPUB proxy every shard publishes into, so clients connect once.
* ``cluster`` — the driver of ``radarstream cluster``: Ray, the shard actors, the proxy.

Nothing here imports Qt; Ray and nats-py are imported only by the modules that need them (the
``cluster`` extra), so ``partitions`` and ``framing`` work without it.
"""
