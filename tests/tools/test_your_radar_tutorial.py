"""docs/your-radar.md end to end: record (the stand-in radar), label, fine-tune, evaluate, serve.

Real MCAP files, real models, the real command line (``tools.cli.main`` in process). The stand-in
radar (streamer/offline/standin.py) is deliberately unlike the default one: 10 Hz, R_max 2000 m,
a noise floor 6 dB above the declared one. The fine-tuned causal model must beat the weights it
started from on a second, held-out recording of that radar. The budget is epochs, never wall
time. ``RADARSTREAM_TUTORIAL_INIT=DIR`` fine-tunes from DIR instead of the shipped weights (e.g.
``models/previous/default-radar``, the first wave's default-radar models).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import numpy as np

from models.bundle import shipped_weights_dir
from streamer.offline import standin
from tools.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "your-radar.md"


def _sh_commands(text: str) -> list[list[str]]:
    """Every command of the doc's ``sh`` blocks (continuations joined, comments dropped)."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                out.append(shlex.split(line))
    return out


def test_every_tutorial_command_parses():
    """The doc's commands are the product's: each radarstream line parses, the stand-in's too."""
    cmds = _sh_commands(DOC.read_text())
    seen = set()
    parser = build_parser()
    for words in cmds:
        if words[0] == "radarstream":
            args = parser.parse_args(words[1:])
            seen.add(args.command if args.command != "train" else f"train --from={bool(args.from_recordings)}")
        elif words[:3] == ["python", "-m", "streamer.offline.standin"]:
            seen.add("standin")
    assert {"standin", "record", "train --from=True", "evaluate", "serve", "replay", "score"} <= seen, seen


def _mae(path: Path, method: str = "causal LSTM @ CPA+1 s") -> float:
    return json.loads(path.read_text())["mae_m"][method]


def test_your_radar_in_five_steps(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    init = os.environ.get("RADARSTREAM_TUTORIAL_INIT", "shipped")
    init = init if init == "shipped" else str(REPO / init)  # relative to the repository
    # 1. record: the stand-in radar, a recording to train on and one to evaluate on
    assert standin.main(["--out", "run.mcap", "--labels", "run-labels.csv", "--duration", "2400", "--seed", "1"]) == 0
    assert standin.main(["--out", "test.mcap", "--labels", "test-labels.csv", "--duration", "2400", "--seed", "2"]) == 0
    standin.standin_profile().to_json("radar.json")
    # 2. label: the label files above (checked by train and evaluate, line by line)
    # 3. fine-tune every model (a short budget in epochs)
    assert main(["train", "all", "--from", "run.mcap", "--labels", "run-labels.csv", "--init-from", init,
                 "--radar", "radar.json", "--out", "my-weights", "--epochs", "6", "--patience", "6", "--threads", "1",
                 "--report-encounters", "40", "--quiet"]) == 0
    out = tmp_path / "my-weights"
    for kind in ("causal", "bidir", "pooled"):
        for ext in ("safetensors", "json", "onnx"):
            assert (out / f"{kind}.{ext}").is_file(), f"{kind}.{ext}"
    report = json.loads((out / "report.json").read_text())
    assert set(report) == {"causal", "bidir", "pooled"}
    for kind, r in report.items():
        assert r["encounters"]["validation"] >= 1 and r["encounters"]["simulated_train"] > 0
        assert r["headline"]["validation_after_m"] is not None and r["headline"]["default_after_m"] is not None
    profile = json.loads((out / "profile.json").read_text())
    assert profile["r_max_m"] == 2000.0 and profile["rate_envelope_hz"][0] <= 10.0
    # 4. evaluate the weights started from and the fine-tuned ones on the held-out recording
    before = str(shipped_weights_dir()) if init == "shipped" else init
    assert main(["evaluate", "test.mcap", "--labels", "test-labels.csv", "--radar", "radar.json", "--weights", before,
                 "--out", "before"]) == 0
    assert main(["evaluate", "test.mcap", "--labels", "test-labels.csv", "--weights", "my-weights", "--out", "after"]) == 0
    shipped, tuned = _mae(tmp_path / "before.evaluation.json"), _mae(tmp_path / "after.evaluation.json")
    print(f"causal MAE @ CPA+1 s on the held-out stand-in recording: {init} {shipped:.1f} m, fine-tuned {tuned:.1f} m")
    assert tuned < shipped
    # 5. serve with the new weights: the same engine and ONNX backend, offline (`score`)
    assert main(["score", "test.mcap", "--weights", "my-weights", "--out", "scored.csv"]) == 0
    import csv

    with open(tmp_path / "scored.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    causal = np.array([float(r["causal_m"]) for r in rows])
    assert len(rows) == 24000 and np.isfinite(causal).all() and causal.max() > 1000.0  # metres of the 2000 m radar
