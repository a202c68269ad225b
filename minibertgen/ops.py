"""Primitive layers as pure forward/backward pairs, side by side.

    name_forward(x, ..., p) -> (out, cache)
    name_backward(dout, cache) -> (dx, ..., dp)

The cache holds exactly what the backward needs (DESIGN.md §3); nothing is stored on objects and
nothing is global. A backward never writes into ``dout`` or the cache, and returns parameter
gradients as a dict with the parameters' keys and shapes. Arrays carry their backend: every op
starts with ``xp = get_xp(x)``.

Shape legend (DESIGN.md §3): B batch, S source length, T target length, D hidden, H heads,
Dh = D / H, F feed-forward width, V vocabulary, P max positions. ``...`` is any leading shape.
"""

from __future__ import annotations

import math

import numpy as np

from .backend import erf, get_xp, random_uniform, scatter_add

# ---------------------------------------------------------------- linear

def weight_first(rows: int, out_features: int) -> bool:
    """Whether ``linear_forward`` computes W x^T rather than x W^T: for a few rows (generation's one
    token per beam) OpenBLAS runs the weight-first product 1.3-2.5x faster at every MiniLM width,
    up to 16 rows, and up to 32 below 4096 outputs (beyond that, against the 30522-wide LM head, it
    gets slower). Measured with float32 on 2 cores (BENCHMARKS.md): 4 rows x 384 -> 384 84 vs 36 us,
    4 x 1536 -> 384 357 vs 134 us, 4 x 384 -> 30522 8.4 vs 6.3 ms, 32 x 384 -> 30522 10 vs 19 ms."""
    return rows <= 16 or (rows <= 32 and out_features < 4096)


def linear_forward(x, p):
    """y = x W^T + b, with PyTorch's (out, in) weight layout (so loading never transposes).

    x: (..., in); p["weight"]: (out, in); p["bias"]: (out,) or absent -> y: (..., out)
    """
    x_2d = x.reshape(-1, x.shape[-1])  # one 2-D product: NumPy would run a 3-D one as B separate ones
    if weight_first(*x_2d.shape[:1], p["weight"].shape[0]):
        # the same products, summed in the BLAS's order for that shape; faster (see weight_first)
        out_2d = get_xp(x).ascontiguousarray((p["weight"] @ x_2d.T).T)  # (out, N) -> (N, out)
    else:
        out_2d = x_2d @ p["weight"].T  # (N, in) @ (in, out) -> (N, out)
    out = out_2d.reshape(*x.shape[:-1], -1)  # (..., in) -> (..., out)
    if "bias" in p:
        out += p["bias"]
    return out, (x, p["weight"], "bias" in p)


def linear_backward(dout, cache):
    """y = x W^T + b  =>  dx = dy W,  dW = dy^T x (summed over ...),  db = sum of dy over ...

    dout: (..., out) -> dx (..., in), {"weight": (out, in), "bias": (out,)}
    """
    x, weight, has_bias = cache
    dout_2d = dout.reshape(-1, dout.shape[-1])  # (..., out) -> (N, out)
    dx = (dout_2d @ weight).reshape(*dout.shape[:-1], -1)  # (N, out) @ (out, in) -> (..., in)
    grads = {"weight": dout_2d.T @ x.reshape(-1, x.shape[-1])}  # (out, N) @ (N, in) -> (out, in)
    if has_bias:
        grads["bias"] = dout_2d.sum(axis=0)
    return dx, grads


# ---------------------------------------------------------------- layer norm


def layernorm_forward(x, p, eps):
    """BERT's LayerNorm over the last axis: (x - mean) / sqrt(biased_var + eps) * weight + bias.

    x: (..., D); p["weight"], p["bias"]: (D,) -> (..., D)
    """
    xp = get_xp(x)
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    centered = x - mean
    var = (centered * centered).mean(axis=-1, keepdims=True)  # biased, as torch
    rstd = 1.0 / xp.sqrt(var + eps)  # (..., 1); eps inside the sqrt, as BERT
    x_hat = centered * rstd
    out = x_hat * p["weight"] + p["bias"]
    return out, (x_hat, rstd, p["weight"])


