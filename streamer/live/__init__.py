"""The live causal path: per-sensor state and stream policy (``engine``), the stepping backends
(``backends``: torch, onnxruntime), the ZeroMQ service (``service``), window re-scoring beside it
(``rescore``), health alarms and budgets (``health``) and delayed-label metrics (``metrics``).

Owns (h, c) per sensor and the order samples are processed in. Never re-reads past samples, never
blocks the causal path on re-scoring, never keeps global state (N services run side by side).
"""
