"""The backend seam (DESIGN.md §4): cupy lives in backend.py only; a clear error where it cannot run."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

import minibertgen as mbg
from minibertgen import backend

PACKAGE = Path(mbg.__file__).resolve().parent


def test_cupy_is_imported_only_in_backend_py():
    offenders = []
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] in ("cupy", "cupyx") for n in names) and path.name != "backend.py":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_asking_for_cupy_without_it_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # as if not installed: `import cupy` raises ImportError
    with pytest.raises(backend.BackendUnavailableError, match=r'pip install "minibertgen\[gpu\]"'):
        mbg.set_backend("cupy")
    assert mbg.get_backend() == "numpy"


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="'jax'"):
        mbg.set_backend("jax")


def test_scatter_add_adds_repeated_indices():
    out = np.zeros((4, 2))
    backend.scatter_add(out, np.array([1, 1, 3, 1]), np.ones((4, 2)))
    assert out[:, 0].tolist() == [0.0, 3.0, 0.0, 1.0]


def test_token_ids_outside_the_vocabulary_are_named():
    with pytest.raises(ValueError, match=r"token id 12, outside \[0, 10\)"):
        backend.check_token_ids(np.array([[1, 12]]), 10)
    with pytest.raises(ValueError, match="integer"):
        backend.check_token_ids(np.array([[1.0, 2.0]]), 10)


def xp_functions_used() -> dict[str, list[str]]:
    """Every ``xp.NAME`` the package calls, with where: the functions CuPy must also have."""
    used: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "xp":
                used.setdefault(node.attr, []).append(f"{path.name}:{node.lineno}")
    return used


def test_every_xp_function_exists_in_cupy():
    """Runs wherever cupy imports (CI installs cupy-cuda12x, which imports without a GPU)."""
    from .conftest import require_cupy_module

    cupy = require_cupy_module()
    used = xp_functions_used()
    assert len(used) > 20, "the scan should find the package's array calls"
    missing = {name: where for name, where in used.items() if not hasattr(cupy, name)}
    assert missing == {}
    import cupyx
    import cupyx.scipy.special

    assert hasattr(cupyx, "scatter_add") and hasattr(cupyx.scipy.special, "erf")


def test_cupy_without_a_gpu_gives_one_clear_error():
    from .conftest import gpu_available, require_cupy_module

    require_cupy_module()
    if gpu_available():
        pytest.skip("a GPU is usable here")
    with pytest.raises(backend.BackendUnavailableError, match="no usable CUDA GPU"):
        mbg.set_backend("cupy")
    model = mbg.BertGenerationEncoder(mbg.BertGenerationConfig(vocab_size=10, hidden_size=4, num_hidden_layers=1,
                                                               num_attention_heads=1, intermediate_size=4))  # fmt: skip
    with pytest.raises(backend.BackendUnavailableError, match="backend 'numpy'"):
        model.to("cupy")


def test_environment_variable_chooses_the_default_backend(monkeypatch):
    monkeypatch.setattr(backend, "_current_backend", None)
    monkeypatch.setenv("MINIBERTGEN_BACKEND", "numpy")
    assert mbg.get_backend() == "numpy"
    monkeypatch.setenv("MINIBERTGEN_BACKEND", "tpu")
    with pytest.raises(ValueError, match="'tpu'"):
        mbg.get_backend()


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_erf_on_several_cores_gives_scipy_s_numbers(threads, monkeypatch):
    from scipy.special import erf as scipy_erf

    monkeypatch.setenv("MINIBERTGEN_THREADS", threads)
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        x = rng.normal(0, 2, size=(3, backend.PARALLEL_MIN_ENTRIES // 3 + 5)).astype(dtype)  # above the threshold
        for view in (x, x[:, ::3]):  # contiguous, and a strided view
            got = backend.erf(view)
            assert got.dtype == view.dtype and got.shape == view.shape
            np.testing.assert_array_equal(got, scipy_erf(view))


def test_a_bad_thread_count_is_refused(monkeypatch):
    monkeypatch.setenv("MINIBERTGEN_THREADS", "two")
    with pytest.raises(ValueError, match="MINIBERTGEN_THREADS must be a positive integer, got 'two'"):
        backend.erf(np.zeros(backend.PARALLEL_MIN_ENTRIES))