def layernorm_backward(dout, cache):
    """out = x_hat * w + b, x_hat = (x - mean) * rstd  =>
    dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)) with g = dout * w (means over the last axis).

    dout: (..., D) -> dx (..., D), {"weight": (D,), "bias": (D,)}
    """
    x_hat, rstd, weight = cache
    g = dout * weight
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - x_hat * (g * x_hat).mean(axis=-1, keepdims=True))
    lead = tuple(range(dout.ndim - 1))
    return dx, {"weight": (dout * x_hat).sum(axis=lead), "bias": dout.sum(axis=lead)}


# ---------------------------------------------------------------- activations
# transformers' ACT2FN formulas, exactly (reference §5), each with its derivative. The cache is
# the input x, which is all any derivative needs.

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _sigmoid(x):
    xp = get_xp(x)
    e = xp.exp(-xp.abs(x))  # exp of a non-positive number only: no overflow for large |x|
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(x):  # log(1 + e^x), stable for large |x|
    xp = get_xp(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def _gelu_erf(x):  # 0.5 x (1 + erf(x / sqrt 2)): "gelu", "gelu_python"
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _gelu_erf_grad(x):  # Phi(x) + x phi(x)
    xp = get_xp(x)
    return 0.5 * (1.0 + erf(x / math.sqrt(2.0))) + x * INV_SQRT_2PI * xp.exp(-0.5 * x * x)


def _gelu_tanh(c):
    """0.5 x (1 + tanh(c (x + 0.044715 x^3))) and its derivative, for a given constant c.

    c = sqrt(2/pi) for gelu_new, gelu_pytorch_tanh, gelu_python_tanh and gelu_accurate;
    c = 0.7978845608 (rounded) for transformers' gelu_fast.
    """

    def forward(x):
        return 0.5 * x * (1.0 + get_xp(x).tanh(c * (x + 0.044715 * x**3)))

    def grad(x):
        t = get_xp(x).tanh(c * (x + 0.044715 * x**3))
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x)

    return forward, grad


def _relu(x):
    return get_xp(x).maximum(x, 0)


_LAPLACE_MU, _LAPLACE_SIGMA = 0.707107, 0.282095  # transformers' LaplaceActivation constants


def _laplace(x):
    return 0.5 * (1.0 + erf((x - _LAPLACE_MU) / (_LAPLACE_SIGMA * math.sqrt(2.0))))


def _laplace_grad(x):  # the normal density N(mu, sigma^2)
    z = (x - _LAPLACE_MU) / _LAPLACE_SIGMA
    return get_xp(x).exp(-0.5 * z * z) * INV_SQRT_2PI / _LAPLACE_SIGMA


def _mish_grad(x):  # d/dx x tanh(softplus x) = tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x)
    t = get_xp(x).tanh(_softplus(x))
    return t + x * (1.0 - t * t) * _sigmoid(x)


def _gelu10_grad(x):  # clip(gelu(x), -10, 10): the gradient passes only where gelu is inside the clip
    g = _gelu_erf(x)
    return _gelu_erf_grad(x) * ((g >= -10.0) & (g <= 10.0))


_TANH_GELU = _gelu_tanh(SQRT_2_OVER_PI)
_FAST_GELU = _gelu_tanh(0.7978845608)

