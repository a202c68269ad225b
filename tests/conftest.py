"""Shared test set-up: where the fixtures are, and the oracle switch.

Tests that need the oracle (torch + transformers 4.57.6) or files outside the repo ask for them
through ``require_oracle()`` / ``require_path()``. On a user's machine without them they skip; with
MINIBERTGEN_REQUIRE_ORACLE=1 (set by .ci/run) a skip becomes a failure, so CI cannot go green by
quietly skipping the comparisons that matter.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REFERENCE_DUMPS = FIXTURES / "reference"
SHARED = Path(__file__).resolve().parents[2] / "shared"
REQUIRED = os.environ.get("MINIBERTGEN_REQUIRE_ORACLE", "") not in ("", "0")

# Model forwards take milliseconds to a second: no per-example deadline; sizes are set per test.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")


def _skip_or_fail(reason: str):
    if REQUIRED:
        pytest.fail(f"required in CI (MINIBERTGEN_REQUIRE_ORACLE=1) but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def require_oracle():
    """(torch, transformers) at the reference versions, else skip (or fail in CI)."""
    from minibertgen.reference import OracleUnavailable, load_oracle

    try:
        return load_oracle()
    except OracleUnavailable as exc:
        _skip_or_fail(str(exc))


def require_path(path: Path, what: str) -> Path:
    if not path.exists():
        _skip_or_fail(f"{what} not found at {path}")
    return path


@pytest.fixture
def oracle():
    return require_oracle()


def require_cupy_module():
    """The cupy module (importable without a GPU), else skip (or fail in CI, which installs it)."""
    try:
        import cupy
    except ImportError as exc:
        _skip_or_fail(f"cupy is not installed ({exc}); pip install \"minibertgen[gpu]\"")
    return cupy


def gpu_available() -> bool:
    from minibertgen.backend import BackendUnavailableError, backend_module

    try:
        backend_module("cupy")
    except BackendUnavailableError:
        return False
    return True


def require_gpu():
    """Skip unless CuPy has a usable GPU. No machine of CI has one, so this never fails there;
    benchmarks/gpu_check.sh sets MINIBERTGEN_REQUIRE_GPU=1 to turn the skip into a failure."""
    if not gpu_available():
        if os.environ.get("MINIBERTGEN_REQUIRE_GPU", "") not in ("", "0"):
            pytest.fail("MINIBERTGEN_REQUIRE_GPU=1 but no usable GPU", pytrace=False)
        pytest.skip("no usable GPU (cupy with CUDA)")


def perturb(model, seed=0, scale=0.1):
    """Move every parameter off its init (biases 0, LayerNorm 1/0 would hide mistakes): x += N(0, scale)."""
    import numpy as np

    from minibertgen import flatten, unflatten

    rng = np.random.default_rng(seed)
    flat = flatten(model.params)
    model.params = unflatten({k: v + rng.normal(0.0, scale, v.shape).astype(v.dtype) for k, v in flat.items()})
    return model
