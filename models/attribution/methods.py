"""Captum attribution methods over one radar window, one class per method (Captum's own style).

All share :class:`CaptumExplainer`: reduce the model to one scalar (:class:`EstimateAt`), pick the
baseline, time the call, fold the result onto the raw channels and return an :class:`Attribution`.

* gradient methods (Saliency, IntegratedGradients) run in the normalised feature space
  (:func:`feature_space`) and fold back onto amplitude / distance;
* perturbation methods (Occlusion, FeatureAblation, Lime, KernelShap) replace raw samples by the
  baseline sample, so what they test is "what if this stretch had been noise only".
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from captum.attr import FeatureAblation, IntegratedGradients, KernelShap, Lime, Occlusion, Saliency
from torch import nn

from models.attribution.results import Attribution, Explanation, frozen_array, frozen_mapping
from models.attribution.surrogate import WeightedRidge
from models.attribution.targets import (
    NOISE_ONLY,
    Baseline,
    EstimateAt,
    LSTMState,
    as_window,
    feature_space,
    model_kind,
    r_max_of,
    resolve_step,
    time_segment_mask,
)

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: model evaluations done so far out of the expected total."""


class _Counted:
    """Forward function that reports each batch of evaluations to a progress callback."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], total: int, progress: ProgressFn | None):
        self.forward, self.total, self.progress, self.done = forward, max(int(total), 1), progress, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.forward(x)
        if self.progress is not None:
            self.done = min(self.done + int(x.shape[0]), self.total)
            self.progress(self.done, self.total)
        return out


class WindowExplainer(ABC):
    """Explains one window ``x [T, 2]`` of raw samples for one model (causal, bidir or pooled)."""

    name: ClassVar[str]
    title: ClassVar[str]
    slow: ClassVar[bool] = False
    """Methods that evaluate the model many times (the CLI shows a progress bar for them)."""

    def __init__(self, model: nn.Module, kind: str | None = None, *, initial_state: LSTMState | None = None):
        self.model = model
        self.kind = model_kind(model, kind)
        if initial_state is not None and self.kind != "causal":
            raise ValueError("initial_state applies to the causal model only")
        self.initial_state = initial_state

    @abstractmethod
    def explain(self, x: np.ndarray | torch.Tensor, step: int | None = None, *, progress: ProgressFn | None = None) -> Explanation:
        """Explain the model's estimate at ``step`` (default: the last step; ignored for pooled)."""

    def estimate(self, x: torch.Tensor, step: int | None) -> float:
        with torch.no_grad():
            return float(EstimateAt(self.model, self.kind, step, self.initial_state)(x)[0])


@dataclass(frozen=True)
class _Raw:
    attributions: torch.Tensor  # [T, C]
    params: dict[str, Any]
    delta: float | None = None
    feature_attributions: torch.Tensor | None = None
    feature_names: tuple[str, ...] = ()
    feature_mask: torch.Tensor | None = None


class CaptumExplainer(WindowExplainer):
    """Shared machinery of the Captum methods; subclasses implement :meth:`_attribute`."""

    def __init__(
        self,
        model: nn.Module,
        kind: str | None = None,
        *,
        baseline: Baseline = NOISE_ONLY,
        initial_state: LSTMState | None = None,
        batch_size: int = 64,
    ):
        super().__init__(model, kind, initial_state=initial_state)
        self.baseline = baseline
        self.batch_size = int(batch_size)

    def target(self, step: int | None, model: nn.Module | None = None) -> EstimateAt:
        return EstimateAt(model if model is not None else self.model, self.kind, step, self.initial_state)

    def explain(self, x: np.ndarray | torch.Tensor, step: int | None = None, *, progress: ProgressFn | None = None) -> Attribution:
        x = as_window(x)
        step = resolve_step(self.kind, step, x.shape[1])
        t0 = time.perf_counter()
        raw = self._attribute(x, step, progress)
        seconds = time.perf_counter() - t0
        base = self.baseline.like(x)
        f = self.target(step)
        with torch.no_grad():
            est, base_est = float(f(x)[0]), float(f(base)[0])
        params = dict(raw.params, baseline=self.baseline.name, batch_size=self.batch_size)
        return Attribution(
            method=self.name, target=self.kind, step=step, estimate=est, seconds=seconds, r_max_m=r_max_of(self.model),
            params=frozen_mapping(params), attributions=frozen_array(raw.attributions.detach().numpy()),
            baseline=frozen_array(self.baseline.raw()), baseline_name=self.baseline.name, baseline_estimate=base_est,
            delta=raw.delta,
            feature_attributions=None if raw.feature_attributions is None else frozen_array(raw.feature_attributions.detach().numpy()),
            feature_names=raw.feature_names,
            feature_mask=None if raw.feature_mask is None else frozen_array(raw.feature_mask.numpy(), np.int32),
        )

    @abstractmethod
    def _attribute(self, x: torch.Tensor, step: int | None, progress: ProgressFn | None) -> _Raw:
        """x [1, T, C] -> attributions [T, C] (and whatever else the method reports)."""