# name -> (f, f'), the derivatives as torch's autograd defines them (at kinks: relu'(0) = 0).
ACTIVATION_FUNCTIONS = {
    "gelu": (_gelu_erf, _gelu_erf_grad),
    "gelu_python": (_gelu_erf, _gelu_erf_grad),
    "gelu_10": (lambda x: get_xp(x).clip(_gelu_erf(x), -10.0, 10.0), _gelu10_grad),
    "gelu_new": _TANH_GELU,
    "gelu_pytorch_tanh": _TANH_GELU,
    "gelu_python_tanh": _TANH_GELU,
    "gelu_accurate": _TANH_GELU,
    "gelu_fast": _FAST_GELU,
    "quick_gelu": (lambda x: x * _sigmoid(1.702 * x),
                   lambda x: _sigmoid(1.702 * x) * (1.0 + 1.702 * x * (1.0 - _sigmoid(1.702 * x)))),
    "relu": (_relu, lambda x: (x > 0).astype(x.dtype)),
    "relu2": (lambda x: _relu(x) ** 2, lambda x: 2.0 * _relu(x)),
    "relu6": (lambda x: get_xp(x).clip(x, 0, 6), lambda x: ((x > 0) & (x < 6)).astype(x.dtype)),
    "leaky_relu": (lambda x: get_xp(x).where(x > 0, x, 0.01 * x),  # torch's default slope
                   lambda x: get_xp(x).where(x > 0, 1.0, 0.01)),
    "silu": (lambda x: x * _sigmoid(x), lambda x: _sigmoid(x) * (1.0 + x * (1.0 - _sigmoid(x)))),
    "swish": (lambda x: x * _sigmoid(x), lambda x: _sigmoid(x) * (1.0 + x * (1.0 - _sigmoid(x)))),
    "mish": (lambda x: x * get_xp(x).tanh(_softplus(x)), _mish_grad),
    "tanh": (lambda x: get_xp(x).tanh(x), lambda x: 1.0 - get_xp(x).tanh(x) ** 2),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x))),
    "laplace": (_laplace, _laplace_grad),
    "linear": (lambda x: x, lambda x: get_xp(x).ones_like(x)),
}  # fmt: skip


def activation_forward(x, name):
    """Apply the activation called ``name`` (a transformers ACT2FN name). x: (...) -> (...)

    The cache is (x, name, extra): extra is None, except for BERT's exact GELU, where it holds
    1 + erf(x / sqrt 2) so that the backward does not compute erf again (erf is the slowest
    elementwise function here: about half of the FFN's time on the CPU). Same numbers as
    ``_gelu_erf`` and ``_gelu_erf_grad``, the formulas in ACTIVATION_FUNCTIONS.
    """
    if name not in ACTIVATION_FUNCTIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATION_FUNCTIONS)}")
    if name in ("gelu", "gelu_python"):
        one_plus_erf = 1.0 + erf(x / math.sqrt(2.0))  # 2 Phi(x)
        return (0.5 * x * one_plus_erf).astype(x.dtype, copy=False), (x, name, one_plus_erf)
    out = ACTIVATION_FUNCTIONS[name][0](x).astype(x.dtype, copy=False)  # erf may return float64: keep the dtype
    return out, (x, name, None)


def activation_backward(dout, cache):
    """y = f(x)  =>  dx = dout * f'(x). dout: (...) -> dx (...)"""
    x, name, one_plus_erf = cache
    if one_plus_erf is not None:  # gelu' = Phi(x) + x phi(x), with Phi from the forward
        grad = 0.5 * one_plus_erf + x * INV_SQRT_2PI * get_xp(x).exp(-0.5 * x * x)
    else:
        grad = ACTIVATION_FUNCTIONS[name][1](x)
    return (dout * grad).astype(dout.dtype, copy=False)


# ---------------------------------------------------------------- softmax


def softmax_forward(x):
    """Softmax over the last axis, shifted by the row maximum for stability. x: (..., N) -> (..., N)

    exp(x - max) / sum, computed in one new array (the in-place steps give the same numbers as the
    formula and save two full-size temporaries: attention scores are the largest arrays of a layer).
    """
    xp = get_xp(x)
    probs = x - x.max(axis=-1, keepdims=True)
    xp.exp(probs, out=probs)
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs, probs


def softmax_backward(dout, probs):
    """p = softmax(x)  =>  dx = p * (dout - sum(dout * p)) along the last axis. (..., N) -> (..., N)"""
    dx = dout - (dout * probs).sum(axis=-1, keepdims=True)
    dx *= probs  # in place: one full-size temporary fewer, the same numbers
    return dx


# ---------------------------------------------------------------- dropout


