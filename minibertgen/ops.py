"""Primitive layers, each a pure ``*_forward(...) -> (out, cache)`` function.

The cache holds exactly what the matching backward needs (DESIGN.md §3); nothing is stored on
objects and nothing is global. Arrays carry their backend: every op starts with ``xp = get_xp(x)``.

Shape legend (DESIGN.md §3): B batch, S source length, T target length, D hidden, H heads,
Dh = D / H, F feed-forward width, V vocabulary, P max positions. ``...`` is any leading shape.
"""

from __future__ import annotations

import math

import numpy as np

from .backend import erf, get_xp, random_uniform

# ---------------------------------------------------------------- linear


def linear_forward(x, p):
    """y = x W^T + b, with PyTorch's (out, in) weight layout (so loading never transposes).

    x: (..., in); p["weight"]: (out, in); p["bias"]: (out,) or absent -> y: (..., out)
    """
    out = x @ p["weight"].T  # (..., in) -> (..., out)
    if "bias" in p:
        out += p["bias"]
    return out, (x, p["weight"])


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


# ---------------------------------------------------------------- activations
# transformers' ACT2FN formulas, exactly (reference §5). Each takes and returns an array of the
# same shape; activation_forward caches the input, which is all any of their backwards needs.

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu_erf(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _gelu_tanh(x):  # gelu_new, gelu_pytorch_tanh, gelu_python_tanh, gelu_accurate
    xp = get_xp(x)
    return 0.5 * x * (1.0 + xp.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x**3)))


def _gelu_fast(x):  # transformers' FastGELUActivation, with its rounded constant
    xp = get_xp(x)
    return 0.5 * x * (1.0 + xp.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def _sigmoid(x):
    xp = get_xp(x)
    # exp of a non-positive number only: no overflow warning for large |x|
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(x):  # log(1 + e^x), stable for large |x|
    xp = get_xp(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def _laplace(x, mu=0.707107, sigma=0.282095):  # transformers' LaplaceActivation constants
    return 0.5 * (1.0 + erf((x - mu) / (sigma * math.sqrt(2.0))))


ACTIVATION_FUNCTIONS = {
    "gelu": _gelu_erf,
    "gelu_python": _gelu_erf,
    "gelu_10": lambda x: get_xp(x).clip(_gelu_erf(x), -10.0, 10.0),
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_python_tanh": _gelu_tanh,
    "gelu_accurate": _gelu_tanh,
    "gelu_fast": _gelu_fast,
    "quick_gelu": lambda x: x * _sigmoid(1.702 * x),
    "relu": lambda x: get_xp(x).maximum(x, 0),
    "relu2": lambda x: get_xp(x).maximum(x, 0) ** 2,
    "relu6": lambda x: get_xp(x).clip(x, 0, 6),
    "leaky_relu": lambda x: get_xp(x).where(x >= 0, x, 0.01 * x),  # torch's default slope
    "silu": lambda x: x * _sigmoid(x),
    "swish": lambda x: x * _sigmoid(x),
    "mish": lambda x: x * get_xp(x).tanh(_softplus(x)),
    "tanh": lambda x: get_xp(x).tanh(x),
    "sigmoid": _sigmoid,
    "laplace": _laplace,
    "linear": lambda x: x,
}


def activation_forward(x, name):
    """Apply the activation called ``name`` (a transformers ACT2FN name). x: (...) -> (...)"""
    try:
        fn = ACTIVATION_FUNCTIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATION_FUNCTIONS)}") from None
    out = fn(x).astype(x.dtype, copy=False)  # erf may return float64; keep the model's dtype
    return out, (x, name)


# ---------------------------------------------------------------- softmax


def softmax_forward(x):
    """Softmax over the last axis, shifted by the row maximum for stability. x: (..., N) -> (..., N)"""
    xp = get_xp(x)
    e = xp.exp(x - x.max(axis=-1, keepdims=True))
    probs = e / e.sum(axis=-1, keepdims=True)
    return probs, probs


# ---------------------------------------------------------------- dropout


def dropout_forward(x, rate, rng=None, train=False):
    """Inverted dropout: zero each entry with probability ``rate``, scale the rest by 1/(1-rate).

    The identity in eval (``train=False``) or with rate 0. The mask is drawn from ``rng`` (a
    numpy Generator) and kept in the cache. x: (...) -> (...)
    """
    if not train or rate == 0.0:
        return x, None
    keep = random_uniform(rng, x.shape, like=x) >= rate
    mask = keep.astype(x.dtype) / (1.0 - rate)
    return x * mask, mask


# ---------------------------------------------------------------- embedding


def embedding_forward(ids, weight):
    """Look up rows of an embedding table. ids: (...) ints; weight: (N, E) -> (..., E)"""
    return weight[ids], (ids, weight.shape)


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
    n_valid = valid.sum()
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 -> nan is the intended answer
        loss = -(picked * valid).sum() / n_valid
    return loss, (log_probs, safe_labels, valid, n_valid)
