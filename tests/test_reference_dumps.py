"""Rung 2 of the verification ladder: the committed reference dumps (transformers 4.57.6, float64).

Each case folder in tests/fixtures/reference/ was written by scripts/make_reference_dumps.py with
transformers' own save_pretrained, so these tests also prove that transformers' files load here.
No torch needed. Tolerances (and what sets their size) live in minibertgen/verify.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from minibertgen.testing import assert_close
from minibertgen.verify import dump_cases, run_case, tolerance

from .conftest import REFERENCE_DUMPS

CASES = dump_cases(REFERENCE_DUMPS)


@pytest.mark.parametrize("case", CASES)
def test_float64_matches_reference(case):
    model, ours, io = run_case(REFERENCE_DUMPS / case, "float64")
    assert not model.load_report.new, f"a full checkpoint should initialise nothing: {model.load_report}"
    assert len(ours) >= 3
    for name, value in ours.items():
        assert name in io, f"the dump lacks {name}"
        assert_close(value, io[name], atol=tolerance(case, name, "float64"), name=f"{case}: {name}")


@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("encoder")])
def test_float32_logits_match_reference(case):
    _, ours, io = run_case(REFERENCE_DUMPS / case, "float32")
    assert ours["logits"].dtype == np.float32
    for name in ("logits", "loss"):
        assert_close(ours[name], io[name], atol=tolerance(case, name, "float32"), name=f"{case}: float32 {name}")


def test_every_position_type_and_part_is_covered():
    kinds = {json.loads((REFERENCE_DUMPS / c / "case.json").read_text())["kind"] for c in CASES}
    assert kinds == {"encoder", "decoder", "encoder-decoder"}
    for pos in ("absolute", "relative_key", "relative_key_query"):
        assert any(pos in c for c in CASES if c.startswith("bert2bert")), pos
        assert any(pos in c for c in CASES if c.startswith("encoder")), pos


def test_a_wrong_number_fails_the_comparison():
    """The check itself can fail: a perturbed logit is caught and named."""
    _, ours, io = run_case(REFERENCE_DUMPS / "bert2bert_absolute_tied", "float64")
    wrong = ours["logits"].copy()
    wrong[0, 1, 2] += 1e-6
    with pytest.raises(AssertionError, match=r"logits.*\(0, 1, 2\)"):
        assert_close(wrong, io["logits"], atol=tolerance("bert2bert_absolute_tied", "logits", "float64"), name="logits")
