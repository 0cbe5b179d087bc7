"""``radarstream train``: train a model on simulated data and write weights (safetensors + JSON).

Heavy modules (torch, the recipes) are imported in the handler only: every ``radarstream``
command builds this parser.
"""

from __future__ import annotations

import argparse


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from tools.recipes import TrainRecipe, train

    torch.set_num_threads(args.threads)
    kinds = ["causal", "bidir", "pooled"] if args.kind == "all" else [args.kind]
    for kind in kinds:
        recipe = TrainRecipe(
            kind=kind, windows=args.windows, length=args.length, epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, seed=args.seed, loss=args.loss,
            manoeuvre_prob=args.manoeuvre_prob, max_minutes=args.max_minutes, pooling=args.pooling,
            tbptt=args.tbptt if kind == "causal" else None, patience=args.patience,
            init_from=args.init_from, randomised=args.randomised, radar=args.radar,
            per_stream=args.per_stream,
        )
        meta = train(recipe, args.out, progress=not args.quiet)
        print(f"{kind}: validation MAE {meta['validation']['mae_m']:.1f} m "
              f"({meta['trained_on']['seconds']:.0f} s) -> {args.out}/{kind}.safetensors")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a model on simulated data and write weights (safetensors + JSON)")
    t.add_argument("kind", choices=["causal", "bidir", "pooled", "all"])
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--windows", type=int, default=1600, help="training windows (encounters for pooled)")
    t.add_argument("--length", type=int, default=512, help="window length in samples")
    t.add_argument("--epochs", type=int, default=12)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--loss", choices=["mse", "l1", "huber"], default="mse")
    t.add_argument("--pooling", choices=["mean", "last", "attention", "multihead"], default="mean",
                   help="pooling of the pooled model")
    t.add_argument("--manoeuvre-prob", type=float, default=0.0, help="share of manoeuvring passes in training")
    t.add_argument("--tbptt", type=int, default=None, metavar="K",
                   help="causal: treat each window as a long stream, state carried over chunks of K steps")
    t.add_argument("--init-from", default=None, metavar="DIR", help="fine-tune: start from the weights in DIR")
    t.add_argument("--patience", type=int, default=5, help="epochs without validation gain before stopping")
    t.add_argument("--max-minutes", type=float, default=None, help="stop training after this long")
    t.add_argument("--threads", type=int, default=2, help="torch threads for training")
    t.add_argument("--randomised", action="store_true",
                   help="domain-randomised training data (docs/simulator.md): period input channel, "
                        "uncertainty head, radar profile written with the weights")
    t.add_argument("--radar", default=None, metavar="PROFILE.json",
                   help="radar profile to train for (R_max, noise RMS, nominal rate; with --randomised)")
    t.add_argument("--per-stream", type=int, default=8,
                   help="--randomised bidir/pooled: windows (encounters) cut from each randomised stream")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
