"""Checks shared by the tests, ``minibertgen verify`` and the tutorials (the exercise graders are
in minibertgen/exercises/).

``assert_close`` compares ours with a reference and, on failure, says which tensor, where, and by how
much (ours vs the reference at the worst entry), so a failing check teaches rather than just fails.
"""

from __future__ import annotations

import numpy as np

from .backend import to_numpy


def max_abs_error(ours, reference) -> float:
    ours, reference = np.asarray(to_numpy(ours), dtype=np.float64), np.asarray(to_numpy(reference), dtype=np.float64)
    if ours.shape != reference.shape:
        raise AssertionError(f"shape mismatch: ours {ours.shape}, reference {reference.shape}")
    return float(np.max(np.abs(ours - reference))) if ours.size else 0.0


def assert_close(ours, reference, *, atol, rtol=0.0, name="tensor") -> float:
    """Raise AssertionError unless |ours - reference| <= atol + rtol * |reference| everywhere.

    Returns the max absolute error. The message names the tensor, the worst index, and both values.
    """
    ours_np = np.asarray(to_numpy(ours), dtype=np.float64)
    ref_np = np.asarray(to_numpy(reference), dtype=np.float64)
    if ours_np.shape != ref_np.shape:
        raise AssertionError(f"{name}: shape mismatch, ours {ours_np.shape} vs reference {ref_np.shape}")
    if ours_np.size == 0:
        return 0.0
    nan_mismatch = np.isnan(ours_np) != np.isnan(ref_np)
    if nan_mismatch.any():
        where = tuple(int(i) for i in np.argwhere(nan_mismatch)[0])
        raise AssertionError(f"{name}: NaN mismatch at {where}: ours {ours_np[where]}, reference {ref_np[where]}")
    diff = np.where(np.isnan(ref_np), 0.0, np.abs(ours_np - ref_np))
    excess = diff - (atol + rtol * np.abs(np.nan_to_num(ref_np)))
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
    if excess[worst] > 0:
        raise AssertionError(
            f"{name}: max abs error {diff.max():.3e} exceeds atol={atol:g} rtol={rtol:g}; worst at index "
            f"{tuple(int(i) for i in worst)}: ours {ours_np[worst]!r} vs reference {ref_np[worst]!r} "
            f"({int((excess > 0).sum())} of {excess.size} entries out of tolerance)"
        )
    return float(diff.max())


def grad_check(
    loss_fn, arrays: dict, grads: dict, *, eps=1e-6, n_directions=2, seed=0, rtol=1e-5, atol=1e-6, only=None
):
    """Check analytic gradients against central finite differences along random directions.

    loss_fn(arrays) -> a scalar, computed from a dict of float64 arrays (it must not modify them).
    grads: {name: the analytic dL/d arrays[name]} for the names to check.
    For each name and each of ``n_directions`` random unit directions u:
        numeric  = (L(a + eps u) - L(a - eps u)) / (2 eps)       (central difference, error O(eps^2))
        analytic = sum(grad * u)
    and they must agree to ``rtol`` relative plus ``atol`` absolute. The defaults suit float64:
    truncation error ~eps^2 = 1e-12; round-off ~1e-16 / eps = 1e-10 times the size of the values the
    loss sums, which with activations of ~100 (N(0, 1) attention weights) reached 4.3e-8 on a key
    bias whose true gradient is 0; atol 1e-6 leaves margin, and a wrong gradient is off by ~|dout|.
    only: {name: 0/1 array of the array's shape} restricts the directions to some entries (e.g. to
    skip an embedding's pad row, which by torch's padding_idx convention gets no gradient).
    Returns {name: worst |numeric - analytic|}; raises AssertionError naming the first bad array.
    """
    rng = np.random.default_rng(seed)
    report = {}
    for name, grad in grads.items():
        base = arrays[name]
        if np.asarray(to_numpy(base)).dtype != np.float64:
            raise ValueError(f"grad_check needs float64 arrays; {name} is {base.dtype}")
        worst = 0.0
        for _ in range(n_directions):
            direction = rng.normal(size=base.shape)
            if only and name in only:
                direction *= np.asarray(to_numpy(only[name]))
            direction /= max(np.linalg.norm(direction), 1e-300)
            direction = _like(direction, base)
            plus = loss_fn({**arrays, name: base + eps * direction})
            minus = loss_fn({**arrays, name: base - eps * direction})
            numeric = (float(plus) - float(minus)) / (2 * eps)
            analytic = float((grad * direction).sum())
            error = abs(numeric - analytic)
            worst = max(worst, error)
            if error > rtol * max(abs(numeric), abs(analytic)) + atol:
                raise AssertionError(
                    f"gradient of {name} (shape {tuple(base.shape)}) is wrong: along a random direction the "
                    f"finite difference gives {numeric!r} but backward gives {analytic!r} (error {error:.2e})"
                )
        report[name] = worst
    return report


def _like(host_array, like):
    """A host array on ``like``'s backend."""
    from .backend import get_xp

    xp = get_xp(like)
    return host_array if xp is np else xp.asarray(host_array)
