"""Notebook 04's checker: the package's lookup passes, each classic mistake fails with a hint naming it."""

from __future__ import annotations

import numpy as np
import pytest

from minibertgen.attention import relative_position_embeddings
from minibertgen.exercises import check_relative_distances, relative_distance_index


def _index(Tq, Tk, P, sign=1, offset=None, cached=True):
    l = ((Tk - Tq) if cached else 0) + np.arange(Tq)[:, None]  # noqa: E741
    return sign * (l - np.arange(Tk)[None, :]) + (P - 1 if offset is None else offset)


def key_minus_query(Tq, Tk, P):
    return _index(Tq, Tk, P, sign=-1)


def without_the_offset(Tq, Tk, P):
    return _index(Tq, Tk, P, offset=0)


def offset_by_p(Tq, Tk, P):
    return _index(Tq, Tk, P, offset=P)


def queries_from_position_zero(Tq, Tk, P):
    return _index(Tq, Tk, P, cached=False)


def float_indices(Tq, Tk, P):
    return _index(Tq, Tk, P).astype(np.float64)


def test_the_solution_passes_and_is_the_package_lookup(capsys):
    check_relative_distances(relative_distance_index)
    assert capsys.readouterr().out.startswith("check_relative_distances: all ")
    rng = np.random.default_rng(0)
    table = rng.normal(size=(2 * 6 - 1, 3))
    rows, _ = relative_position_embeddings(table, 2 + np.arange(3), 5, 6)  # 3 queries after 2 cached keys
    np.testing.assert_array_equal(rows, table[relative_distance_index(3, 5, 6)])


@pytest.mark.parametrize(("wrong", "hint"), [
    (key_minus_query, "the sign"),
    (without_the_offset, "add the offset max_positions - 1"),
    (offset_by_p, "not max_positions"),
    (queries_from_position_zero, r"query i sits at position \d+ \+ i, not i"),
    (float_indices, r"np.arange \(ints\)"),
])  # fmt: skip
def test_a_known_wrong_answer_fails_with_a_hint_naming_the_mistake(wrong, hint):
    with pytest.raises(AssertionError, match=rf"^check_relative_distances: (.|\n)*\nHint: .*{hint}"):
        check_relative_distances(wrong)


def test_a_stub_passes_through():
    def stub(Tq, Tk, P):
        raise NotImplementedError("your code here")

    with pytest.raises(NotImplementedError):
        check_relative_distances(stub)