# ---------------------------------------------------------------- gradient methods


class WindowSaliency(CaptumExplainer):
    """Captum ``Saliency``: |∂ estimate / ∂ feature| at the window itself.

    Answers "which samples is the estimate locally most sensitive to?". Cheap (one backward
    pass) but local: it says nothing about how far the estimate would move.
    """

    name, title = "saliency", "Saliency"

    def __init__(self, model: nn.Module, kind: str | None = None, *, absolute: bool = True, **kw: Any):
        super().__init__(model, kind, **kw)
        self.absolute = bool(absolute)

    def _attribute(self, x: torch.Tensor, step: int | None, progress: ProgressFn | None) -> _Raw:
        fs = feature_space(self.model)
        feats = fs.features(x).requires_grad_(True)
        fwd = _Counted(self.target(step, fs.model), 1, progress)
        attr = Saliency(fwd).attribute(feats, abs=self.absolute)[0].detach()
        return _Raw(fs.to_raw(attr), {"absolute": self.absolute, "space": "features"},
                    feature_attributions=attr, feature_names=fs.names)


class WindowIntegratedGradients(CaptumExplainer):
    """Captum ``IntegratedGradients`` from the baseline to the window, in feature space.

    Answers "how much of (estimate − baseline estimate) does each sample account for?". Complete:
    the attributions sum to f(x) − f(baseline) up to ``delta``, which shrinks with ``n_steps``.
    Recurrent models are stiff along the path (the output can switch within a few thousandths of
    the path, e.g. where the detection flags cross 0.5), so ``delta`` can stay large at 50 steps;
    ``tolerance`` doubles the steps (up to ``max_steps``) until |delta| <= tolerance ×
    |f(x) − f(baseline)|.
    """

    name, title = "ig", "Integrated gradients"

    def __init__(self, model: nn.Module, kind: str | None = None, *, n_steps: int = 50,
                 integration: str = "gausslegendre", tolerance: float | None = None, max_steps: int = 1024, **kw: Any):
        super().__init__(model, kind, **kw)
        self.n_steps = int(n_steps)
        self.integration = integration
        self.tolerance = None if tolerance is None else float(tolerance)
        self.max_steps = max(int(max_steps), self.n_steps)

    def _attribute(self, x: torch.Tensor, step: int | None, progress: ProgressFn | None) -> _Raw:
        fs = feature_space(self.model)
        feats = fs.features(x)
        base = fs.features(self.baseline.like(x))
        n = self.n_steps
        while True:
            fwd = _Counted(self.target(step, fs.model), n + 2, progress)
            attr, delta = IntegratedGradients(fwd).attribute(
                feats, baselines=base, n_steps=n, method=self.integration,
                internal_batch_size=self.batch_size, return_convergence_delta=True,
            )
            d = float(delta[0])
            change = abs(float(attr.sum()) - d)  # |f(x) - f(baseline)|
            if self.tolerance is None or abs(d) <= self.tolerance * max(change, 1e-6) or 2 * n > self.max_steps:
                break
            n *= 2
        attr = attr[0].detach()
        params = {"n_steps": n, "integration": self.integration, "space": "features"}
        if self.tolerance is not None:
            params.update(tolerance=self.tolerance, requested_steps=self.n_steps, max_steps=self.max_steps)
        return _Raw(fs.to_raw(attr), params, delta=d, feature_attributions=attr, feature_names=fs.names)


