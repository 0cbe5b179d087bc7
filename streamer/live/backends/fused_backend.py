"""Fused small-batch step backend: the whole causal model in one compiled call (numba).

At batch 1–8 ORT and torch pay a per-node overhead (tens of µs) that dwarfs the model's ~0.1
MFLOP per sample. This backend runs the input normaliser, both LSTM layers (one pass over the
pre-packed ``[W_ih | W_hh]`` of each layer, gates reordered ``i, f, o, g``, biases summed), the
head and the optional uncertainty head in one numba kernel over explicit ``(h, c)``; nothing is
allocated per call but the kernel's scratch.

Candidates measured (docs/benchmarks.md, ``radarstream bench stream``, backend rows ``fused`` and
``numpy-fused``): a hand-fused numpy step (one matmul per layer, in-place gate math) pays ~15
numpy calls per step, ≈ 40 µs at batch 1 on this project's machine, no better than ORT; the numba
kernel ≈ 7–9 µs. A C extension would match numba but needs a compiler on every install; numba
installs from wheels (``pyproject.toml``) and caches its compilation next to this file (or in
the user cache when that is read-only), so only the first process ever compiles (~2 s).

:class:`NumpyFusedBackend` (the numpy candidate) stays as the fallback where numba cannot import,
and as the benchmark's side-by-side reference. :class:`AutoBackend` picks per call shape:
the fused kernel for small batches, ORT above the crossover measured at start-up.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from streamer.live.backends.base import StepBackend

REFERENCE_PERIOD_S = 0.05  # models.normalization.REFERENCE_PERIOD_S (not imported: no torch here)
MIN_STD = 1e-4  # models.regressors.MIN_STD

try:  # numba is a declared dependency; the numpy step keeps the backend usable without it
    import numba as _numba

    HAVE_NUMBA = True
except Exception:  # pragma: no cover - exercised only on installs without numba
    _numba = None
    HAVE_NUMBA = False


class PackedModel:
    """The causal model's numbers as float32 arrays the kernels read (no torch after packing)."""

    def __init__(self, model):
        import torch  # noqa: F401  (the model is a torch module)

        lstm = model.lstm
        norm = model.normalizer
        self.num_layers = int(lstm.num_layers)
        self.hidden_size = H = int(lstm.hidden_size)
        self.features = int(norm.features)
        self.input_size = 3 if norm.with_period else 2
        self.with_period = bool(norm.with_period)
        self.inv_noise = np.float32(float(norm.inv_noise))
        self.inv_r_max = np.float32(float(norm.inv_r_max))
        self.nominal_period = np.float32(float(norm.nominal_period))
        self.log_ref = float(math.log(REFERENCE_PERIOD_S))
        perm = np.r_[0:H, H : 2 * H, 3 * H : 4 * H, 2 * H : 3 * H]  # torch i, f, g, o -> i, f, o, g
        self.W: list[np.ndarray] = []  # per layer [(in + H), 4H]: rows of x then rows of h
        self.b: list[np.ndarray] = []
        self.W_ih: list[np.ndarray] = []  # numpy path: [in, 4H] and [H, 4H]
        self.W_hh: list[np.ndarray] = []
        self.nin = np.empty(self.num_layers, np.int64)
        for layer in range(self.num_layers):
            wih = getattr(lstm, f"weight_ih_l{layer}").detach().cpu().numpy().astype(np.float64)
            whh = getattr(lstm, f"weight_hh_l{layer}").detach().cpu().numpy().astype(np.float64)
            bias = (getattr(lstm, f"bias_ih_l{layer}").detach().cpu().numpy().astype(np.float64)
                    + getattr(lstm, f"bias_hh_l{layer}").detach().cpu().numpy().astype(np.float64))
            w = np.concatenate([wih, whh], axis=1)[perm].T
            self.W.append(np.ascontiguousarray(w, np.float32))
            self.b.append(np.ascontiguousarray(bias[perm], np.float32))
            self.W_ih.append(np.ascontiguousarray(wih[perm].T, np.float32))
            self.W_hh.append(np.ascontiguousarray(whh[perm].T, np.float32))
            self.nin[layer] = wih.shape[1]
        # the per-layer bias adds b_ih + b_hh in float64 then rounds once: torch adds two float32
        # vectors; the difference is below 1e-7 relative, far inside the 1e-5 conformance bound
        self.head = self._linears(model.head)
        self.has_std = model.std_head is not None
        self.std_scale = np.float32(getattr(model, "std_scale", 1.0))
        self.std_head = self._linears(model.std_head) if self.has_std else (
            np.zeros((H, 1), np.float32), np.zeros(1, np.float32), np.zeros(1, np.float32), np.zeros(1, np.float32))

    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        """``(flat float32, meta int64)`` for the numba kernel: per layer ``W`` then ``b``, the
        head ``W1, b1, w2, b2``, the σ head likewise, then the constants."""
        parts, meta_layers = [], []
        off = 0
        for w, b, nin in zip(self.W, self.b, self.nin):
            meta_layers += [int(nin), off]
            parts += [w.ravel(), b]
            off += w.size + b.size
        o_head = off
        for arr in self.head:
            parts.append(arr.ravel())
            off += arr.size
        o_std = off
        for arr in self.std_head:
            parts.append(arr.ravel())
            off += arr.size
        o_const = off
        parts.append(np.array([self.inv_noise, self.inv_r_max, self.nominal_period, self.log_ref, self.std_scale],
                              np.float32))
        flat = np.ascontiguousarray(np.concatenate(parts), np.float32)
        meta = np.array([int(self.with_period), int(self.has_std), self.head[0].shape[1], self.std_head[0].shape[1],
                         o_const, o_head, o_std, 0, *meta_layers], np.int64)
        return flat, meta

    @staticmethod
    def _linears(seq) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        first, last = seq[0], seq[2]
        return (np.ascontiguousarray(first.weight.detach().cpu().numpy().T, np.float32),
                np.ascontiguousarray(first.bias.detach().cpu().numpy(), np.float32),
                np.ascontiguousarray(last.weight.detach().cpu().numpy()[0], np.float32),
                np.ascontiguousarray(last.bias.detach().cpu().numpy(), np.float32))


