"""Rung 1: every backward against central finite differences in float64 (DESIGN.md §6).

A random upstream gradient (never ones) makes L = sum(out * dout); grad_check compares the analytic
gradient of every input and parameter with finite differences along random directions. Its default
tolerances (rtol 1e-5, atol 1e-6) are set by float64 (see grad_check): a wrong gradient is off by
far more.

Masks here always leave each query at least one visible key. In a fully masked row every score is
exactly finfo.min, so the output no longer depends on the queries and finite differences give 0,
while backward (like torch's autograd, which treats "+ mask" as the identity) passes a gradient
through the uniform softmax. The reference-gradient tests cover that case against torch.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minibertgen as mbg
from minibertgen import ops
from minibertgen.attention import attention_backward, attention_forward, causal_padding_mask, padding_mask
from minibertgen.blocks import layer_backward, layer_forward
from minibertgen.config import ACTIVATIONS
from minibertgen.testing import grad_check

from .conftest import perturb
from .strategies import padded_ids, part_configs


def check_op(forward, backward, inputs, seed=0):
    """Finite-difference check of an op: forward(**inputs) -> out; backward(dout) -> {name: grad}."""
    out = forward(**inputs)
    dout = np.random.default_rng(seed).normal(size=np.shape(out))
    grads = backward(dout)

    def loss(arrays):
        return float((forward(**arrays) * dout).sum())

    return grad_check(loss, inputs, grads)


def visible_first(rng, batch, keys):
    """A random 0/1 key mask that always shows key 0, so no query row is fully masked."""
    mask = (rng.random((batch, keys)) < 0.7).astype(float)
    mask[:, 0] = 1.0
    return mask


shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 6))
seeds = st.integers(0, 2**31)


@settings(max_examples=20)
@given(shape=shapes, n_out=st.integers(1, 5), seed=seeds)
def test_linear(shape, n_out, seed):
    rng = np.random.default_rng(seed)
    inputs = dict(x=rng.normal(size=shape), weight=rng.normal(size=(n_out, shape[-1])), bias=rng.normal(size=n_out))

    def forward(x, weight, bias):
        return ops.linear_forward(x, {"weight": weight, "bias": bias})[0]

    def backward(dout):
        dx, g = ops.linear_backward(dout, ops.linear_forward(inputs["x"], {"weight": inputs["weight"],
                                                                           "bias": inputs["bias"]})[1])  # fmt: skip
        return {"x": dx, "weight": g["weight"], "bias": g["bias"]}

    check_op(forward, backward, inputs, seed)


@settings(max_examples=20)
@given(shape=shapes, seed=seeds, eps=st.sampled_from([1e-12, 1e-5, 0.1]))
def test_layernorm(shape, seed, eps):
    rng = np.random.default_rng(seed)
    D = shape[-1]
    inputs = dict(x=rng.normal(size=shape) * 3 + 1, weight=rng.normal(size=D), bias=rng.normal(size=D))

    def forward(x, weight, bias):
        return ops.layernorm_forward(x, {"weight": weight, "bias": bias}, eps)[0]

    def backward(dout):
        cache = ops.layernorm_forward(inputs["x"], {"weight": inputs["weight"], "bias": inputs["bias"]}, eps)[1]
        dx, g = ops.layernorm_backward(dout, cache)
        return {"x": dx, **g}

    if D > 1:  # with one feature LayerNorm is constant in x: its gradient is 0, as is the difference
        check_op(forward, backward, inputs, seed)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation(name):
    rng = np.random.default_rng(1)
    # away from the kinks of relu-like functions (finite differences straddling a kink are wrong)
    x = rng.uniform(-4, 4, size=(5, 7))
    x = np.where(np.abs(x) < 1e-3, 0.5, x)
    x = np.where(np.abs(x - 6) < 1e-3, 5.0, x)
    inputs = dict(x=x)
    check_op(lambda x: ops.activation_forward(x, name)[0],
             lambda dout: {"x": ops.activation_backward(dout, ops.activation_forward(x, name)[1])}, inputs)  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_activation_equals_its_plain_formula_exactly(dtype):
    """activation_forward/backward may compute faster (GELU keeps 1 + erf for its backward); the
    numbers must be those of the formulas in ACTIVATION_FUNCTIONS, bit for bit."""
    rng = np.random.default_rng(2)
    x, dout = rng.normal(0, 3, size=(2, 3, 50)).astype(dtype), rng.normal(size=(2, 3, 50)).astype(dtype)
    for name, (f, grad) in ops.ACTIVATION_FUNCTIONS.items():
        out, cache = ops.activation_forward(x, name)
        np.testing.assert_array_equal(out, f(x).astype(dtype), err_msg=name)
        np.testing.assert_array_equal(ops.activation_backward(dout, cache), (dout * grad(x)).astype(dtype), err_msg=name)


@settings(max_examples=20)
@given(shape=shapes, seed=seeds)
def test_softmax(shape, seed):
    x = np.random.default_rng(seed).normal(size=shape) * 2
    check_op(lambda x: ops.softmax_forward(x)[0],
             lambda dout: {"x": ops.softmax_backward(dout, ops.softmax_forward(x)[0])}, dict(x=x))  # fmt: skip


def test_dropout_reuses_its_mask():
    x = np.random.default_rng(0).normal(size=(4, 6))
    out, cache = ops.dropout_forward(x, 0.5, np.random.default_rng(7), train=True)
    keep, scale = cache
    mask = keep * scale

    def forward(x):
        return x * mask  # the same mask as the cache: dropout is linear in x once the mask is drawn

    check_op(forward, lambda dout: {"x": ops.dropout_backward(dout, cache)}, dict(x=x))
    assert keep.dtype == bool and scale == 2.0 and 0 < keep.sum() < keep.size
    np.testing.assert_array_equal(out, x * mask)  # the float-mask formula, exactly


@settings(max_examples=20)
@given(seed=seeds, pad=st.sampled_from([None, 0]))
def test_embedding_with_repeated_ids(seed, pad):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 4, size=(3, 5))  # 4 rows, 15 lookups: many repeats
    ids[0, :3] = 1
    weight = rng.normal(size=(4, 3))

    def forward(weight):
        return ops.embedding_forward(ids, weight)[0]

    def backward(dout):
        return {"weight": ops.embedding_backward(dout, ops.embedding_forward(ids, weight)[1], pad)}

    only = None if pad is None else {"weight": (np.arange(4) != pad)[:, None] * np.ones((1, 3))}
    out = forward(weight)
    dout = rng.normal(size=out.shape)
    grads = backward(dout)
    grad_check(lambda a: float((forward(**a) * dout).sum()), dict(weight=weight), grads, only=only)
    if pad is not None:
        assert np.all(grads["weight"][pad] == 0)


@settings(max_examples=20)
@given(seed=seeds, n=st.integers(1, 6), V=st.integers(2, 7))
def test_cross_entropy_with_ignored_labels(seed, n, V):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, V)) * 3
    labels = rng.integers(0, V, size=n)
    labels[rng.random(n) < 0.3] = -100
    loss, cache = ops.cross_entropy_forward(logits, labels)
    grad = ops.cross_entropy_backward(1.0, cache)
    if np.all(labels == -100):
        assert np.isnan(loss) and np.all(grad == 0)  # 0/0 as torch; nothing to learn from
        return
    grad_check(lambda a: float(ops.cross_entropy_forward(a["logits"], labels)[0]), dict(logits=logits),
               {"logits": grad})  # fmt: skip


@settings(max_examples=25)
@given(
    pos=st.sampled_from(["absolute", "relative_key", "relative_key_query"]),
    cross=st.booleans(),
    heads=st.integers(1, 3),
    head_dim=st.integers(1, 4),
    data=st.data(),
)
def test_attention_self_and_cross(pos, cross, heads, head_dim, data):
    rng = np.random.default_rng(data.draw(seeds))
    D, B, Tq = heads * head_dim, data.draw(st.integers(1, 2)), data.draw(st.integers(1, 5))
    Tk = data.draw(st.integers(1, 5)) if cross else Tq
    P = 8
    arrays = {f"{n}.{w}": rng.normal(size=(D, D) if w == "weight" else D)
              for n in ("query", "key", "value") for w in ("weight", "bias")}  # fmt: skip
    arrays["x"] = rng.normal(size=(B, Tq, D))
    if cross:
        arrays["memory"] = rng.normal(size=(B, Tk, D))
        mask_add = padding_mask(visible_first(rng, B, Tk), np.float64)
        pos = "absolute"
    else:
        mask_add = causal_padding_mask(visible_first(rng, B, Tk), Tq, np.float64)
        if pos != "absolute":
            arrays["distance_embedding.weight"] = rng.normal(size=(2 * P - 1, head_dim))

    def forward(arrays):
        p = mbg.unflatten({k: v for k, v in arrays.items() if k not in ("x", "memory")})
        return attention_forward(arrays["x"], p, mask_add, heads, memory=arrays.get("memory"),
                                 position_embedding_type=pos, query_positions=np.arange(Tq), max_positions=P)  # fmt: skip

    out, cache = forward(arrays)
    dout = rng.normal(size=out.shape)
    dx, dmemory, grads = attention_backward(dout, cache)
    grads = {**mbg.flatten(grads), "x": dx}
    if cross:
        grads["memory"] = dmemory
    grad_check(lambda a: float((forward(a)[0] * dout).sum()), arrays, grads)


@settings(max_examples=15)
@given(cfg=part_configs(is_decoder=True, add_cross_attention=True), data=st.data())
def test_decoder_layer_with_cross_attention(cfg, data):
    rng = np.random.default_rng(data.draw(seeds))
    layer = mbg.unflatten({k.removeprefix("bert.encoder.layer.0."): v for k, v in
                           mbg.flatten(perturb(mbg.BertGenerationDecoder(cfg, dtype="float64")).params).items()
                           if k.startswith("bert.encoder.layer.0.")})  # fmt: skip
    B, T, S = 2, data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    arrays = {**mbg.flatten(layer), "x": rng.normal(size=(B, T, cfg.hidden_size)),
              "memory": rng.normal(size=(B, S, cfg.hidden_size))}  # fmt: skip
    self_mask = causal_padding_mask(np.ones((B, T)), T, np.float64)
    cross_mask = padding_mask(visible_first(rng, B, S), np.float64)

    def forward(a):
        p = mbg.unflatten({k: v for k, v in a.items() if k not in ("x", "memory")})
        return layer_forward(a["x"], p, cfg, self_mask, memory=a["memory"], cross_mask_add=cross_mask,
                             query_positions=np.arange(T))  # fmt: skip

    out, _, cache = forward(arrays)
    dout = rng.normal(size=out.shape)
    dx, dmemory, grads = layer_backward(dout, cache)
    grad_check(lambda a: float((forward(a)[0] * dout).sum()), arrays,
               {**mbg.flatten(grads), "x": dx, "memory": dmemory})  # fmt: skip


def word_rows_but_pad(flat, pad_ids):
    """Directions for word tables that skip the pad row: torch's padding_idx gives it no lookup gradient."""
    return {k: (np.arange(v.shape[0]) != pad_ids[k.split(".")[0]])[:, None] * np.ones((1, v.shape[1]))
            for k, v in flat.items() if k.endswith("word_embeddings.weight")}  # fmt: skip


