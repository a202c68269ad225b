"""The backend seam (DESIGN.md §4): cupy lives in backend.py only; a clear error where it cannot run."""

from __future__ import annotations

import ast
import importlib.util
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


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed here")
def test_asking_for_cupy_without_it_says_how_to_install():
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
