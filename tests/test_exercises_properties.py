"""Notebook 14's checker: a good property passes; one that asserts nothing, one too weak to catch a planted
bug, and one that fails on the correct softmax are each refused with a hint."""

from __future__ import annotations

import numpy as np
import pytest

from minibertgen.exercises import PLANTED_BUGS, check_softmax_property, softmax_property


def asserts_nothing(softmax, x):
    softmax(x)


def only_rows_sum_to_one(softmax, x):
    assert np.allclose(softmax(x).sum(axis=-1), 1.0)


def sum_and_order_but_not_that_x_matters(softmax, x):
    p = softmax(x)
    assert np.allclose(p.sum(axis=-1), 1.0)
    assert np.all((p[..., :, None] >= p[..., None, :])[x[..., :, None] >= x[..., None, :]])


def strictly_positive(softmax, x):
    """Wrong on the correct softmax: exp(-2000) underflows to exactly 0.0."""
    assert np.all(softmax(x) > 0)


def exact_sum(softmax, x):
    """Wrong on the correct softmax: float rounding makes a row sum 1 - 1e-16 now and then."""
    assert np.all(softmax(x).sum(axis=-1) == 1.0)


def test_the_solution_passes(capsys):
    check_softmax_property(softmax_property)
    assert capsys.readouterr().out.startswith(f"check_softmax_property: your property holds for "
                                              f"minibertgen.ops.softmax_forward and caught all {len(PLANTED_BUGS)}")


@pytest.mark.parametrize(("wrong", "message"), [
    (asserts_nothing, "normalizes over the first axis"),
    (only_rows_sum_to_one, "is the softmax of -x"),
    (sum_and_order_but_not_that_x_matters, "is uniform"),
    (strictly_positive, "fails on the CORRECT softmax"),
    (exact_sum, "fails on the CORRECT softmax"),
])  # fmt: skip
def test_a_known_wrong_property_is_refused_with_a_hint(wrong, message):
    with pytest.raises(AssertionError, match=rf"^check_softmax_property: .*{message}(.|\n)*\nHint: "):
        check_softmax_property(wrong)


def test_each_planted_bug_is_really_wrong():
    """The bugs differ from softmax on an input the strategy can draw."""
    from minibertgen.ops import softmax_forward

    x = np.array([[800.0, 0.0, -3.0], [1.0, 2.0, 3.0]])
    right = softmax_forward(x.copy())[0]
    with np.errstate(all="ignore"):
        for bug, (buggy, _, _) in PLANTED_BUGS.items():
            assert not np.allclose(buggy(x.copy()), right, equal_nan=False), bug


def test_a_stub_passes_through():
    def stub(softmax, x):
        raise NotImplementedError("your code here")

    with pytest.raises(NotImplementedError):
        check_softmax_property(stub)