def dropout_forward(x, rate, rng=None, train=False):
    """Inverted dropout: zero each entry with probability ``rate``, scale the rest by 1/(1-rate).

    The identity in eval (``train=False``) or with rate 0. The mask is drawn from ``rng`` (a
    numpy Generator) and kept in the cache. x: (...) -> (...)
    """
    if not train or rate == 0.0:
        return x, None
    keep = random_uniform(rng, x.shape, like=x) >= rate  # a boolean per entry: 1 byte, not 4 or 8
    scale = get_xp(x).ones((), dtype=x.dtype) / (1.0 - rate)  # 1 / (1 - rate) in x's dtype
    return _apply_dropout(x, keep, scale), (keep, scale)


def dropout_backward(dout, mask):
    """y = x * keep / (1 - rate)  =>  dx = dout * keep / (1 - rate) (the same draw; None was the identity)."""
    return dout if mask is None else _apply_dropout(dout, *mask)


def _apply_dropout(x, keep, scale):
    """x * scale where keep, else 0: ``x * mask`` with mask = keep / (1 - rate), without the float mask."""
    out = x * scale
    out *= keep
    return out


# ---------------------------------------------------------------- embedding


def embedding_forward(ids, weight):
    """Look up rows of an embedding table. ids: (...) ints; weight: (N, E) -> (..., E)"""
    return weight[ids], (ids, weight.shape)


def embedding_backward(dout, cache, padding_idx=None):
    """out = W[ids]  =>  dW[i] = sum of dout over every position whose id is i.

    Repeated ids must add up (``scatter_add``; ``dW[ids] += dout`` would keep only one). With
    ``padding_idx`` (torch's Embedding(padding_idx=...)), that row gets no gradient.
    dout: (..., E) -> dW (N, E)
    """
    ids, table_shape = cache
    xp = get_xp(dout)
    grad = xp.zeros(table_shape, dtype=dout.dtype)
    scatter_add(grad, ids.reshape(-1), dout.reshape(-1, table_shape[1]))  # (..., E) -> (n, E)
    if padding_idx is not None:
        grad[padding_idx] = 0.0
    return grad


# ---------------------------------------------------------------- cross-entropy


def log_softmax(x):
    """log(softmax(x)) over the last axis, computed stably. x: (..., N) -> (..., N)"""
    xp = get_xp(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def cross_entropy_forward(logits, labels, ignore_index=-100):
    """Mean negative log-likelihood over the labels that are not ``ignore_index`` (torch's CrossEntropyLoss).

    logits: (N, V); labels: (N,) ints -> scalar loss. With no counted label the mean is 0/0 = nan,
    as in the reference.
    """
    xp = get_xp(logits)
    valid = labels != ignore_index  # (N,)
    safe_labels = xp.where(valid, labels, 0)
    log_probs = log_softmax(logits)  # (N, V)
    picked = xp.take_along_axis(log_probs, safe_labels[:, None], axis=-1)[:, 0]  # (N, V) -> (N,)
    n_valid = valid.sum().astype(logits.dtype)  # in the logits' dtype: an int64 count would promote to float64
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 -> nan is the intended answer
        loss = -(picked * valid).sum() / n_valid
    return loss, (log_probs, safe_labels, valid, n_valid)


def cross_entropy_backward(dloss, cache):
    """loss = -mean over valid n of log_softmax(logits)[n, label_n]  =>
    dlogits[n] = (softmax(logits[n]) - onehot(label_n)) * valid_n / n_valid * dloss.

    dloss: scalar -> dlogits (N, V)
    """
    log_probs, safe_labels, valid, n_valid = cache
    xp = get_xp(log_probs)
    dlogits = xp.exp(log_probs)  # softmax, (N, V)
    dlogits[xp.arange(dlogits.shape[0]), safe_labels] -= 1.0
    per_label = xp.asarray(dloss / xp.maximum(n_valid, 1), dtype=dlogits.dtype)  # no valid label: zero gradient
    scale = valid.astype(dlogits.dtype) * per_label
    return dlogits * scale[:, None]