@settings(max_examples=12)
@given(enc=part_configs(), data=st.data())
def test_bert2bert_loss_gradient_of_every_parameter(enc, data):
    tie = data.draw(st.booleans(), label="tie_encoder_decoder")
    dec = enc.replace(tie_word_embeddings=data.draw(st.booleans())) if tie else data.draw(part_configs())
    config = mbg.EncoderDecoderConfig(enc, dec, decoder_start_token_id=1, pad_token_id=0, tie_encoder_decoder=tie)
    model = perturb(mbg.EncoderDecoderModel(config, seed=0, dtype="float64"))
    ids, mask = data.draw(padded_ids(enc.vocab_size, 6, min_kept=1))
    labels, kept = data.draw(padded_ids(dec.vocab_size, 5, batch=ids.shape[0], min_kept=1))
    labels = np.where(kept == 1, labels, -100)
    grads = mbg.flatten(model.backward(model(ids, mask, labels=labels)))
    flat = mbg.flatten(model.params)
    assert list(grads) == list(flat)

    def loss(arrays):
        return float(mbg.EncoderDecoderModel(config, params=mbg.unflatten(arrays))(ids, mask, labels=labels).loss)

    pads = {"encoder": enc.pad_token_id, "decoder": dec.pad_token_id}
    grad_check(loss, flat, grads, only=word_rows_but_pad(flat, pads), n_directions=1)


