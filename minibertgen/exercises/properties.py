"""Exercise on property-based testing: a hypothesis property of softmax that catches planted bugs (notebook 14).

The learner writes ``prop(softmax, x)``: it calls ``softmax(x)`` and asserts what must hold for every
input x. The checker runs it under hypothesis against the package's softmax (it must pass on every
drawn x) and against softmaxes with planted bugs (it must fail on at least one x for each).
"""

from __future__ import annotations

import numpy as np

from ._grading import _exercise_error


def softmax_inputs():
    """The hypothesis strategy of the exercise: float64 arrays of 1-3 axes, at most 5 along each, values in
    [-1000, 1000] (so exp(x) alone overflows: exp(710) is inf in float64)."""
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)
    elements = st.floats(-1000.0, 1000.0, allow_nan=False, allow_infinity=False, width=64)
    return hnp.arrays(np.float64, shapes, elements=elements)


def _package_softmax(x):
    from ..ops import softmax_forward

    return softmax_forward(np.array(x, dtype=np.float64))[0]


def _softmax_over_first_axis(x):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def _softmax_without_max_shift(x):
    e = np.exp(x)  # overflows to inf for x > 709, and inf / inf = NaN
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_of_minus_x(x):
    return _package_softmax(-x)  # sums to 1, positive, finite: only the ORDER is wrong


def _uniform(x):
    return np.full_like(x, 1.0 / x.shape[-1])  # sums to 1 along the last axis, whatever x is


def softmax_property(softmax, x):
    """The solution: what softmax over the last axis must do for every x, stated without an oracle."""
    p = softmax(x)
    assert p.shape == x.shape, "same shape"
    assert np.all(np.isfinite(p)) and np.all(p >= 0), "finite probabilities"
    assert np.allclose(p.sum(axis=-1), 1.0, rtol=0.0, atol=1e-12), "each row sums to 1"  # float64, N <= 5 terms
    # the order is kept: x_i >= x_j => p_i >= p_j (>=, since both may underflow to exactly 0)
    bigger = x[..., :, None] >= x[..., None, :]  # (..., N, N)
    assert np.all((p[..., :, None] >= p[..., None, :])[bigger]), "a larger x never gets a smaller probability"
    # x matters: a row maximum ahead of the rest by >= 1 gets at least e / (e + N - 1) > 1/N
    if x.shape[-1] > 1:
        top2 = np.sort(x, axis=-1)[..., -2:]
        clear = top2[..., 1] - top2[..., 0] >= 1.0
        assert np.all(p.max(axis=-1)[clear] > 1.0 / x.shape[-1]), "a clear maximum stands out"


# name -> (the buggy softmax, what it gets wrong, a property that would catch it)
PLANTED_BUGS = {
    "normalizes over the first axis": (
        _softmax_over_first_axis, "it sums to 1 along axis 0 instead of the last axis",
        "assert that softmax(x).sum(axis=-1) is 1 (np.allclose) for every row"),
    "does not subtract the maximum": (
        _softmax_without_max_shift, "exp(x) overflows for x > 709, giving inf / inf = NaN",
        "assert that every output is finite (np.isfinite), or that rows sum to 1: NaN fails both"),
    "is the softmax of -x": (
        _softmax_of_minus_x, "its outputs are positive and sum to 1, but a larger x gets a SMALLER probability",
        "assert that the order is kept: p_i >= p_j wherever x_i >= x_j (>=, not >: both may underflow to 0.0; "
        "compare all pairs of a row with x[..., :, None] >= x[..., None, :])"),
    "is uniform": (
        _uniform, "it returns 1/N everywhere: sums to 1, finite, but ignores x",
        "assert that it depends on x the way softmax does: p_i / p_j = exp(x_i - x_j) for entries "
        "that do not underflow, or that the row's largest x gets a probability above 1/N when it is "
        "strictly the largest"),
}


def _run(prop, softmax, max_examples):
    """Run ``prop(softmax, x)`` on hypothesis-drawn x; return None if it held, else (x, the exception)."""
    from hypothesis import HealthCheck, given, settings

    failing = []

    @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(softmax_inputs())
    def property_test(x):
        try:
            with np.errstate(all="ignore"):  # the planted overflow warns; the property decides
                prop(softmax, x.copy())
        except NotImplementedError:
            raise
        except Exception:
            failing.append(x)  # hypothesis shrinks: the last one recorded is the simplest
            raise

    try:
        property_test()
    except NotImplementedError:
        raise
    except Exception as exc:
        return failing[-1] if failing else None, exc
    return None


def check_softmax_property(prop, *, max_examples: int = 150) -> None:
    """Grade a hypothesis property ``prop(softmax, x)`` of softmax over the last axis.

    softmax: a function (..., N) -> (..., N); x: a float64 array drawn by ``softmax_inputs()``. The
    property must call softmax(x) and assert; it must hold for ``ops.softmax_forward`` on every x
    and fail on some x for each softmax of ``PLANTED_BUGS``.
    """
    name = "check_softmax_property"
    if not callable(prop):
        raise _exercise_error(name, f"pass the property function itself, got {type(prop).__name__}",
                              "def my_property(softmax, x): ... then check_softmax_property(my_property)")
    failed = _run(prop, _package_softmax, max_examples)
    if failed is not None:
        x, exc = failed
        raise _exercise_error(
            name, f"your property fails on the CORRECT softmax (minibertgen.ops.softmax_forward): "
            f"{type(exc).__name__}: {exc}; simplest failing x = {np.array2string(x, precision=4) if x is not None else '?'}",
            "a property must hold for every input of a right implementation: compare floats with np.allclose, not ==; "
            "remember that tiny probabilities underflow to exactly 0.0, so p_i > p_j can be 0.0 > 0.0",
        )
    for bug, (buggy, what, catch) in PLANTED_BUGS.items():
        if _run(prop, buggy, max_examples) is None:
            raise _exercise_error(
                name, f"your property held on {max_examples} drawn inputs for a softmax that {bug} ({what}): "
                "it did not catch that bug", catch,
            )
    print(f"{name}: your property holds for minibertgen.ops.softmax_forward and caught all "
          f"{len(PLANTED_BUGS)} planted bugs ({', '.join(PLANTED_BUGS)})")
