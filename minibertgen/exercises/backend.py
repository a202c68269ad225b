"""Exercise on the backend seam: a LayerNorm that runs on any array module (notebook 13).

A machine without a GPU cannot run CuPy, so the checker brings a stand-in: ``TracedArray``, an
array whose module is a ``TracingNamespace`` (NumPy underneath, every call recorded). Like a CuPy
array it refuses NumPy's own functions (``np.sqrt(traced)`` raises) and implicit copies to the
host (``np.asarray(traced)`` raises; ``.get()`` copies and is counted), and ``backend.get_xp``
returns its namespace (the array API's ``__array_namespace__``). Code that follows the seam,
``xp = get_xp(x)``, runs on it unchanged; code that names ``np.`` or copies to the host does not.
Where CuPy and a GPU are usable the checker runs the function on CuPy as well.
"""

from __future__ import annotations

import numpy as np

from ._grading import _call_learner, _exercise_error, _host


class TracedArray:
    """A NumPy array in disguise: the operators and methods work, NumPy's functions do not."""

    def __init__(self, data, namespace):
        self._data, self._namespace = np.asarray(data), namespace

    def __array_namespace__(self, api_version=None):
        return self._namespace

    # NumPy's functions refuse it, as they refuse a device array, and say which one was called.
    def __array_ufunc__(self, ufunc, method, *args, **kwargs):
        self._namespace.numpy_calls.append(f"np.{ufunc.__name__}")
        raise TypeError(f"np.{ufunc.__name__} was called on an array of another backend ({self._namespace.name})")

    def __array_function__(self, func, types, args, kwargs):
        self._namespace.numpy_calls.append(f"np.{func.__name__}")
        raise TypeError(f"np.{func.__name__} was called on an array of another backend ({self._namespace.name})")

    def __array__(self, dtype=None, copy=None):
        self._namespace.host_copies.append("np.asarray")
        raise TypeError("Implicit conversion to a NumPy array is not allowed (as for a CuPy array): "
                        "use .get() to copy to the host")  # fmt: skip

    def get(self):
        """The explicit copy to the host (as ``cupy.ndarray.get``), counted."""
        self._namespace.host_copies.append(".get()")
        return self._data.copy()

    def _to_host(self, what):
        self._namespace.host_copies.append(what)
        return self._data

    def tolist(self):
        return self._to_host(".tolist()").tolist()

    def item(self):
        return self._to_host(".item()").item()

    def __float__(self):
        return float(self._to_host("float()"))

    def __repr__(self):
        return f"TracedArray({self._data!r})"

    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def ndim(self):
        return self._data.ndim

    @property
    def size(self):
        return self._data.size

    @property
    def T(self):
        return self._namespace._wrap(self._data.T)

    def __len__(self):
        return len(self._data)

    def __getitem__(self, index):
        return self._namespace._wrap(self._data[_unwrap(index)])

    def __setitem__(self, index, value):
        self._data[_unwrap(index)] = _unwrap(value)

    def __getattr__(self, name):  # methods: x.mean(axis=-1), x.astype(...), x.reshape(...)
        if name.startswith("__") or name == "_data":  # not numpy's __array_interface__: no silent host copy
            raise AttributeError(name)
        attr = getattr(self._data, name)
        if not callable(attr):
            return self._namespace._wrap(attr)

        def method(*args, **kwargs):
            self._namespace.calls.append(f"x.{name}")
            return self._namespace._wrap(attr(*_unwrap(args), **_unwrap(kwargs)))

        return method


def _binary(op):
    def forward(self, other):
        return self._namespace._wrap(getattr(self._data, op)(_unwrap(other)))

    return forward


for _op in ("add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "pow", "rpow", "matmul",
            "rmatmul", "lt", "le", "gt", "ge", "eq", "ne", "and", "or", "floordiv", "mod"):  # fmt: skip
    setattr(TracedArray, f"__{_op}__", _binary(f"__{_op}__"))
TracedArray.__neg__ = lambda self: self._namespace._wrap(-self._data)
TracedArray.__abs__ = lambda self: self._namespace._wrap(abs(self._data))


def _unwrap(value):
    if isinstance(value, TracedArray):
        return value._data
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


