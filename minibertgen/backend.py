"""The backend seam: the only file that knows NumPy and CuPy apart.

Every op starts with ``xp = get_xp(x)``: an array carries its backend, so layer code never asks
"am I on the GPU?". The few real differences between the two libraries live here:

- ``scatter_add``: duplicate-safe ``out[idx] += values`` (``np.add.at`` / ``cupyx.scatter_add``);
  plain ``out[idx] += values`` silently drops repeated indices.
- ``erf``: NumPy has none (we use SciPy's); CuPy's lives in ``cupyx.scipy.special``.
- ``check_token_ids``: validates ids on the host, because CuPy wraps out-of-range indices
  silently where NumPy would raise.

The backend for *new* arrays (random init, loading) is chosen at one boundary: ``set_backend``,
the ``MINIBERTGEN_BACKEND`` environment variable, ``model.to(...)`` or ``backend=`` on loading.
"""

from __future__ import annotations

import os

import numpy as np

BACKENDS = ("numpy", "cupy")
_current_backend: str | None = None


class BackendUnavailableError(RuntimeError):
    """Raised when the cupy backend is asked for where it cannot run."""


def _cupy():
    """Import cupy, or raise one clear error saying what is missing and how to fix it."""
    try:
        import cupy  # the one place cupy is imported
    except ImportError as exc:
        raise BackendUnavailableError(
            "backend 'cupy' was requested but CuPy is not installed; "
            'install it with: pip install "minibertgen[gpu]"  (or use backend "numpy")'
        ) from exc
    try:
        n_gpus = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken: cupy imports but cannot run
        raise BackendUnavailableError(
            f"backend 'cupy' was requested but no usable CUDA GPU was found ({exc}); "
            "run on a machine with an NVIDIA GPU and driver, or use backend 'numpy'"
        ) from exc
    if n_gpus < 1:
        raise BackendUnavailableError(
            "backend 'cupy' was requested but CUDA reports 0 GPUs; use backend 'numpy'"
        )
    return cupy


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


def set_backend(name: str) -> None:
    """Choose the backend for new arrays: "numpy" (default) or "cupy"."""
    _check_name(name)
    if name == "cupy":
        _cupy()  # fail now, with the clear error, rather than at the first op
    global _current_backend
    _current_backend = name


def get_backend() -> str:
    """The backend for new arrays: set_backend's choice, else $MINIBERTGEN_BACKEND, else numpy."""
    if _current_backend is not None:
        return _current_backend
    return _check_name(os.environ.get("MINIBERTGEN_BACKEND", "numpy") or "numpy")


def backend_module(name: str | None = None):
    """The array module (numpy or cupy) for a backend name (default: get_backend())."""
    name = _check_name(name or get_backend())
    return np if name == "numpy" else _cupy()


def get_xp(*arrays):
    """The array module of the given arrays: numpy for host arrays, cupy for device arrays.

    Any other array that names its own module (the Python array API's ``__array_namespace__``) gets
    that module: the exercises' tracing arrays use this to check that code follows the seam.
    """
    for a in arrays:
        module = type(a).__module__
        if module.startswith("cupy"):
            return _cupy()
        if not isinstance(a, (np.ndarray, np.generic)) and hasattr(type(a), "__array_namespace__"):
            return a.__array_namespace__()
    return np


def backend_of(x) -> str:
    """"cupy" for a device array, else "numpy"."""
    return "cupy" if type(x).__module__.startswith("cupy") else "numpy"


