"""Checks shared by the tests, ``minibertgen verify`` and the tutorials.

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
