"""Exercise on relative positions: the index into the distance table for each (query, key) pair (notebook 04)."""

from __future__ import annotations

import numpy as np

from ._grading import _call_learner, _exercise_error, _host


def relative_distance_index(query_len, key_len, max_positions):
    """The solution: the row of the distance table that query i and key j read, (Tq, Tk) ints.

    The queries are the last ``query_len`` of ``key_len`` positions (the first key_len - query_len are
    in the KV cache), so query i sits at position (key_len - query_len) + i, and the row is
    (that position - j) + max_positions - 1. It is ``attention.relative_position_embeddings`` looked
    up in a table whose row r holds the number r, so it can never drift from the package.
    """
    from ..attention import relative_position_embeddings

    table = np.arange(2 * max_positions - 1, dtype=np.float64)[:, None]  # (2P-1, 1): row r holds r
    positions = (key_len - query_len) + np.arange(query_len)  # (Tq,) each query's own position
    rows, _ = relative_position_embeddings(table, positions, key_len, max_positions)  # (Tq, Tk, 1)
    return rows[:, :, 0].astype(np.int64)


def _diagnose(got, Tq, Tk, P):
    past = Tk - Tq
    i, j = np.arange(Tq)[:, None], np.arange(Tk)[None, :]
    l = past + i  # noqa: E741 (the maths' name for the query position)
    mistakes = [  # the cache mistake first: without a cache it equals the right answer, so it never hides another
        (i - j + P - 1, f"with {past} cached key(s), query i sits at position {past} + i, not i: the queries "
                        "are the LAST query_len positions"),
        (j - l + P - 1, "the sign: the distance is query position minus key position, l - r, not r - l"),
        (l - j, "add the offset max_positions - 1, so that the most negative distance -(P - 1) reads row 0"),
        (l - j + P, "the offset is max_positions - 1, not max_positions: distance -(P - 1) must read row 0"),
        (j - i + P - 1, f"two mistakes: the sign (l - r, not r - l) and the query positions ({past} + i, not i)"),
        (i - j, f"the queries sit at positions {past} + i, and the offset max_positions - 1 is missing"),
    ]
    for wrong, why in mistakes:
        if got.shape == wrong.shape and np.array_equal(got, wrong):
            return why
    return ("row = (query position - key position) + max_positions - 1, with query i at position "
            "(key_len - query_len) + i and key j at position j")


def check_relative_distances(fn, *, n_cases: int = 30, seed: int = 0) -> None:
    """Grade ``fn(query_len, key_len, max_positions) -> (Tq, Tk) ints`` against ``relative_distance_index``
    (that is, ``attention.relative_position_embeddings``' lookup).

    Query i is at position (key_len - query_len) + i (the first key_len - query_len keys are cached);
    key j is at position j. The result holds the distance-table row (l - r) + max_positions - 1.
    """
    name = "check_relative_distances"
    rng = np.random.default_rng(seed)
    for case in range(n_cases):
        P = int(rng.integers(4, 12))
        Tk = int(rng.integers(1, P + 1))
        Tq = Tk if case % 2 == 0 else int(rng.integers(1, Tk + 1))  # odd cases: Tk - Tq keys in the cache
        if case == 1:
            Tq, Tk = 1, P  # one generation step at the last position: the cache case at its edge
        where = f"query_len={Tq}, key_len={Tk}, max_positions={P}"
        got = _host(_call_learner(name, fn, (Tq, Tk, P), where), name, "the index table")
        expected = relative_distance_index(Tq, Tk, P)
        if got.shape != expected.shape:
            raise _exercise_error(name, f"shape {got.shape}, expected (query_len, key_len) = {expected.shape} ({where})",
                                  "one row per query, one column per key; with a cache there are fewer queries "
                                  "than keys")
        if not np.issubdtype(got.dtype, np.integer):
            if not np.array_equal(got, np.round(got)):
                raise _exercise_error(name, f"the table holds non-integers ({where})", "indices are whole numbers")
            raise _exercise_error(name, f"dtype {got.dtype}: indices must be integers ({where})",
                                  "build them from np.arange (ints), or finish with .astype(int)")
        if not np.array_equal(got, expected):
            i, j = (int(v) for v in np.argwhere(got != expected)[0])
            raise _exercise_error(name, f"query {i}, key {j}: yours {int(got[i, j])}, expected {int(expected[i, j])} "
                                        f"({where})", _diagnose(got, Tq, Tk, P))
    print(f"{name}: all {n_cases} cases match minibertgen.attention.relative_position_embeddings' lookup")
