"""A short smoke run of ``minibertgen demo`` (the README's main job) on the real MiniLM checkpoint."""

from __future__ import annotations

import csv

from minibertgen.cli import main
from minibertgen.demo import ascii_curve, scores
from minibertgen.fetch import find_weights

from .conftest import require_path


def test_demo_smoke_run(tmp_path, capsys):
    require_path(find_weights("minilm-l6") or tmp_path / "minilm-l6", "the MiniLM checkpoint")
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "3", "--heldout", "3", "--train-size", "24", "--max-new-tokens", "6",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "warm start" in text and "random init" in text and "exact match" in text and "prediction:" in text
    rows = list(csv.DictReader(open(out / "loss.csv")))
    assert [r["step"] for r in rows] == ["1", "2", "3"] and set(rows[0]) == {"step", "warm", "random"}
    assert (out / "model" / "model.safetensors").exists() and (out / "model" / "vocab.txt").exists()
    assert (out / "warm" / "checkpoint-000003").is_dir() and (out / "random" / "checkpoint-000003").is_dir()


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