# ----------------------------------------------------------------------------- numba kernel


def _kernel_py(x, h, c, flat, meta, y, y_std, scratch):
    """``x [B, T, C]`` raw samples; ``h, c [L, B, H]`` advanced in place; ``y, y_std [B, T]`` out.

    ``flat``: every weight and constant in one float32 array, laid out by ``meta`` (int64, see
    :meth:`PackedModel.flat`): few arguments, so the call's dispatch costs ~1 µs, not ~4.
    Per sample: features (the InputNormalizer), each layer's gates from one pass over the packed
    ``[W_ih | W_hh]`` rows (i, f, o, g), the state update, then the head(s) on the top layer."""
    B, T, C = x.shape
    L = h.shape[0]
    Hh = h.shape[2]
    G = 4 * Hh
    with_period = meta[0] != 0
    has_std = meta[1] != 0
    A = meta[2]
    SA = meta[3]
    o_const = meta[4]
    o_head = meta[5]
    o_std = meta[6]
    inv_noise = flat[o_const]
    inv_r_max = flat[o_const + 1]
    nominal_period = flat[o_const + 2]
    log_ref = flat[o_const + 3]
    std_scale = flat[o_const + 4]
    feats = scratch[0:8]
    z = scratch[8 : 8 + G]
    a = scratch[8 + G : 8 + G + max(A, SA)]
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for bb in range(B):
        for t in range(T):
            amp = x[bb, t, 0] * inv_noise
            if amp < np.float32(1e-3):
                amp = np.float32(1e-3)
            d = x[bb, t, 1]
            det = one if d >= zero else zero
            feats[0] = np.log10(amp)
            feats[1] = d * inv_r_max * det
            feats[2] = det
            if with_period:
                p = x[bb, t, 2] if C >= 3 else nominal_period
                if p < np.float32(1e-4):
                    p = np.float32(1e-4)
                feats[3] = np.log(p) - log_ref
            for layer in range(L):
                nin = meta[8 + 2 * layer]
                ow = meta[9 + 2 * layer]
                W = flat[ow : ow + (nin + Hh) * G].reshape((nin + Hh, G))
                ob = ow + (nin + Hh) * G
                for j in range(G):
                    z[j] = flat[ob + j]
                for k in range(nin):
                    v = feats[k] if layer == 0 else h[layer - 1, bb, k]
                    for j in range(G):
                        z[j] += v * W[k, j]
                for k in range(Hh):
                    v = h[layer, bb, k]
                    for j in range(G):
                        z[j] += v * W[nin + k, j]
                for k in range(Hh):
                    ig = one / (one + np.exp(-z[k]))
                    fg = one / (one + np.exp(-z[Hh + k]))
                    og = one / (one + np.exp(-z[2 * Hh + k]))
                    gg = np.tanh(z[3 * Hh + k])
                    cv = fg * c[layer, bb, k] + ig * gg
                    c[layer, bb, k] = cv
                    h[layer, bb, k] = og * np.tanh(cv)
            top = L - 1
            y[bb, t] = _head(h, top, bb, Hh, A, flat, o_head, a)
            y[bb, t] = one / (one + np.exp(-y[bb, t]))
            if has_std:
                s = _head(h, top, bb, Hh, SA, flat, o_std, a)
                sp = s if s > np.float32(20.0) else np.log1p(np.exp(s))  # torch softplus
                y_std[bb, t] = (sp + np.float32(MIN_STD)) * std_scale


