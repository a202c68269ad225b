"""A short smoke run of ``minibertgen demo`` (the README's main job) on the real MiniLM checkpoint."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from minibertgen.cli import main
from minibertgen.demo import INITIALISATIONS, PAPER_TABLE, ascii_curve, scores, table_text
from minibertgen.fetch import find_weights
from minibertgen.model import EncoderDecoderModel

from .conftest import require_path


def test_demo_smoke_run(tmp_path, capsys):
    require_path(find_weights("minilm-l6") or tmp_path / "minilm-l6", "the MiniLM checkpoint")
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "3", "--heldout", "3", "--train-size", "24", "--max-new-tokens", "6",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "estimate:" in text and "minutes" in text
    assert "warm start" in text and "random init" in text and "exact match" in text and "shuffled sources" in text
    rows = list(csv.DictReader(open(out / "loss.csv")))
    assert [r["step"] for r in rows] == ["1", "2", "3"] and set(rows[0]) == {"step", "warm", "random"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["seconds"] > 0
    assert summary["data"] == {"n_train": 24, "n_heldout": 3, "seed": 0}
    for name in ("warm", "random"):
        assert {"heldout_loss", "shuffled_source_loss", "exact_match", "token_accuracy"} <= set(summary[name])
        diagnostics = list(csv.DictReader(open(out / name / "loss.csv")))
        assert {"loss", "lr", "grad_norm", "eval_loss", "eval_shuffled_loss"} <= set(diagnostics[0])
        assert diagnostics[-1]["eval_shuffled_loss"] != ""
    assert [set(r) for r in summary["rows"]] == [{"source", "target", "warm", "random"}] * 3
    # the two run folders are models with their tokenizer: generate --model runs/demo/warm works
    capsys.readouterr()
    assert main(["generate", "--model", str(out / "warm"), "--max-new-tokens", "4", "Tom was hungry. Tom ate a cake."]) == 0
    assert capsys.readouterr().out.strip()
    again = EncoderDecoderModel.from_pretrained(out / "random")
    assert again.config.decoder_start_token_id == 101  # [CLS], from the tokenizer


def test_demo_rejects_an_empty_heldout_set(tmp_path, capsys):
    require_path(find_weights("minilm-l6") or tmp_path / "minilm-l6", "the MiniLM checkpoint")
    assert main(["demo", "--heldout", "0", "--out", str(tmp_path), "--no-progress"]) != 0
    assert "at least one" in capsys.readouterr().err


def test_scores_count_exact_matches_and_aligned_tokens():
    class Words:  # a test double: one id per word, end token 2
        pad_token_id, cls_token_id, sep_token_id = 0, 1, 2
        words = {"a": 3, "b": 4, "c": 5}

        def encode(self, text, add_special_tokens=True):
            ids = [self.words[w] for w in text.split()]
            return [1, *ids, 2] if add_special_tokens else ids

        def decode(self, ids, skip_special_tokens=False):
            names = {v: k for k, v in self.words.items()}
            return " ".join(names[i] for i in ids if i in names)

    pairs = [("a", "a b"), ("b", "c a")]
    result = scores(Words(), pairs, ["a b", "c b"], [[3, 4, 2], [5, 4]])
    assert result == {"exact_match": 0.5, "token_accuracy": 4 / 6}  # 3 of 3, then 1 of 3 (c; not b, not end)


def test_ascii_curve_draws_one_point_per_column():
    rows = ascii_curve([4.0, 3.0, 2.0, 1.0], width=4, height=4)
    assert len(rows) == 4 and rows[0].endswith("*   ") and rows[-1].endswith("   *")


def test_table_text_puts_the_papers_figures_beside_the_random_start_rows():
    assert set(PAPER_TABLE) == set(INITIALISATIONS)
    row = {"exact_match": 0.5, "heldout_loss": 1.0, "shuffled_source_loss": 2.0, "distinct_predictions": 3}
    rows = [{"initialisation": "rnd2bert", "cross_attention_init": c, **row} for c in ("random", "self_attention")]
    lines = table_text(rows).splitlines()
    assert "DiscoFuse 60.0 / 87.6" in lines[1] and "paper" not in lines[2]  # Rothe et al., Table 2: rnd2bert


def load_demo_seeds():
    spec = importlib.util.spec_from_file_location("demo_seeds", Path(__file__).parents[1] / "scripts" / "demo_seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_seeds_runs_each_seed_in_its_own_process_and_tables_the_range(tmp_path, capsys):
    require_path(find_weights("minilm-l6") or tmp_path / "minilm-l6", "the MiniLM checkpoint")
    demo_seeds = load_demo_seeds()
    out = tmp_path / "seeds"
    assert demo_seeds.main(["--seeds", "3", "4", "3", "--jobs", "2", "--steps", "2", "--train-size", "16",
                            "--heldout", "2", "--max-new-tokens", "4", "--random", "--out", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    for seed in (3, 4):
        record = json.loads((out / f"seed-{seed}.json").read_text())
        assert record["seed"] == seed and record["steps"] == 2
        for name in ("warm", "random"):
            assert {"exact_match", "source_gap", "distinct_predictions", "seconds"} <= set(record[name])
            assert [set(row) for row in record[name]["rows"]] == [{"source", "target", "prediction"}] * 2
        assert f"| {seed} | warm |" in text and f"| {seed} | random |" in text
    # the two seeds draw different data: the held-out sources differ
    sources = [[row["source"] for row in json.loads((out / f"seed-{s}.json").read_text())["warm"]["rows"]] for s in (3, 4)]
    assert sources[0] != sources[1]
    assert "| all | warm (min-max) |" in text and text.count("seed 3: started") == 1


def test_demo_seeds_table_gives_the_range_over_seeds():
    demo_seeds = load_demo_seeds()
    scores = {"exact_match": 1.0, "token_accuracy": 1.0, "heldout_loss": 0.03, "shuffled_source_loss": 4.9,
              "source_gap": 4.87, "distinct_predictions": 32}  # fmt: skip
    worse = {**scores, "exact_match": 0.906, "distinct_predictions": 31}
    text = demo_seeds.table([{"seed": 0, "warm": scores}, {"seed": 1, "warm": worse}], ["warm"])
    assert "| 1 | warm | 0.906 |" in text
    assert text.splitlines()[-1].startswith("| all | warm (min-max) | 0.906-1.000 | 1.000-1.000 | 0.030-0.030")
    assert text.splitlines()[-1].endswith("| 31-32 |")


def test_demo_seeds_refuses_a_size_below_one(capsys):
    demo_seeds = load_demo_seeds()
    with pytest.raises(SystemExit):
        demo_seeds.main(["--jobs", "0"])
    assert "--jobs must be at least 1, got 0" in capsys.readouterr().err
