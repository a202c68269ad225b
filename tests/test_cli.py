"""The ``minibertgen`` command: each subcommand works, and bad input gives one line, no traceback."""

from __future__ import annotations

import csv
import json
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


def test_train_warm_starts_from_minilm_and_the_loss_drops(tmp_path, capsys):
    """Issue #3's end-to-end check: a warm-started bert2bert fine-tunes on a small JSONL file."""
    from minibertgen.fetch import find_weights

    from .conftest import require_path

    weights = require_path(find_weights("minilm-l6") or tmp_path / "minilm-l6", "the MiniLM checkpoint")
    data = tmp_path / "train.jsonl"
    pairs = [("anna sees ben.", "ben is seen by anna."), ("carl helps dora.", "dora is helped by carl."),
             ("emil calls fay.", "fay is called by emil."), ("gus sees hana.", "hana is seen by gus.")]  # fmt: skip
    data.write_text("".join(json.dumps({"source": s, "target": t}) + "\n" for s, t in pairs))
    args = ["train", "--train", str(data), "--out", str(tmp_path / "run"), "--warm-start", str(weights),
            "--steps", "6", "--batch-size", "4", "--lr", "3e-4", "--warmup", "1", "--save-every", "3"]  # fmt: skip
    assert main(args) == 0
    rows = list(csv.DictReader(open(tmp_path / "run" / "loss.csv")))
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) == 6 and losses[-1] < losses[0] - 1.0, losses
    checkpoint = tmp_path / "run" / "checkpoint-000006"
    assert (checkpoint / "vocab.txt").exists() and (checkpoint / "optimizer.safetensors").exists()
    again = mbg.EncoderDecoderModel.from_pretrained(checkpoint)
    assert (again.config.decoder_start_token_id, again.config.pad_token_id) == (101, 0)  # [CLS], [PAD]
    out = capsys.readouterr().out
    assert "loss" in out and "copied" in out  # the default: cross-attention copied from self-attention


def test_train_with_random_cross_attention_warns_that_the_source_is_unused(tmp_path, capsys):
    """After 2 steps the paper's random cross-attention has not begun to read the source: --eval
    reports the shuffled-source loss beside the true one, and the near-zero gap gets a warning."""
    from minibertgen.fetch import find_weights

    from .conftest import require_path

    weights = require_path(find_weights("minilm-l6") or tmp_path / "minilm-l6", "the MiniLM checkpoint")
    data = tmp_path / "train.jsonl"
    pairs = [("anna sees ben.", "ben is seen by anna."), ("carl helps dora.", "dora is helped by carl.")]
    data.write_text("".join(json.dumps({"source": s, "target": t}) + "\n" for s, t in pairs))
    args = ["train", "--train", str(data), "--eval", str(data), "--out", str(tmp_path / "run"), "--warm-start",
            str(weights), "--cross-attention-init", "random", "--steps", "2", "--batch-size", "2"]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "shuffled sources" in captured.out and "new (initialised here" in captured.out
    assert "barely reads its source" in captured.err
    row = list(csv.DictReader(open(tmp_path / "run" / "loss.csv")))[-1]
    assert float(row["eval_shuffled_loss"]) > 0 and float(row["eval_loss"]) > 0


def tiny_generation_folder(tmp_path):
    """A random tiny bert2bert with MiniLM's WordPiece vocabulary, saved in tmp_path/m."""
    import shutil

    from minibertgen.fetch import find_weights

    from .conftest import require_path

    weights = require_path(find_weights("minilm-l6") or tmp_path / "minilm-l6", "the MiniLM checkpoint")
    part = mbg.BertGenerationConfig(vocab_size=30522, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=8)  # fmt: skip
    config = mbg.EncoderDecoderConfig(part, part, decoder_start_token_id=101, pad_token_id=0, eos_token_id=102)
    mbg.EncoderDecoderModel(config, seed=0).save_pretrained(tmp_path / "m")
    shutil.copy(weights / "vocab.txt", tmp_path / "m" / "vocab.txt")
    return tmp_path / "m"


def test_generate_reads_texts_and_stdin(tmp_path, capsys, monkeypatch):
    import io

    tiny_generation_folder(tmp_path)
    assert main(["generate", "--model", str(tmp_path / "m"), "a first text.", "a second one.", "--max-new-tokens",
                 "4", "--num-beams", "2", "--scores"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.strip().split("\n")
    assert len(lines) == 2 and all(float(line.split("\t")[0]) < 0 for line in lines)
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\n\nand more\n"))
    assert main(["generate", "--model", str(tmp_path / "m"), "--max-new-tokens", "3", "--num-beams", "1"]) == 0
    assert len(capsys.readouterr().out.strip().split("\n")) == 2
    assert main(["generate", "--model", str(tmp_path / "m"), "x", "--num-beams", "0"]) == 1
    assert "num_beams" in capsys.readouterr().err


def test_generate_samples_reproducibly_and_streams(tmp_path, capsys):
    model = str(tiny_generation_folder(tmp_path))
    texts = ["a first text.", "a second one.", "and a third"]

    def run(*flags):
        assert main(["generate", "--model", model, *texts, "--max-new-tokens", "6", *flags]) == 0
        return capsys.readouterr().out.strip().split("\n")

    sampled = run("--do-sample", "--top-p", "0.9", "--temperature", "1.5", "--seed", "3")
    assert len(sampled) == 3
    assert run("--do-sample", "--top-p", "0.9", "--temperature", "1.5", "--seed", "3", "--batch-size", "1") == sampled
    assert run("--do-sample", "--top-p", "0.9", "--temperature", "1.5", "--seed", "4") != sampled
    greedy = run("--num-beams", "1")
    streamed = run("--stream")  # greedy, one text at a time, printed as the tokens come
    # TextStreamer prints up to each space, as transformers' does: only spacing may differ
    assert [line.replace(" ", "") for line in streamed] == [line.replace(" ", "") for line in greedy]
    assert main(["generate", "--model", model, "x", "--batch-size", "0"]) == 1
    assert "--batch-size must be >= 1" in capsys.readouterr().err
    assert main(["generate", "--model", model, "x", "--stream", "--num-beams", "2"]) == 1
    assert "streamer" in capsys.readouterr().err


def test_encode_prints_tokens_ids_and_hidden_summary(tmp_path, capsys):
    from minibertgen.fetch import find_weights

    from .conftest import require_path

    weights = require_path(find_weights("minilm-l6") or tmp_path / "minilm-l6", "the MiniLM checkpoint")
    assert main(["encode", str(weights), "Hello, my dog is cute.", "--fold-token-type"]) == 0
    out = capsys.readouterr().out
    # reference §13: the published ids of this sentence under the MiniLM vocabulary
    assert "[101, 7592, 1010, 2026, 3899, 2003, 10140, 1012, 102]" in out
    assert "shape (9, 384)" in out and "'[CLS]'" in out