def _head_py(h, top, bb, Hh, A, flat, o, a):
    """Linear(H, A) -> ReLU -> Linear(A, 1) on ``h[top, bb]``; weights at ``flat[o:]``."""
    W1 = flat[o : o + Hh * A].reshape((Hh, A))
    o1 = o + Hh * A
    for j in range(A):
        a[j] = flat[o1 + j]
    for k in range(Hh):
        v = h[top, bb, k]
        for j in range(A):
            a[j] += v * W1[k, j]
    o2 = o1 + A
    s = flat[o2 + A]
    for j in range(A):
        if a[j] > np.float32(0.0):
            s += a[j] * flat[o2 + j]
    return s


if HAVE_NUMBA:
    # contract/reassoc let LLVM vectorise the gate loops; exp/tanh/log stay exact (no "afn")
    def _jit(fn):
        opts = dict(nogil=True, boundscheck=False, error_model="numpy", fastmath={"contract", "reassoc", "nsz"})
        try:  # compiled once per machine, cached next to this file (or in the user's cache)
            return _numba.njit(cache=True, **opts)(fn)
        except RuntimeError:  # no writable cache location (read-only install and home): compile per process
            return _numba.njit(cache=False, **opts)(fn)

    _head = _jit(_head_py)
    _kernel = _jit(_kernel_py)
else:  # pragma: no cover
    _kernel = _head = None


class FusedBackend(StepBackend):
    """The causal model in one numba kernel per call (fast at small batch; see module doc)."""

    name = "fused"

    def __init__(self, model, *, threads: int = 1):
        if not HAVE_NUMBA:  # pragma: no cover
            raise RuntimeError("the fused backend needs numba (pip install numba)")
        p = self.packed = PackedModel(model)
        self.model_config = dict(model.config)
        self.profile = model.profile
        self.r_max_m = float(model.profile.r_max_m)
        self.num_layers, self.hidden_size, self.input_size = p.num_layers, p.hidden_size, p.input_size
        self.has_std = p.has_std
        self._flat, self._meta = p.flat()
        width = max(p.head[0].shape[1], p.std_head[0].shape[1])
        self._scratch = np.zeros(8 + 4 * p.hidden_size + width, np.float32)
        self._out: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
        self._dummy_std = np.zeros((1, 1), np.float32)
        self.run_full(np.zeros((1, 1, self.input_size), np.float32), *self.zero_state(1))  # compile / load

    @classmethod
    def from_weights(cls, weights_dir: str | Path | None = None, *, threads: int = 1, profile=None) -> "FusedBackend":
        from models.bundle import load_model

        model, _ = load_model("causal", weights_dir, profile=profile)
        return cls(model, threads=threads)

    def _buffers(self, b: int, t: int):
        hit = self._out.get((b, t))
        if hit is None:
            if len(self._out) >= 64:
                self._out.clear()
            shape = (self.num_layers, b, self.hidden_size)
            hit = self._out[(b, t)] = (np.empty((b, t), np.float32),
                                       np.empty((b, t), np.float32) if self.has_std else self._dummy_std,
                                       np.empty(shape, np.float32), np.empty(shape, np.float32))
        return hit

    def run_full(self, x, h, c):
        x = np.ascontiguousarray(x, np.float32)
        b, t = x.shape[0], x.shape[1]
        y, y_std, hn, cn = self._buffers(b, t)
        np.copyto(hn, h, casting="same_kind")
        np.copyto(cn, c, casting="same_kind")
        _kernel(x, hn, cn, self._flat, self._meta, y, y_std, self._scratch)
        return y, (y_std if self.has_std else None), hn, cn


