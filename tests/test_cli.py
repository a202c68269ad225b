"""The ``minibertgen`` command: each subcommand works, and bad input gives one line, no traceback."""

from __future__ import annotations

import subprocess
import sys

import minibertgen as mbg
from minibertgen.cli import main

from .conftest import REFERENCE_DUMPS


def test_info_prints_the_layout(tmp_path, capsys):
    cfg = mbg.BertGenerationConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=10)  # fmt: skip
    mbg.EncoderDecoderModel(mbg.EncoderDecoderConfig(cfg, cfg), seed=0).save_pretrained(tmp_path)
    assert main(["info", str(tmp_path), "--layout"]) == 0
    out = capsys.readouterr().out
    assert "EncoderDecoderModel" in out and "decoder.bert.encoder.layer.0.crossattention.self.query.weight" in out


def test_verify_against_the_dumps_passes(capsys):
    assert main(["verify", "--no-live", "--dumps", str(REFERENCE_DUMPS)]) == 0
    out = capsys.readouterr().out
    assert "within tolerance" in out and " NO" not in out


def test_bad_path_exits_nonzero_with_one_line_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "minibertgen", "info", str(tmp_path / "absent")],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "absent" in result.stderr
    assert "Traceback" not in result.stderr