@settings(max_examples=8)
@given(cfg=part_configs(is_decoder=True, add_cross_attention=True), data=st.data())
def test_decoder_causal_lm_loss_and_encoder_gradients(cfg, data):
    rng = np.random.default_rng(data.draw(seeds))
    ids, mask = data.draw(padded_ids(cfg.vocab_size, 6, min_kept=2))
    memory = rng.normal(size=(ids.shape[0], 3, cfg.hidden_size))
    dec = perturb(mbg.BertGenerationDecoder(cfg, dtype="float64"))
    grads = mbg.flatten(dec.backward(dec(ids, mask, encoder_hidden_states=memory, labels=ids)))
    flat = mbg.flatten(dec.params)

    def loss(arrays):
        return float(mbg.BertGenerationDecoder(cfg, params=mbg.unflatten(arrays))(
            ids, mask, encoder_hidden_states=memory, labels=ids).loss)  # fmt: skip

    grad_check(loss, flat, grads, only=word_rows_but_pad(flat, {"bert": cfg.pad_token_id}), n_directions=1)

    enc_cfg = cfg.replace(is_decoder=False, add_cross_attention=False)
    enc = perturb(mbg.BertGenerationEncoder(enc_cfg, dtype="float64"))
    out = enc.forward(ids, mask)
    dhidden = rng.normal(size=out.last_hidden_state.shape)
    grads = mbg.flatten(enc.backward(out, dhidden))
    flat = mbg.flatten(enc.params)
    grad_check(lambda a: float((mbg.BertGenerationEncoder(enc_cfg, params=mbg.unflatten(a))(ids, mask) * dhidden).sum()),
               flat, grads, only=word_rows_but_pad(flat, {"embeddings": cfg.pad_token_id}), n_directions=1)  # fmt: skip


