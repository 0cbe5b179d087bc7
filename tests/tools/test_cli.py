"""The command line: every sub-command has --help; train/export/bench quality run end to end."""

import json
import subprocess
import sys

import pytest

from tools.cli import build_parser, main


def _subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


def test_help_lists_the_subcommands():
    out = subprocess.run([sys.executable, "-m", "tools.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("serve", "simulate", "train", "export", "bench"):
        assert name in out
        assert name in _subcommands()


@pytest.mark.parametrize("name", _subcommands())
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_train_then_export_then_bench_quality(tmp_path):
    out = tmp_path / "w"
    assert main(["train", "all", "--out", str(out), "--windows", "16", "--length", "64", "--epochs", "1",
                 "--quiet", "--threads", "1"]) == 0
    meta = json.loads((out / "causal.json").read_text())
    assert meta["config"]["hidden_size"] == 64 and "mae_m" in meta["validation"]
    assert meta["recipe"]["kind"] == "causal"
    assert main(["export", "--weights", str(out)]) == 0
    assert {p.name for p in out.glob("*.onnx")} == {"causal.onnx", "bidir.onnx", "pooled.onnx"}
    doc = tmp_path / "bench.md"
    assert main(["bench", "quality", "--quick", "--encounters", "20", "--weights", str(out), "--doc", str(doc), "--threads", "1"]) == 0
    text = doc.read_text()
    assert "<!-- quality-quick:start -->" in text and "Manoeuvring passes" in text
    assert "classical LS, whole encounter" in text and "hybrid" in text


def test_missing_weights_give_a_clear_error(tmp_path, capsys):
    assert main(["export", "--weights", str(tmp_path)]) == 2
    assert "no weights" in capsys.readouterr().err


def test_explain_method_names_match_the_attribution_layer():
    from models.attribution import METHODS
    from tools.cmd_explain import METHOD_NAMES
    from tools.explain_options import METHOD_NAMES as SHARED

    assert tuple(METHOD_NAMES) == tuple(SHARED) == tuple(METHODS)
