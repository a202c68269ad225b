"""Notebook 12's exercise checker, check_top_p: the package's top_p passes, each known-wrong nucleus
rule fails with a hint that names its mistake, a stub's NotImplementedError passes through."""

from __future__ import annotations

import numpy as np
import pytest

from minibertgen import processors
from minibertgen.exercises import check_top_p


def softmax(scores):
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def nucleus(scores, p, weights, *, keep_crossing=True, keep_best=True, sort=True):
    """A top-p written the way a learner might, with one switch per mistake."""
    order = np.argsort(-weights, axis=1, kind="stable") if sort else np.tile(np.arange(scores.shape[1]), (len(scores), 1))
    w = np.take_along_axis(weights, order, axis=1)
    cumulative = np.cumsum(w, axis=1)
    keep_sorted = (cumulative - w < p) if keep_crossing else (cumulative <= p)
    if keep_best:
        keep_sorted[:, 0] = True
    keep = np.empty_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=1)
    return np.where(keep, scores, -np.inf).astype(scores.dtype)


def right(scores, p):
    return nucleus(scores, p, softmax(scores))


def drops_the_crossing_token(scores, p):
    return nucleus(scores, p, softmax(scores), keep_crossing=False)


def keeps_nothing_at_p_0(scores, p):
    return nucleus(scores, p, softmax(scores), keep_best=False)


def index_order(scores, p):
    return nucleus(scores, p, softmax(scores), sort=False)


def on_logits(scores, p):
    return nucleus(scores, p, scores)


def large_negative_instead_of_inf(scores, p):
    out = right(scores, p)
    return np.where(np.isinf(out), np.float32(-1e30), out).astype(scores.dtype)


def renormalised(scores, p):
    out = right(scores, p)
    with np.errstate(divide="ignore"):  # log 0 = -inf where removed
        return np.log(softmax(out)).astype(scores.dtype)


def test_the_package_solution_and_a_hand_written_one_pass(capsys):
    check_top_p(lambda s, p: processors.top_p(s, None, p))
    check_top_p(right)
    assert capsys.readouterr().out.startswith("check_top_p: ")


@pytest.mark.parametrize(("wrong", "hint"), [
    (drops_the_crossing_token, "token that crosses p is in it"),
    (keeps_nothing_at_p_0, "you kept no token at all"),
    (index_order, "token-index order"),
    (on_logits, "raw scores"),
    (large_negative_instead_of_inf, "exactly -inf"),
    (renormalised, "returned unchanged"),
])  # fmt: skip
def test_a_known_wrong_answer_fails_naming_its_mistake(wrong, hint):
    with pytest.raises(AssertionError, match=rf"^check_top_p: (.|\n)*\nHint: .*{hint}"):
        check_top_p(wrong)


def test_a_stub_says_not_implemented():
    def stub(scores, p):
        raise NotImplementedError("your code here")

    with pytest.raises(NotImplementedError):
        check_top_p(stub)


def test_a_crash_is_graded_with_the_input():
    with pytest.raises(AssertionError, match=r"raised ValueError.*p=0.7"):
        check_top_p(lambda s, p: (_ for _ in ()).throw(ValueError("boom")))