# ----------------------------------------------------------------------------- numpy candidate


class NumpyFusedBackend(StepBackend):
    """The hand-fused numpy step (the candidate the numba kernel is measured against; also the
    fallback without numba): per layer one matmul over ``[x | h] @ [W_ih | W_hh]`` (T = 1) or the
    input projection of all T at once then one ``h @ W_hh`` per step, gate math in place."""

    name = "numpy-fused"

    def __init__(self, model, *, threads: int = 1):
        p = self.packed = PackedModel(model)
        self.profile = model.profile
        self.r_max_m = float(model.profile.r_max_m)
        self.num_layers, self.hidden_size, self.input_size = p.num_layers, p.hidden_size, p.input_size
        self.has_std = p.has_std

    @classmethod
    def from_weights(cls, weights_dir: str | Path | None = None, *, threads: int = 1, profile=None) -> "NumpyFusedBackend":
        from models.bundle import load_model

        model, _ = load_model("causal", weights_dir, profile=profile)
        return cls(model, threads=threads)

    def features(self, x: np.ndarray) -> np.ndarray:
        p = self.packed
        amp = np.log10(np.maximum(x[..., 0:1] * p.inv_noise, np.float32(1e-3)))
        d = x[..., 1:2]
        det = (d >= 0).astype(np.float32)
        feats = [amp, d * p.inv_r_max * det, det]
        if p.with_period:
            per = x[..., 2:3] if x.shape[-1] >= 3 else np.full_like(d, p.nominal_period)
            feats.append((np.log(np.maximum(per, np.float32(1e-4))) - np.float32(p.log_ref)).astype(np.float32))
        return np.concatenate(feats, axis=-1)

    def run_full(self, x, h, c):
        p = self.packed
        H = p.hidden_size
        x = np.asarray(x, np.float32)
        b, t = x.shape[0], x.shape[1]
        f = self.features(x)
        hn = np.array(h, np.float32)
        cn = np.array(c, np.float32)
        seq = f  # [B, T, in]
        for layer in range(p.num_layers):
            outs = np.empty((b, t, H), np.float32)
            if t == 1:
                xh = np.concatenate([seq[:, 0], hn[layer]], axis=1)
                pre = None
            else:
                pre = seq @ p.W_ih[layer]
                pre += p.b[layer]
            hl, cl = hn[layer], cn[layer]
            for k in range(t):
                if pre is None:
                    z = xh @ p.W[layer]
                    z += p.b[layer]
                else:
                    z = hl @ p.W_hh[layer]
                    z += pre[:, k]
                s = z[:, : 3 * H]
                np.negative(s, out=s)
                np.exp(s, out=s)
                s += 1.0
                np.reciprocal(s, out=s)
                g = z[:, 3 * H :]
                np.tanh(g, out=g)
                cl *= s[:, H : 2 * H]
                g *= s[:, :H]
                cl += g
                np.tanh(cl, out=hl)
                hl *= s[:, 2 * H :]
                outs[:, k] = hl
            seq = outs
        y = self._head(seq, p.head)
        y = 1.0 / (1.0 + np.exp(-y))
        y_std = None
        if p.has_std:
            s = self._head(seq, p.std_head)
            sp = np.where(s > 20.0, s, np.log1p(np.exp(np.minimum(s, 20.0))))
            y_std = ((sp + np.float32(MIN_STD)) * p.std_scale).astype(np.float32)
        return y.astype(np.float32), y_std, hn, cn

    @staticmethod
    def _head(seq, head):
        w1, b1, w2, b2 = head
        a = seq @ w1
        a += b1
        np.maximum(a, 0.0, out=a)
        return a @ w2 + b2[0]


