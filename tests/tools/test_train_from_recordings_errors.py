"""``radarstream train … --from``: every bad input is one ``error:`` line, exit 2, nothing written."""

from __future__ import annotations

import shutil

import pytest

from streamer.offline.standin import standin_profile, write_standin
from tools.cli import main


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A real stand-in recording (no truth channel) of 600 s and its label file."""
    d = tmp_path_factory.mktemp("rec")
    _, n = write_standin(d / "run.mcap", d / "labels.csv", duration_s=600.0, seed=3)
    assert n >= 8
    standin_profile().to_json(d / "radar.json")
    return d


def _fails(capsys, args, out, *needles):
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    for n in needles:
        assert n in err[0], err[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}-")]  # no staging left
    return err[0]


def test_recording_without_labels_or_truth(recording, tmp_path, capsys):
    out = tmp_path / "out"
    _fails(capsys, ["train", "causal", "--from", str(recording / "run.mcap"), "--out", str(out), "--quiet"],
           out, "no truth channel", "--labels")


def test_label_file_with_bad_rows(recording, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    lines = (recording / "labels.csv").read_text().splitlines()
    lines.insert(2, "radar-0,50.0,40.0,100.0,")  # ends before it starts: line 3
    lines.append("radar-0,abc,60.0,100.0,")  # does not parse
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    msg = _fails(capsys, ["train", "causal", "--from", str(recording / "run.mcap"), "--labels", str(bad),
                          "--out", str(out), "--quiet"], out, "line 3")
    assert f"line {len(lines)}" in msg


def test_too_few_encounters(tmp_path, capsys):
    _, n = write_standin(tmp_path / "short.mcap", tmp_path / "short.csv", duration_s=90.0, seed=4)
    assert 0 < n < 4
    out = tmp_path / "out"
    _fails(capsys, ["train", "pooled", "--from", str(tmp_path / "short.mcap"), "--labels", str(tmp_path / "short.csv"),
                    "--out", str(out), "--quiet"], out, "too few labelled encounters")


def test_missing_recording(recording, tmp_path, capsys):
    out = tmp_path / "out"
    _fails(capsys, ["train", "causal", "--from", str(recording / "run.mcap"), str(tmp_path / "nope.mcap"),
                    "--out", str(out), "--quiet"], out, "nope.mcap", "no such recording")


def test_init_from_another_kind(recording, tiny_weights, tmp_path, capsys):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for ext in ("json", "safetensors"):  # pooled weights where the causal ones should be
        shutil.copy(tiny_weights / f"pooled.{ext}", wrong / f"causal.{ext}")
    out = tmp_path / "out"
    _fails(capsys, ["train", "causal", "--from", str(recording / "run.mcap"), "--labels", str(recording / "labels.csv"),
                    "--init-from", str(wrong), "--out", str(out), "--quiet"], out, "pooled")


def test_init_from_another_architecture(recording, tiny_weights, tmp_path, capsys):
    import json

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    shutil.copy(tiny_weights / "bidir.safetensors", wrong / "bidir.safetensors")
    meta = json.loads((tiny_weights / "bidir.json").read_text())
    meta["config"]["hidden_size"] = 32  # the tensors are 16 wide
    (wrong / "bidir.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    _fails(capsys, ["train", "bidir", "--from", str(recording / "run.mcap"), "--labels", str(recording / "labels.csv"),
                    "--init-from", str(wrong), "--out", str(out), "--quiet"], out, "does not match")


def test_init_from_missing_kind_and_bad_mix(recording, tiny_weights, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    base = ["train", "causal", "--from", str(recording / "run.mcap"), "--labels", str(recording / "labels.csv"),
            "--out", str(out), "--quiet"]
    _fails(capsys, base + ["--init-from", str(empty)], out, "causal.json")
    _fails(capsys, base + ["--mix-sim", "1.5"], out, "--mix-sim")
    _fails(capsys, ["train", "causal", "--labels", str(recording / "labels.csv"), "--out", str(out)], out, "--from")