# ---------------------------------------------------------------- perturbation methods


class WindowOcclusion(CaptumExplainer):
    """Captum ``Occlusion``: slide a window of ``window`` samples (``stride`` apart) over time and
    replace it by the baseline (noise only).

    Answers "how much does the estimate drop if this stretch had been noise only?" (positive:
    the stretch raised the estimate). Each sample gets the mean change over the windows that
    cover it. ``joint_channels`` (default) occludes amplitude and distance together, the only
    physically consistent choice (a detection without its echo does not happen).
    """

    name, title, slow = "occlusion", "Occlusion", True

    def __init__(self, model: nn.Module, kind: str | None = None, *, window: int = 16, stride: int | None = None,
                 joint_channels: bool = True, **kw: Any):
        super().__init__(model, kind, **kw)
        self.window = int(window)
        self.stride = int(stride) if stride else max(1, self.window // 2)
        self.joint_channels = bool(joint_channels)
        if self.stride > self.window:
            raise ValueError("occlusion stride must not exceed its window")

    def _attribute(self, x: torch.Tensor, step: int | None, progress: ProgressFn | None) -> _Raw:
        length, channels = x.shape[1], x.shape[2]
        window = min(self.window, length)
        shape = (window, channels) if self.joint_channels else (window, 1)
        strides = (self.stride, channels) if self.joint_channels else (self.stride, 1)
        n = (math.ceil((length - window) / self.stride) + 1) * (1 if self.joint_channels else channels)
        fwd = _Counted(self.target(step), n + 1, progress)
        attr = Occlusion(fwd).attribute(
            x, sliding_window_shapes=shape, strides=strides, baselines=self.baseline.like(x),
            perturbations_per_eval=self.batch_size,
        )[0].detach()
        return _Raw(attr, {"window": window, "stride": self.stride, "joint_channels": self.joint_channels,
                           "evaluations": n + 1})


class _MaskedExplainer(CaptumExplainer):
    """Methods whose interpretable features are time segments (× channel, unless joint)."""

    def __init__(self, model: nn.Module, kind: str | None = None, *, segment: int = 16,
                 joint_channels: bool = False, **kw: Any):
        super().__init__(model, kind, **kw)
        self.segment = int(segment)
        self.joint_channels = bool(joint_channels)

    def mask(self, x: torch.Tensor, step: int | None) -> torch.Tensor:
        """Segments aligned on ``step``: none straddles the explained step."""
        return time_segment_mask(x.shape[1], x.shape[2], self.segment, joint_channels=self.joint_channels, anchor=step)

    def mask_params(self, mask: torch.Tensor) -> dict[str, Any]:
        return {"segment": self.segment, "joint_channels": self.joint_channels, "features": int(mask.max()) + 1}


class WindowFeatureAblation(_MaskedExplainer):
    """Captum ``FeatureAblation``: replace one time segment of one channel at a time by the
    baseline (amplitude = noise RMS, or distance = no detection).

    Answers "which channel of which stretch does the estimate need?": ablating the distance
    channel alone asks what the model would say if those echoes had reported no range.
    """

    name, title, slow = "ablation", "Feature ablation", True

    def _attribute(self, x: torch.Tensor, step: int | None, progress: ProgressFn | None) -> _Raw:
        mask = self.mask(x, step)
        fwd = _Counted(self.target(step), int(mask.max()) + 2, progress)
        attr = FeatureAblation(fwd).attribute(
            x, baselines=self.baseline.like(x), feature_mask=mask, perturbations_per_eval=self.batch_size
        )[0].detach()
        return _Raw(attr, self.mask_params(mask), feature_mask=mask[0])


class _SampledExplainer(_MaskedExplainer):
    """LIME and Kernel SHAP: random coalitions of segments, a weighted linear fit, seeded.

    For the causal target only the samples up to ``step`` are perturbed: the model cannot see the
    rest, and features with no effect would only add variance to the fit. They get exactly 0.
    """

    slow = True

    def __init__(self, model: nn.Module, kind: str | None = None, *, n_samples: int = 300, seed: int = 0,
                 segment: int = 16, joint_channels: bool = False, **kw: Any):
        super().__init__(model, kind, segment=segment, joint_channels=joint_channels, **kw)
        self.n_samples = int(n_samples)
        self.seed = int(seed)

    @abstractmethod
    def _captum(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> Lime: ...

    def _attribute(self, x: torch.Tensor, step: int | None, progress: ProgressFn | None) -> _Raw:
        visible = x[:, : step + 1] if self.kind == "causal" else x
        mask = self.mask(visible, step)
        fwd = _Counted(self.target(step), self.n_samples, progress)
        with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
            torch.manual_seed(self.seed)
            attr = self._captum(fwd).attribute(
                visible, baselines=self.baseline.like(visible), feature_mask=mask, n_samples=self.n_samples,
                perturbations_per_eval=self.batch_size, return_input_shape=True,
            )[0].detach()
        full = torch.zeros(x.shape[1:], dtype=attr.dtype)
        full[: attr.shape[0]] = attr
        full_mask = torch.full(x.shape[1:], -1, dtype=torch.long)
        full_mask[: mask.shape[1]] = mask[0]
        params = dict(self.mask_params(mask), n_samples=self.n_samples, seed=self.seed,
                      perturbed_samples=int(visible.shape[1]))
        return _Raw(full, params, feature_mask=full_mask)


def _interpretable_kernel(width: float) -> Callable[..., torch.Tensor]:
    """LIME's exponential kernel on the cosine distance between the kept-segment vector and the
    all-kept one (as LIME does for image superpixels): raw-sample distances would be dominated by
    the range channel's metres."""

    def similarity(_original: Any, _perturbed: Any, interpretable: torch.Tensor, **_: Any) -> torch.Tensor:
        kept = interpretable.float().mean(dim=-1)
        distance = 1.0 - kept.clamp(min=0.0).sqrt()
        return torch.exp(-(distance**2) / width**2)

    return similarity


class WindowLime(_SampledExplainer):
    """Captum ``Lime`` with time-segment features: fit a local weighted ridge model of the
    estimate on which segments are kept (others set to noise only).

    Answers "which stretches, taken together, explain this estimate?" with a linear surrogate;
    the surrogate's coefficients are the attributions (no completeness guarantee).
    """

    name, title = "lime", "LIME"

    def __init__(self, model: nn.Module, kind: str | None = None, *, kernel_width: float = 0.25,
                 alpha: float = 0.01, **kw: Any):
        super().__init__(model, kind, **kw)
        self.kernel_width = float(kernel_width)
        self.alpha = float(alpha)

    def _captum(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> Lime:
        return Lime(forward, interpretable_model=WeightedRidge(self.alpha),
                    similarity_func=_interpretable_kernel(self.kernel_width))

    def _attribute(self, x: torch.Tensor, step: int | None, progress: ProgressFn | None) -> _Raw:
        raw = super()._attribute(x, step, progress)
        return _Raw(raw.attributions, dict(raw.params, kernel_width=self.kernel_width, alpha=self.alpha),
                    feature_mask=raw.feature_mask)


class _ExactKernelShap(KernelShap):
    """Captum's KernelShap with the closed-form weighted least-squares surrogate (no sklearn)."""

    def __init__(self, forward_func: Callable[..., torch.Tensor]) -> None:
        super().__init__(forward_func)
        self.interpretable_model = WeightedRidge(alpha=0.0)


class WindowKernelShap(_SampledExplainer):
    """Captum ``KernelShap`` with time-segment features: approximate Shapley values.

    Answers "how is (estimate − baseline estimate) shared fairly among the segments?"; the values
    sum to that difference (the Shapley kernel pins the all-kept and all-removed coalitions).
    """

    name, title = "shap", "Kernel SHAP"

    def __init__(self, model: nn.Module, kind: str | None = None, *, n_samples: int = 1000, **kw: Any):
        # Kernel SHAP's estimate is noisier than LIME's at equal samples (seed-to-seed correlation
        # ~0.6 at 300 samples for 64 segment features, ~0.8 at 1000): it gets more by default
        super().__init__(model, kind, n_samples=n_samples, **kw)

    def _captum(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> Lime:
        return _ExactKernelShap(forward)
