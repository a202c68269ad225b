"""Notebook 02's checker: the package's embeddings pass, each classic mistake fails with a hint naming it."""

from __future__ import annotations

import numpy as np
import pytest

from minibertgen.exercises import check_embeddings, embeddings_after_past


def _ln(x, p, eps, ddof=0):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, ddof=ddof, keepdims=True) + eps) * p["weight"] + p["bias"]


def _parts(ids, p, past_length):
    T = ids.shape[1]
    return p["word_embeddings"]["weight"][ids], p["position_embeddings"]["weight"][past_length + np.arange(T)]


def positions_restart_at_zero(ids, p, past_length, eps):
    return embeddings_after_past(ids, p, 0, eps)


def layernorm_before_the_sum(ids, p, past_length, eps):
    words, at = _parts(ids, p, past_length)
    return _ln(words, p["LayerNorm"], eps) + at


def unbiased_variance(ids, p, past_length, eps):
    words, at = _parts(ids, p, past_length)
    return _ln(words + at, p["LayerNorm"], eps, ddof=1)


def eps_outside_the_root(ids, p, past_length, eps):
    x = sum(_parts(ids, p, past_length))
    return (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + eps) * p["LayerNorm"]["weight"] + p["LayerNorm"]["bias"]


def without_the_affine_step(ids, p, past_length, eps):
    x = sum(_parts(ids, p, past_length))
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)


def writing_into_the_table(ids, p, past_length, eps):
    out = embeddings_after_past(ids, p, past_length, eps)
    p["word_embeddings"]["weight"][0] = 0.0
    return out


def test_the_package_passes(capsys):
    check_embeddings(embeddings_after_past)
    assert capsys.readouterr().out.startswith("check_embeddings: all ")


@pytest.mark.parametrize(("wrong", "hint"), [
    (positions_restart_at_zero, r"past_length \+ arange\(T\), not arange\(T\)"),
    (layernorm_before_the_sum, "sum first, normalize after"),
    (unbiased_variance, "biased variance"),
    (eps_outside_the_root, "eps goes inside the square root"),
    (without_the_affine_step, "learned scale and shift"),
    (writing_into_the_table, "never write into a weight"),
])  # fmt: skip
def test_a_known_wrong_answer_fails_with_a_hint_naming_the_mistake(wrong, hint):
    with pytest.raises(AssertionError, match=rf"^check_embeddings: (.|\n)*\nHint: .*{hint}"):
        check_embeddings(wrong)


def test_a_stub_passes_through():
    def stub(ids, p, past_length, eps):
        raise NotImplementedError("your code here")

    with pytest.raises(NotImplementedError):
        check_embeddings(stub)