class TracingNamespace:
    """An array module: ``xp.sqrt``, ``xp.exp``, ... are NumPy's, on TracedArrays, each call recorded."""

    def __init__(self, name="tracing"):
        self.name, self.calls, self.numpy_calls, self.host_copies = name, [], [], []

    def asarray(self, x, dtype=None):
        return self._wrap(np.asarray(_unwrap(x), dtype=dtype))

    def _wrap(self, value):
        if isinstance(value, (np.ndarray, np.generic)):
            return TracedArray(value, self)
        if isinstance(value, (list, tuple)):
            return type(value)(self._wrap(v) for v in value)
        return value

    def __getattr__(self, name):
        attr = getattr(np, name)
        if isinstance(attr, type) or not callable(attr):  # dtypes (xp.float32), finfo, constants
            return attr

        def function(*args, **kwargs):
            self.calls.append(f"xp.{name}")
            return self._wrap(attr(*_unwrap(args), **_unwrap(kwargs)))

        return function


def _known_mistakes(x, weight, bias, eps):
    """name -> (what a known-wrong LayerNorm returns, the hint for it), in float64."""
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    mistakes = {
        "unbiased": ((x - mean) / np.sqrt(x.var(axis=-1, ddof=1, keepdims=True) + eps) * weight + bias,
                     "BERT (and torch's LayerNorm) divides by D, not D - 1: the biased variance, mean of squares"),
        "eps outside": ((x - mean) / (np.sqrt(var) + eps) * weight + bias,
                        "eps goes inside the square root: sqrt(var + eps), not sqrt(var) + eps (STYLE.md 5)"),
        "no eps": ((x - mean) / np.sqrt(var) * weight + bias, "add eps to the variance before the square root"),
        "weight and bias": ((x - mean) / np.sqrt(var + eps) * bias + weight,
                            "scale by weight, then shift by bias: x_hat * weight + bias"),
    }
    if x.ndim > 1:
        m0, v0 = x.mean(axis=0, keepdims=True), x.var(axis=0, keepdims=True)
        mistakes["axis"] = ((x - m0) / np.sqrt(v0 + eps) * weight + bias,
                            "normalise each vector over its features, the last axis (axis=-1, keepdims=True)")
        mistakes["whole array"] = ((x - x.mean()) / np.sqrt(x.var() + eps) * weight + bias,
                                   "the mean and variance are per row over the last axis, not over the whole array")
    return mistakes


def _cupy_if_usable():
    from ..backend import BackendUnavailableError, _cupy

    try:
        return _cupy()
    except BackendUnavailableError:
        return None