def test_tied_lm_head_gradient_includes_the_pad_row():
    """Reference §1: the pad row gets no lookup gradient, but does get one through a tied LM head."""
    cfg = mbg.BertGenerationConfig(vocab_size=10, hidden_size=4, num_hidden_layers=1, num_attention_heads=1,
                                   intermediate_size=4, is_decoder=True)  # fmt: skip
    dec = perturb(mbg.BertGenerationDecoder(cfg, dtype="float64"))
    grads = dec.backward(dec([[3, 4, 5]], labels=[[3, 4, 5]]))
    assert np.abs(grads["bert"]["embeddings"]["word_embeddings"]["weight"][0]).max() > 0


def test_a_few_rows_give_the_same_product_either_way():
    """linear_forward computes W x^T for a few rows (faster in OpenBLAS, ops.weight_first): the
    result must be the usual x W^T to float32 rounding, with the same shape, dtype and layout, on
    both sides of each switch (16 rows; 32 rows below 4096 outputs)."""
    rng = np.random.default_rng(0)
    for width, switch in ((4096 + 3, 16), (40, 32)):
        p = {"weight": rng.normal(size=(width, 16)).astype("float32"), "bias": rng.normal(size=width).astype("float32")}
        for rows in (1, switch, switch + 1):
            assert ops.weight_first(rows, width) == (rows <= switch)
            x = rng.normal(size=(rows, 1, 16)).astype("float32")
            out, _ = ops.linear_forward(x, p)
            assert out.shape == (rows, 1, width) and out.dtype == np.float32 and out.flags.c_contiguous
            # float32 sums of 16 products in two orders: a few ulps of values of size ~4
            np.testing.assert_allclose(out, x @ p["weight"].T + p["bias"], rtol=0, atol=1e-5)