def to_numpy(x):
    """Bring an array (or a nested dict/list/tuple of arrays) to the host as numpy."""
    if isinstance(x, dict):
        return {k: to_numpy(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(to_numpy(v) for v in x)
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return x


def to_device(x, backend: str | None = None):
    """Move an array (or a nested dict/list/tuple of arrays) to a backend (default: get_backend())."""
    xp = backend_module(backend)
    if isinstance(x, dict):
        return {k: to_device(v, backend) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(to_device(v, backend) for v in x)
    if xp is np:
        return to_numpy(x)
    return xp.asarray(x)


def scatter_add(out, indices, values) -> None:
    """In place: ``out[indices] += values``, adding every repeated index (not just the last).

    out: (N, ...); indices: integer array of any shape I; values: I + out.shape[1:].
    """
    xp = get_xp(out)
    if xp is np:
        np.add.at(out, indices, values)
    else:
        import cupyx  # noqa: F401  (cupy is installed: get_xp returned it)

        cupyx.scatter_add(out, indices, values)


def erf(x):
    """The error function, elementwise, on the array's own backend.

    On the CPU, SciPy's erf runs on one core and is the slowest elementwise step of a layer (about
    30 ns per entry, an exact GELU's whole cost): large arrays are split across the cores, where
    SciPy releases the GIL (see ``elementwise_threads``). The same numbers either way.
    """
    if get_xp(x) is np:
        from scipy.special import erf as scipy_erf

        return _on_all_cores(scipy_erf, x)
    from cupyx.scipy.special import erf as cupy_erf

    return cupy_erf(x)


# Below this many entries a second thread costs more than it saves (waking an idle core takes about a
# millisecond in a VM; measured on the 2-core benchmark machine: 1.5x at 1.6 M entries, 1.9x at 6 M).
PARALLEL_MIN_ENTRIES = 1 << 20
_pool = None  # (threads, ThreadPoolExecutor), made on first use


def elementwise_threads() -> int:
    """Threads for the large elementwise functions: $MINIBERTGEN_THREADS, else this process's cores."""
    value = os.environ.get("MINIBERTGEN_THREADS")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"MINIBERTGEN_THREADS must be a positive integer, got {value!r}")
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _on_all_cores(ufunc, x):
    """``ufunc(x)`` for a one-input NumPy ufunc, run on contiguous slices in parallel threads."""
    n = elementwise_threads()
    if n == 1 or x.size < PARALLEL_MIN_ENTRIES:
        return ufunc(x)
    global _pool
    from concurrent.futures import ThreadPoolExecutor

    if _pool is None or _pool[0] != n:
        _pool = (n, ThreadPoolExecutor(n, thread_name_prefix="minibertgen"))
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat, dtype=ufunc(flat[:1]).dtype)
    bounds = np.linspace(0, flat.size, n + 1).astype(int)
    list(_pool[1].map(lambda i: ufunc(flat[bounds[i]:bounds[i + 1]], out=out[bounds[i]:bounds[i + 1]]), range(n)))
    return out.reshape(x.shape)


def check_token_ids(ids, vocab_size: int, name: str = "input_ids") -> None:
    """Raise ValueError unless every id is an integer in [0, vocab_size).

    Checked on the host (one small reduction) because CuPy would wrap bad ids silently.
    """
    xp = get_xp(ids)
    if not xp.issubdtype(ids.dtype, xp.integer):
        raise ValueError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.size == 0:
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(
            f"{name} holds token id {bad}, outside [0, {vocab_size}) (vocab_size {vocab_size})"
        )


def random_uniform(rng, shape, like):
    """Uniform [0, 1) draws of ``shape`` on ``like``'s backend and dtype, driven by a host numpy Generator.

    On NumPy they come from ``rng`` itself. On CuPy they are drawn on the device (no transfer of
    the whole array) from a seed that ``rng`` draws, so the host Generator's state still decides
    everything: the same state gives the same masks, and a resumed run repeats them exactly. The
    two backends draw different masks for the same seed.
    """
    if rng is None:
        rng = np.random.default_rng()
    if get_xp(like) is np:
        return rng.random(shape, dtype=np.float64).astype(like.dtype, copy=False)
    cupy = _cupy()
    device_rng = cupy.random.default_rng(int(rng.integers(2**63 - 1)))
    return device_rng.random(shape, dtype=cupy.float64).astype(like.dtype, copy=False)


# ---------------------------------------------------------------- model inputs


def as_ids(x, name, vocab_size, backend):
    """Token ids as a (B, L) int64 array on ``backend``, checked against the vocabulary."""
    if x is None:
        return None
    xp = backend_module(backend)
    arr = xp.asarray(to_numpy(x)) if xp is np else xp.asarray(x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (batch, length), got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(arr.shape)}); expected at least one token per row")
    if name == "labels":  # -100 marks positions the loss ignores
        check_token_ids(xp.where(arr == -100, 0, arr), vocab_size, name)
    else:
        check_token_ids(arr, vocab_size, name)
    return arr.astype(xp.int64, copy=False)


def as_mask(mask, name, shape, dtype, backend):
    """A 0/1 attention mask of ``shape`` as a float array of the model's dtype, or None."""
    if mask is None:
        return None
    xp = backend_module(backend)
    arr = xp.asarray(to_numpy(mask)) if xp is np else xp.asarray(mask)
    if arr.ndim == 1:
        arr = arr[None, :]
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(arr.shape)}, expected {tuple(shape)} (one 0/1 per token)")
    if arr.size and not bool(xp.all((arr == 0) | (arr == 1))):
        raise ValueError(f"{name} must hold only 0 and 1 (1 = attend), got other values")
    return arr.astype(dtype)
