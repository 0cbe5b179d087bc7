"""``radarstream train``: train a model on simulated data, or (``--from``) on your labelled
recordings, and write weights (safetensors + JSON).

Heavy modules (torch, the recipes) are imported in the handler only: every ``radarstream``
command builds this parser.
"""

from __future__ import annotations

import argparse


def _max_seconds(args: argparse.Namespace) -> float | None:
    budgets = [b for b in (args.max_seconds, args.max_minutes * 60 if args.max_minutes else None) if b]
    return min(budgets) if budgets else None


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    kinds = ["causal", "bidir", "pooled"] if args.kind == "all" else [args.kind]
    if args.from_recordings:
        return _train_from_recordings(args, kinds)
    if args.labels or args.mix_sim is not None:
        from radarstream.errors import UsageError

        raise UsageError("--labels and --mix-sim go with --from REC.mcap (training on recordings)")
    from tools.recipes import TrainRecipe, train

    for kind in kinds:
        recipe = TrainRecipe(
            kind=kind, windows=args.windows, length=args.length, epochs=args.epochs,
            batch_size=args.batch_size or 32, lr=args.lr or 3e-3, seed=args.seed, loss=args.loss,
            manoeuvre_prob=args.manoeuvre_prob, max_minutes=args.max_minutes, pooling=args.pooling,
            tbptt=args.tbptt if kind == "causal" else None, patience=args.patience,
            init_from=args.init_from, randomised=args.randomised, radar=args.radar,
            per_stream=args.per_stream, max_seconds=args.max_seconds,
        )
        meta = train(recipe, args.out, progress=not args.quiet)
        print(f"{kind}: validation MAE {meta['validation']['mae_m']:.1f} m "
              f"({meta['trained_on']['seconds']:.0f} s) -> {args.out}/{kind}.safetensors")
    return 0


def _train_from_recordings(args: argparse.Namespace, kinds: list[str]) -> int:
    from tools.finetune import RecordingRecipe, prepare, run

    prepared = [prepare(RecordingRecipe(
        kind=kind, recordings=tuple(args.from_recordings), labels=tuple(args.labels or ()), init_from=args.init_from,
        mix_sim=args.mix_sim, radar=args.radar, epochs=args.epochs, batch_size=args.batch_size or 8, lr=args.lr,
        seed=args.seed, loss=args.loss, patience=args.patience, max_seconds=_max_seconds(args),
        val_fraction=args.val_fraction, randomised=args.randomised, pooling=args.pooling,
        report_encounters=args.report_encounters, tbptt=args.tbptt or 512)) for kind in kinds]  # every check before any training
    for p in prepared:
        d = p.data
        print(f"{p.recipe.kind}: {d.encounters(d.train)} training and {d.encounters(d.val)} validation encounters "
              f"(split by encounter) from {len(d.streams)} stream(s); simulated share {p.mix:g}", flush=True)
        meta = run(p, args.out, progress=not args.quiet)
        h = meta["report"]["headline"]
        fmt = lambda v: "-" if v is None else f"{v:.1f} m"  # noqa: E731
        print(f"{p.recipe.kind}: {h['method']}: your validation encounters {fmt(h['validation_before_m'])} -> "
              f"{fmt(h['validation_after_m'])}; default simulated set {fmt(h['default_before_m'])} -> "
              f"{fmt(h['default_after_m'])} ({meta['trained_on']['seconds']:.0f} s) -> {args.out}/{p.recipe.kind}.safetensors")
    print(f"wrote {args.out}/report.json (before/after metrics), the ONNX export and {args.out}/profile.json")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a model on simulated data and write weights (safetensors + JSON)")
    t.add_argument("kind", choices=["causal", "bidir", "pooled", "all"])
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--windows", type=int, default=1600, help="training windows (encounters for pooled)")
    t.add_argument("--length", type=int, default=512, help="window length in samples")
    t.add_argument("--epochs", type=int, default=12, help="most epochs to train (early stopping may end sooner)")
    t.add_argument("--batch-size", type=int, default=None, help="default 32 (simulator), 8 (--from)")
    t.add_argument("--lr", type=float, default=None,
                   help="default 3e-3; with --from: 1e-3 when fine-tuning (--init-from), else 3e-3")
    t.add_argument("--seed", type=int, default=1, help="seed of the data, the split and the initial weights")
    t.add_argument("--loss", choices=["mse", "l1", "huber"], default="mse",
                   help="training loss on the in-encounter samples (l1: what the shipped models were fine-tuned with)")
    t.add_argument("--pooling", choices=["mean", "last", "attention", "multihead"], default="mean",
                   help="pooling of the pooled model")
    t.add_argument("--manoeuvre-prob", type=float, default=0.0, help="share of manoeuvring passes in training")
    t.add_argument("--tbptt", type=int, default=None, metavar="K",
                   help="causal: treat each window as a long stream, state carried over chunks of K steps "
                        "(with --from: default 512)")
    t.add_argument("--init-from", default=None, metavar="DIR",
                   help="fine-tune: start from the weights in DIR ('shipped': the shipped weights); with --from "
                        "the architecture (input channels, uncertainty head) follows them")
    t.add_argument("--patience", type=int, default=5, help="epochs without validation gain before stopping")
    t.add_argument("--max-minutes", type=float, default=None, help="stop training after this long")
    t.add_argument("--max-seconds", type=float, default=None, help="stop training after this many seconds")
    t.add_argument("--threads", type=int, default=2, help="torch threads for training")
    t.add_argument("--randomised", action="store_true",
                   help="domain-randomised training data (docs/simulator.md): period input channel, "
                        "uncertainty head, radar profile written with the weights")
    t.add_argument("--radar", default=None, metavar="PROFILE.json",
                   help="radar profile to train for (R_max, noise RMS, nominal rate; with --randomised)")
    t.add_argument("--per-stream", type=int, default=8,
                   help="--randomised bidir/pooled: windows (encounters) cut from each randomised stream")
    t.add_argument("--from", dest="from_recordings", nargs="+", default=None, metavar="REC.mcap",
                   help="train on your labelled recordings instead of the simulator (docs/your-radar.md): "
                        "validation split by encounter, simulated rows mixed in, report.json before/after")
    t.add_argument("--labels", nargs="+", default=None, metavar="FILE.csv",
                   help="with --from: one label file per recording, in order (default: the truth channel)")
    t.add_argument("--mix-sim", type=float, default=None, metavar="FRACTION",
                   help="with --from: share of simulated encounters in the training rows (default 0.7)")
    t.add_argument("--val-fraction", type=float, default=0.2,
                   help="with --from: share of the encounter groups held out for validation")
    t.add_argument("--report-encounters", type=int, default=100,
                   help="with --from: how many simulated encounters report.json scores the model on (default: 100)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
