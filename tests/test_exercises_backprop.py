"""The cross-entropy backward checker of notebook 08: the package's solution passes, a stub's
NotImplementedError passes through, and each plausible mistake fails with a hint that names it."""

from __future__ import annotations

import numpy as np
import pytest

from minibertgen import exercises
from minibertgen.ops import cross_entropy_backward, cross_entropy_forward


def not_written(*args):
    raise NotImplementedError("your code here")


def solution(logits, labels):
    return cross_entropy_backward(1.0, cross_entropy_forward(logits, labels)[1])


def _softmax_minus_onehot(logits, labels):
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    grad = z / z.sum(axis=-1, keepdims=True)
    valid = labels != -100
    grad[np.flatnonzero(valid), labels[valid]] -= 1.0
    return grad, valid


def forgetting_one_over_n(logits, labels):
    grad, valid = _softmax_minus_onehot(logits, labels)
    return grad * valid[:, None]


def not_zeroing_ignored_rows(logits, labels):
    grad, valid = _softmax_minus_onehot(logits, labels)
    return grad / valid.sum()  # ignored rows keep their softmax


def dividing_by_all_positions(logits, labels):
    grad, valid = _softmax_minus_onehot(logits, labels)
    return grad * valid[:, None] / len(labels)


def sign_flipped(logits, labels):
    return -solution(logits, labels)


def test_checker_passes_the_package_solution(capsys):
    exercises.check_cross_entropy_backward(solution)
    assert capsys.readouterr().out.startswith("check_cross_entropy_backward: all 20")


def test_checker_lets_a_stub_say_not_implemented():
    with pytest.raises(NotImplementedError):
        exercises.check_cross_entropy_backward(not_written)


@pytest.mark.parametrize(("wrong", "hint"), [
    (forgetting_one_over_n, r"forgot the 1/n"),
    (not_zeroing_ignored_rows, r"its row of dlogits must be zero"),
    (dividing_by_all_positions, r"divided by every position"),
    (sign_flipped, r"sign is flipped"),
])  # fmt: skip
def test_checker_names_the_mistake(wrong, hint):
    with pytest.raises(AssertionError, match=rf"^check_cross_entropy_backward: (.|\n)*\nHint: .*{hint}"):
        exercises.check_cross_entropy_backward(wrong)
