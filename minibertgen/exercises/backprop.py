"""Exercise on backprop: softmax's backward (notebook 08)."""

from __future__ import annotations

import numpy as np

from ._grading import _call_learner, _exercise_error, _host


def check_softmax_backward(fn, *, n_cases: int = 20, seed: int = 0) -> None:
    """Grade ``fn(dout, probs) -> dx`` against ``ops.softmax_backward``.

    probs = softmax(x) over the last axis, shape (..., N); dout = dL/dprobs, the same shape; dx = dL/dx.
    """
    from ..ops import softmax_backward, softmax_forward

    name = "check_softmax_backward"
    rng = np.random.default_rng(seed)
    for case in range(n_cases):
        shape = tuple(int(n) for n in rng.integers(1, 5, size=int(rng.integers(1, 5))))
        shape = shape[:-1] + (int(rng.integers(2, 8)),)  # at least 2 classes: N = 1 has dx = 0 whatever
        probs, _ = softmax_forward(rng.normal(size=shape) * 2.0)
        dout = rng.normal(size=shape)  # random upstream gradient, never ones (STYLE.md 3)
        given_dout, given_probs = dout.copy(), probs.copy()
        where = f"shape {shape}"
        got = _host(_call_learner(name, fn, (given_dout, given_probs), where), name, "dx")
        if not (np.array_equal(given_dout, dout) and np.array_equal(given_probs, probs)):
            raise _exercise_error(name, f"your function wrote into dout or probs ({where})",
                                  "compute a new array; a backward never changes its inputs (STYLE.md 2)")
        if got.shape != shape:
            raise _exercise_error(name, f"dx has shape {got.shape}, expected {shape}",
                                  "dx has the shape of x, which is the shape of probs")
        expected = softmax_backward(dout, probs)
        # float64, N <= 7 terms per sum: rounding is ~1e-16; any mistake is O(0.1)
        if np.allclose(got, expected, rtol=0.0, atol=1e-12):
            continue
        if np.allclose(got, dout * probs, atol=1e-12):
            hint = ("that is only the diagonal part p_i dout_i. Each p_i depends on every x_k: "
                    "dp_i/dx_k = p_i (delta_ik - p_k), so dx_k = sum_i dout_i p_i (delta_ik - p_k)")
        elif np.allclose(got, dout * probs * (1 - probs), atol=1e-12):
            hint = ("p_i (1 - p_i) is only the diagonal of the Jacobian; the off-diagonal entries "
                    "dp_i/dx_k = -p_i p_k add the term -p_k sum_i dout_i p_i")
        elif len(shape) > 1 and np.allclose(got, probs * (dout - (dout * probs).sum(axis=0, keepdims=True)), atol=1e-12):
            hint = "the sum runs over the softmax axis, the last one: axis=-1"
        else:
            hint = ("start from dp_i/dx_k = p_i (delta_ik - p_k) and sum over i with dout_i; keep the "
                    "sum's axis (keepdims=True) so it broadcasts against (..., N)")
        worst = np.unravel_index(int(np.argmax(np.abs(got - expected))), shape)
        raise _exercise_error(
            name, f"dx differs from the package's at {tuple(int(i) for i in worst)}: yours "
            f"{float(got[worst]):.6g}, expected {float(expected[worst]):.6g} ({where})", hint,
        )
    print(f"{name}: all {n_cases} random shapes match minibertgen.ops.softmax_backward")