def check_layer_norm_any_backend(fn, *, n_cases: int = 12, seed: int = 0) -> None:
    """Grade ``fn(x, weight, bias, eps) -> out``: BERT's LayerNorm, on whatever backend x lives on.

    x: (..., D); weight, bias: (D,); out: (..., D), the same backend and dtype as x:
    ``(x - mean) / sqrt(biased_var + eps) * weight + bias`` over the last axis (as
    ``minibertgen.ops.layernorm_forward``). Graded three ways: on NumPy arrays against the package;
    on a tracing array module, which fails code that calls ``np.`` functions or copies to the host;
    and on CuPy where a GPU is usable.
    """
    from ..ops import layernorm_forward

    name = "check_layer_norm_any_backend"
    rng = np.random.default_rng(seed)
    cases = []
    for case in range(n_cases):
        shape = tuple(int(n) for n in rng.integers(1, 5, size=int(rng.integers(1, 4)))) + (int(rng.integers(3, 9)),)
        if case == 0:
            shape = (5,)  # one vector
        dtype = np.float64 if case % 2 else np.float32
        x = (rng.normal(size=shape) * rng.uniform(0.1, 4.0) + rng.normal()).astype(dtype)
        weight, bias = rng.normal(1.0, 0.5, size=shape[-1]).astype(dtype), rng.normal(size=shape[-1]).astype(dtype)
        eps = (1e-12, 0.3, 1e-5)[case % 3]  # a large eps shows where it was added
        cases.append((x, weight, bias, eps))

    # 1. NumPy: the values, the shape, the dtype.
    for x, weight, bias, eps in cases:
        where = f"x of shape {x.shape} and dtype {x.dtype}, eps={eps}"
        got = _host(_call_learner(name, fn, (x.copy(), weight.copy(), bias.copy(), eps), where), name, "out")
        want = layernorm_forward(x, {"weight": weight, "bias": bias}, eps)[0]
        if got.shape != x.shape:
            raise _exercise_error(name, f"out has shape {got.shape}, expected {x.shape} ({where})",
                                  "keep the reduced axis (keepdims=True) so the mean and variance broadcast")
        # float32: rounding of O(10) values, ~1e-6; float64 ~1e-15. Every mistake is O(0.01) or more.
        if not np.allclose(got, want, rtol=1e-4 if x.dtype == np.float32 else 1e-9, atol=1e-5 if x.dtype == np.float32 else 1e-12):
            x64, w64, b64 = (a.astype(np.float64) for a in (x, weight, bias))
            hint = next((h for wrong, h in _known_mistakes(x64, w64, b64, eps).values()
                         if np.allclose(got, wrong, rtol=1e-4, atol=1e-5)),
                        "centre by the mean of the last axis, divide by sqrt(mean of squares + eps), "
                        "then * weight + bias")  # fmt: skip
            worst = np.unravel_index(int(np.argmax(np.abs(got - want))), x.shape)
            raise _exercise_error(name, f"out differs at {tuple(int(i) for i in worst)}: yours {float(got[worst]):.6g}, "
                                        f"expected {float(want[worst]):.6g} ({where})", hint)  # fmt: skip
        if got.dtype != x.dtype:
            raise _exercise_error(name, f"x is {x.dtype} but out is {got.dtype} ({where})",
                                  "work in x's dtype: a float64 array or a 0-d array of eps upcasts float32; "
                                  "add the Python float eps directly")  # fmt: skip

    # 2. The tracing backend: only the seam gets through.
    for x, weight, bias, eps in cases[:4]:
        xp = TracingNamespace()
        where = f"a traced x of shape {x.shape}, dtype {x.dtype}"
        traced = tuple(xp.asarray(a) for a in (x, weight, bias))
        xp.calls.clear()
        try:
            got = fn(*traced, eps)
        except NotImplementedError:
            raise
        except Exception as exc:
            if xp.host_copies:
                hint = (f"you copied the input to the host ({', '.join(xp.host_copies)}): on a GPU that is a slow "
                        "transfer each call, and the result would be on the wrong device. Compute with xp = get_xp(x)")
            elif xp.numpy_calls:
                hint = (f"you called NumPy directly ({', '.join(dict.fromkeys(xp.numpy_calls))}), which only works on host "
                        "arrays: write xp = get_xp(x) and call xp.sqrt, xp.mean, ... (or the arrays' own methods)")
            else:
                hint = "use only xp = get_xp(x)'s functions and the arrays' own methods and operators"
            raise _exercise_error(name, f"on an array of another backend your function raised "
                                        f"{type(exc).__name__}: {exc} ({where})", hint) from exc  # fmt: skip
        if not isinstance(got, TracedArray):
            moved = f"you copied to the host ({', '.join(dict.fromkeys(xp.host_copies))}) and computed there; " if xp.host_copies else ""
            raise _exercise_error(name, f"given arrays of another backend you returned a {type(got).__module__}."
                                        f"{type(got).__name__} ({where})",
                                  f"{moved}the result must stay on x's backend: compute with xp = get_xp(x) and do "
                                  "not convert (no .get(), to_numpy, np.asarray, .tolist())")  # fmt: skip
        if xp.host_copies:
            raise _exercise_error(name, f"your function copied data to the host ({', '.join(xp.host_copies)}) ({where})",
                                  "keep everything on x's backend: no .get(), float(), .item() or .tolist() inside")
        want = layernorm_forward(x, {"weight": weight, "bias": bias}, eps)[0]
        if not np.allclose(got._data, want, rtol=1e-4, atol=1e-5):
            raise _exercise_error(name, f"on the tracing backend your values differ from NumPy's ({where})",
                                  "the same code must give the same numbers on every backend")
    used = sorted(set(xp.calls))

    # 3. CuPy, where a GPU is usable.
    cupy = _cupy_if_usable()
    gpu_note = "CuPy not usable here, so not run on a GPU"
    if cupy is not None:
        for x, weight, bias, eps in cases[:4]:
            where = f"a CuPy x of shape {x.shape}, dtype {x.dtype}"
            got = _call_learner(name, fn, (cupy.asarray(x), cupy.asarray(weight), cupy.asarray(bias), eps), where)
            if not type(got).__module__.startswith("cupy"):
                raise _exercise_error(name, f"given CuPy arrays you returned a {type(got).__name__} ({where})",
                                      "the result must stay on the GPU: compute with xp = get_xp(x)")
            want = layernorm_forward(x, {"weight": weight, "bias": bias}, eps)[0]
            if not np.allclose(got.get(), want, rtol=1e-4, atol=1e-5):
                raise _exercise_error(name, f"on CuPy your values differ from NumPy's ({where})",
                                      "the same code must give the same numbers on every backend")
        gpu_note = "and on CuPy (GPU)"
    print(f"{name}: all {n_cases} NumPy cases equal ops.layernorm_forward; on the tracing backend it stayed on "
          f"the device (calls: {', '.join(used) or 'operators only'}); {gpu_note}")