# ----------------------------------------------------------------------------- dispatch


DEFAULT_CROSSOVER = {1: 4, 4: 2, 16: 1, 64: 0}
"""Largest batch the fused kernel takes, per run length bucket (T ≤ key), when nothing was
measured: from ``bench stream`` on the project's machine (fused ≈ 7.5 µs per sample, ORT ≈ 30
µs per call + ≈ 2–3 µs per sample). 0: always ORT."""


class AutoBackend(StepBackend):
    """Per call shape: the fused kernel for small ``B × T``, ORT for the rest.

    Crossovers (largest batch given to the fused kernel, per run-length bucket) are measured at
    start-up (``measure=True``: ~0.1 s, a few timed calls of each backend) or taken from
    :data:`DEFAULT_CROSSOVER`. Both backends equal ``nn.LSTM`` within the conformance bound, so
    the choice changes speed only, never what is published beyond float rounding."""

    name = "auto"

    def __init__(self, fused: StepBackend, big: StepBackend, *, crossover: dict[int, int] | None = None,
                 measure: bool = True):
        if (fused.num_layers, fused.hidden_size, fused.input_size, fused.has_std) != (
                big.num_layers, big.hidden_size, big.input_size, big.has_std):
            raise ValueError("auto backend: the two backends run different models")
        self.fused, self.big = fused, big
        self.num_layers, self.hidden_size, self.input_size = fused.num_layers, fused.hidden_size, fused.input_size
        self.has_std = fused.has_std
        self.r_max_m = big.r_max_m
        self.profile = getattr(big, "profile", None)
        self.crossover = dict(crossover) if crossover is not None else (
            measure_crossover(fused, big) if measure else dict(DEFAULT_CROSSOVER))
        self._buckets = sorted(self.crossover)
        self.calls = {"fused": 0, big.name: 0}

    @classmethod
    def from_weights(cls, weights_dir: str | Path | None = None, *, threads: int = 1, profile=None,
                     measure: bool = True) -> "AutoBackend":
        from streamer.live.backends.onnx_backend import OnnxBackend

        big = OnnxBackend.from_weights(weights_dir, threads=threads, profile=profile)
        fused = FusedBackend.from_weights(weights_dir, threads=threads, profile=big.profile)
        return cls(fused, big, measure=measure)

    def pick(self, b: int, t: int) -> StepBackend:
        for key in self._buckets:
            if t <= key:
                return self.fused if b <= self.crossover[key] else self.big
        return self.big

    def run_full(self, x, h, c):
        be = self.pick(x.shape[0], x.shape[1])
        return be.run_full(x, h, c)

    def describe(self) -> str:
        return f"auto (fused ≤ {self.crossover} else {self.big.name}; {self.num_layers}x{self.hidden_size} LSTM)"


def _time(fn, reps: int) -> float:
    fn()
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t) / reps)
    return best


def measure_crossover(fused: StepBackend, big: StepBackend, *, buckets=(1, 4, 16, 64),
                      batches=(1, 2, 4, 8, 16, 32, 64)) -> dict[int, int]:
    """Per run length bucket, the largest batch at which ``fused`` is faster than ``big``
    (best of 3 short timing loops each; stops at the first batch where it is not)."""
    rng = np.random.default_rng(0)
    out = {}
    for t in buckets:
        best = 0
        for b in batches:
            x = np.abs(rng.normal(size=(b, t, fused.input_size))).astype(np.float32)
            h, c = fused.zero_state(b)
            reps = max(2, 256 // (b * t))
            if _time(lambda: fused.run_full(x, h, c), reps) < _time(lambda: big.run_full(x, h, c), reps):
                best = b
            else:
                break
        out[t] = best
    return out
