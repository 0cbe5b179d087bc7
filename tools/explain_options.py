"""The attribution method settings on the command line: shared by ``explain`` and ``bench explain``.

Argparse and tqdm only (building the parser must not import torch or captum).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

METHOD_NAMES = ("saliency", "ig", "occlusion", "ablation", "lime", "shap", "attention", "state", "gates")
"""``models.attribution.METHODS``, spelled out so that building the parser (every ``radarstream``
command does) does not import torch and captum (tested equal)."""


def method_options(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The constructor options of ``method`` from the command line."""
    from models.attribution import BASELINES

    base = {"baseline": BASELINES[args.baseline]} if method in ("saliency", "ig", "occlusion", "ablation", "lime", "shap") else {}
    if method == "ig":
        base["n_steps"] = args.ig_steps
        if getattr(args, "ig_tolerance", None):
            base.update(tolerance=args.ig_tolerance, max_steps=args.ig_max_steps)
    elif method == "occlusion":
        base.update(window=args.occlusion_window, stride=args.occlusion_stride)
    elif method in ("ablation", "lime", "shap"):
        base.update(segment=args.segment, joint_channels=args.joint_channels)
        if method != "ablation":
            base["seed"] = args.rng_seed
            if args.samples is not None:
                base["n_samples"] = args.samples
    return base


def tqdm_progress(desc: str, enabled: bool) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """A ``progress(done, total)`` callback drawing a tqdm bar, and its closer."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not bar:
            bar.append(tqdm(total=total, desc=desc, unit="eval", leave=False, file=sys.stderr))
        elif total != bar[0].total or done < bar[0].n:  # a new pass (IG refining its steps)
            bar[0].reset(total=total)
        bar[0].update(done - bar[0].n)

    return progress, lambda: bar and bar[0].close()


def add_method_options(p: argparse.ArgumentParser) -> None:
    """The "method settings" group: one spelling of every method option for both commands."""
    g = p.add_argument_group("method settings")
    g.add_argument("--baseline", choices=["noise", "zeros"], default="noise",
                   help="reference input: 'noise' = noise only (amplitude 1 = noise RMS, distance -1 = no "
                        "detection; default), 'zeros' = raw zeros, for comparison only")
    g.add_argument("--ig-steps", type=int, default=50, metavar="N", help="integrated gradients: integration steps (default 50)")
    g.add_argument("--ig-tolerance", type=float, default=None, metavar="R",
                   help="integrated gradients: double the steps until |delta| <= R x |estimate - baseline estimate| "
                        "(explain default 0.02, 0 = off: fixed --ig-steps; bench explain: off)")
    g.add_argument("--ig-max-steps", type=int, default=800, metavar="N",
                   help="integrated gradients: most steps --ig-tolerance may use (default 800)")
    g.add_argument("--occlusion-window", type=int, default=16, metavar="N",
                   help="occlusion: samples replaced by noise at a time (default 16 = 0.8 s at 20 Hz)")
    g.add_argument("--occlusion-stride", type=int, default=None, metavar="N",
                   help="occlusion: shift between windows (default: half the window)")
    g.add_argument("--segment", type=int, default=16, metavar="N",
                   help="ablation/LIME/SHAP: samples per time segment (one feature per segment and channel)")
    g.add_argument("--joint-channels", action="store_true",
                   help="ablation/LIME/SHAP: one feature per segment covering both channels")
    g.add_argument("--samples", type=int, default=None, metavar="N",
                   help="LIME/SHAP: perturbed samples (default: LIME 300, SHAP 1000, as SHAP's estimate is noisier)")
    g.add_argument("--rng-seed", type=int, default=0, metavar="N", help="LIME/SHAP: sampling seed (results repeat exactly)")
    g.add_argument("--threads", type=int, default=1, metavar="N", help="torch threads (default 1)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
