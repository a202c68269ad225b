"""Exercises on backprop (notebook 08): softmax's backward, and the backward of the mean cross-entropy
with ignored labels."""

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



def check_cross_entropy_backward(fn, *, n_cases: int = 20, seed: int = 0) -> None:
    """Grade ``fn(logits, labels) -> dlogits`` against ``ops.cross_entropy_backward``.

    logits: (N, V); labels: (N,) ints, -100 where ignored; the loss is the mean over the counted
    labels of -log softmax(logits[n])[labels[n]]; dlogits = dloss/dlogits, (N, V).
    """
    from ..ops import cross_entropy_backward, cross_entropy_forward, softmax_forward

    name = "check_cross_entropy_backward"
    rng = np.random.default_rng(seed)
    for case in range(n_cases):
        N, V = int(rng.integers(3, 9)), int(rng.integers(3, 10))
        logits = rng.normal(size=(N, V)) * 2.0
        labels = rng.integers(0, V, size=N)
        n_ignored = int(rng.integers(1, N - 1))  # at least one ignored row and at least two counted ones
        labels[rng.choice(N, size=n_ignored, replace=False)] = -100
        given_logits, given_labels = logits.copy(), labels.copy()
        where = f"logits {logits.shape}, labels {labels.tolist()}"
        got = _host(_call_learner(name, fn, (given_logits, given_labels), where), name, "dlogits")
        if not (np.array_equal(given_logits, logits) and np.array_equal(given_labels, labels)):
            raise _exercise_error(name, f"your function wrote into logits or labels ({where})",
                                  "compute a new array; a backward never changes its inputs (STYLE.md 2)")
        if got.shape != logits.shape:
            raise _exercise_error(name, f"dlogits has shape {got.shape}, expected {logits.shape} ({where})",
                                  "dlogits has the shape of logits: one row per position, one column per token")
        expected = cross_entropy_backward(1.0, cross_entropy_forward(logits, labels)[1])
        # float64, V <= 9 terms per softmax: rounding ~1e-16; every mistake below is O(0.01) or more
        if np.allclose(got, expected, rtol=0.0, atol=1e-12):
            continue
        valid = labels != -100
        n_valid = int(valid.sum())
        probs, _ = softmax_forward(logits)
        onehot = np.zeros_like(logits)
        onehot[np.flatnonzero(valid), labels[valid]] = 1.0
        raw = probs - onehot  # (N, V), rows of ignored labels still hold the softmax
        if np.allclose(got[valid], expected[valid], atol=1e-12):
            hint = ("the counted rows are right, but an ignored label (-100) contributes nothing to the loss, "
                    "so its row of dlogits must be zero")
        elif np.allclose(got, raw * valid[:, None], atol=1e-12):
            hint = f"you forgot the 1/n of the mean: divide by the number of counted labels (here n = {n_valid})"
        elif np.allclose(got, raw * valid[:, None] / N, atol=1e-12):
            hint = (f"you divided by every position (N = {N}); the loss averages over the counted labels only "
                    f"(n = {n_valid} here), so divide by n")
        elif np.allclose(got, -expected, atol=1e-12):
            hint = "the sign is flipped: the loss is MINUS the log-probability, so dlogits = (softmax - onehot) / n"
        elif not np.allclose(got[valid].sum(axis=1), 0.0, atol=1e-12):
            hint = ("each counted row of dlogits sums to 0 (softmax sums to 1, the onehot too): start from "
                    "d(-log softmax(z)_y)/dz_k = softmax(z)_k - [k = y]")
        else:
            hint = "start from d(-log softmax(z)_y)/dz_k = softmax(z)_k - [k = y], then take the mean's 1/n"
        worst = np.unravel_index(int(np.argmax(np.abs(got - expected))), logits.shape)
        raise _exercise_error(
            name, f"dlogits differs from the package's at {tuple(int(i) for i in worst)}: yours "
            f"{float(got[worst]):.6g}, expected {float(expected[worst]):.6g} ({where})", hint,
        )
    print(f"{name}: all {n_cases} random batches match minibertgen.ops.cross_entropy_backward")
