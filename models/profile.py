"""``RadarProfile``: what a model must know about the radar it runs on, declared once.

The profile is the single place R_max, the amplitude scale (noise RMS) and the dwell rate come
from: the models' input normaliser divides range by ``r_max_m`` and amplitude by ``noise_rms``,
metres are ``y * r_max_m``, the ONNX graphs are exported with the same numbers baked in (and
record them, so a backend can refuse or re-export a stale graph), and ``check_stream`` /
:class:`StreamDomainChecker` compare a live stream against the profile and the training envelope.

Pure Python + numpy (no torch): the service and the CLI load profiles without importing torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from radarstream.errors import RadarstreamError

PROFILE_FILE = "profile.json"
"""Name of the profile written next to the weights (each weights JSON also holds a copy)."""


class ProfileError(RadarstreamError, ValueError):
    """A radar profile is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class AmplitudeEnvelope:
    """Statistics of the training streams that a live stream is compared with (out of domain).

    ``median_log10`` is the range of the per-block median of ``log10(amplitude / noise_rms)``
    seen in training (mostly noise samples: it moves with the receiver gain / noise floor);
    ``detection_fraction`` the range of the share of samples with a detection (false-alarm rate
    plus target dwells).
    """

    median_log10: tuple[float, float] = (-1.0, 1.0)
    detection_fraction: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class RadarProfile:
    """A radar as the models see it. Frozen; JSON round trip with :meth:`to_json`/:meth:`from_json`."""

    r_max_m: float = 1000.0
    """Instrumented range: range is normalised by it and Dmin (metres) = y × r_max_m."""
    rate_hz: float = 20.0
    """Nominal dwell rate (samples per second)."""
    rate_envelope_hz: tuple[float, float] = (20.0, 20.0)
    """Dwell rates a model with this profile accepts (a stream outside is out of domain)."""
    noise_rms: float = 1.0
    """Noise RMS in the stream's amplitude units: the normaliser divides amplitude by it."""
    range_sigma_m: float = 5.0
    """Range-noise sigma of a detection at 10 dB SNR (metres): the radar's range precision."""
    rate_tolerance: float = 0.02
    """Relative slack on the rate envelope (clock jitter, rounding of period_ns)."""
    envelope: AmplitudeEnvelope = field(default_factory=AmplitudeEnvelope)
    """Training-envelope statistics used by the out-of-domain check."""
    name: str = "radar"

    def __post_init__(self) -> None:
        for key in ("r_max_m", "rate_hz", "noise_rms", "range_sigma_m"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ProfileError(f"RadarProfile.{key} must be a positive number, got {v!r}")
        lo, hi = self.rate_envelope_hz
        if not (0 < lo <= hi):
            raise ProfileError(f"RadarProfile.rate_envelope_hz must be 0 < lo <= hi, got {self.rate_envelope_hz}")
        if not (lo * (1 - self.rate_tolerance) <= self.rate_hz <= hi * (1 + self.rate_tolerance)):
            raise ProfileError(f"RadarProfile.rate_hz {self.rate_hz} lies outside its own envelope {self.rate_envelope_hz}")
        if not 0 <= self.rate_tolerance < 1:
            raise ProfileError("RadarProfile.rate_tolerance must lie in [0, 1)")

    # ------------------------------------------------------------ construction / JSON

    @classmethod
    def legacy(cls, r_max_m: float = 1000.0) -> "RadarProfile":
        """The profile implied by weights made before profiles existed: the default simulator
        (20 Hz only, noise RMS 1, R_max from the weights' config)."""
        return cls(r_max_m=float(r_max_m), name="legacy (default simulator, 20 Hz)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rate_envelope_hz"] = list(self.rate_envelope_hz)
        d["envelope"] = {k: list(v) for k, v in d["envelope"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RadarProfile":
        if not isinstance(d, dict):
            raise ProfileError(f"a radar profile must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ProfileError(f"unknown radar profile keys {sorted(unknown)} (known: {sorted(known)})")
        kw = dict(d)
        try:
            if "rate_envelope_hz" in kw:
                lo, hi = kw["rate_envelope_hz"]
                kw["rate_envelope_hz"] = (float(lo), float(hi))
            elif "rate_hz" in kw:
                kw["rate_envelope_hz"] = (float(kw["rate_hz"]),) * 2
            if "envelope" in kw:
                env = kw["envelope"]
                kw["envelope"] = AmplitudeEnvelope(**{k: tuple(float(x) for x in v) for k, v in env.items()})
            for key in ("r_max_m", "rate_hz", "noise_rms", "range_sigma_m", "rate_tolerance"):
                if key in kw:
                    kw[key] = float(kw[key])
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"malformed radar profile: {exc}") from exc
        return cls(**kw)

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> "RadarProfile":
        path = Path(path)
        if path.is_dir():
            path = path / PROFILE_FILE
        if not path.is_file():
            raise ProfileError(f"radar profile not found: {path}")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{path}: invalid JSON ({exc})") from exc
        try:
            return cls.from_dict(d)
        except ProfileError as exc:
            raise ProfileError(f"{path}: {exc}") from exc

    def with_(self, **changes: Any) -> "RadarProfile":
        """A copy with some fields changed (``rate_envelope_hz`` follows a lone ``rate_hz``)."""
        if "rate_hz" in changes and "rate_envelope_hz" not in changes:
            lo, hi = self.rate_envelope_hz
            r = float(changes["rate_hz"])
            changes["rate_envelope_hz"] = (min(lo, r), max(hi, r))
        return replace(self, **changes)

    # ------------------------------------------------------------ checks

    def rate_reason(self, period_ns: int) -> str | None:
        """Why a stream with this sample period is out of domain, or None."""
        if period_ns is None or period_ns <= 0:
            return None  # unknown period: nothing to check
        rate = 1e9 / float(period_ns)
        lo, hi = self.rate_envelope_hz
        tol = self.rate_tolerance
        if rate < lo * (1 - tol) or rate > hi * (1 + tol):
            span = f"{lo:g} Hz" if lo == hi else f"{lo:g}–{hi:g} Hz"
            return f"rate {rate:.3g} Hz (period {period_ns} ns) outside the profile's {span}"
        return None


def model_profile(config: dict[str, Any]) -> RadarProfile:
    """The profile of a model config: its ``profile`` entry, else the legacy one from ``r_max_m``."""
    p = config.get("profile")
    if p is None:
        return RadarProfile.legacy(float(config.get("r_max_m", 1000.0)))
    return p if isinstance(p, RadarProfile) else RadarProfile.from_dict(p)


def check_stream(
    profile: RadarProfile, period_ns: int | None, samples: np.ndarray | None = None, *, min_samples: int = 200
) -> str | None:
    """Stateless out-of-domain check of one stretch of a stream: a reason string, or None.

    The period is checked against ``profile.rate_envelope_hz``; with at least ``min_samples``
    samples ``[amplitude, distance]`` the median of ``log10(amplitude / noise_rms)`` and the
    detection fraction are checked against ``profile.envelope``. For a live stream prefer
    :class:`StreamDomainChecker`, which accumulates statistics over blocks of any size.
    """
    reason = profile.rate_reason(period_ns) if period_ns is not None else None
    if reason is not None or samples is None:
        return reason
    samples = np.asarray(samples, np.float64).reshape(-1, 2)
    if samples.shape[0] < min_samples:
        return None
    return _stats_reason(profile, _median_log10(samples[:, 0], profile), float(np.mean(samples[:, 1] >= 0)))


def _median_log10(amplitude: np.ndarray, profile: RadarProfile) -> float:
    return float(np.median(np.log10(np.maximum(amplitude / profile.noise_rms, 1e-6))))


def _stats_reason(profile: RadarProfile, med: float, det: float) -> str | None:
    env = profile.envelope
    lo, hi = env.median_log10
    if not lo <= med <= hi:
        return (f"amplitude level {20 * med:+.1f} dB re noise_rms (median) outside the training "
                f"envelope [{20 * lo:+.1f}, {20 * hi:+.1f}] dB")
    lo, hi = env.detection_fraction
    if not lo <= det <= hi:
        return f"detection fraction {det:.3g} outside the training envelope [{lo:.3g}, {hi:.3g}]"
    return None


class StreamDomainChecker:
    """Per-stream out-of-domain check over blocks of any size (state: a few numbers).

    ``update(period_ns, samples)`` returns a reason string while the stream is out of domain
    (period outside the profile's envelope, or the running amplitude / detection statistics
    outside the training envelope once ``min_samples`` have been seen), else None. Statistics
    are exponential averages with time constant ``window`` samples of per-block medians and
    detection fractions, so the answer does not depend on how the stream is split into blocks
    beyond the block-median approximation. Rate-limiting the resulting events is the caller's.
    """

    def __init__(self, profile: RadarProfile, *, window: int = 2000, min_samples: int = 400):
        self.profile = profile
        self.window = int(window)
        self.min_samples = int(min_samples)
        self.reset()

    def reset(self) -> None:
        self._n = 0
        self._med = 0.0
        self._det = 0.0

    def get_state(self) -> dict[str, float]:
        return {"n": self._n, "med": self._med, "det": self._det}

    def set_state(self, state: dict[str, float]) -> None:
        self._n, self._med, self._det = int(state["n"]), float(state["med"]), float(state["det"])

    def update(self, period_ns: int | None, samples: np.ndarray | None = None) -> str | None:
        reason = self.profile.rate_reason(period_ns) if period_ns is not None else None
        if samples is not None and len(samples):
            s = np.asarray(samples, np.float64).reshape(-1, 2)
            k = s.shape[0]
            med, det = _median_log10(s[:, 0], self.profile), float(np.mean(s[:, 1] >= 0))
            # weight of the new block: k samples of an EMA with time constant `window`, warm start
            w = k / (self._n + k) if self._n < self.window else 1.0 - math.exp(-k / self.window)
            self._med += w * (med - self._med)
            self._det += w * (det - self._det)
            self._n += k
        if reason is None and self._n >= self.min_samples:
            reason = _stats_reason(self.profile, self._med, self._det)
        return reason
