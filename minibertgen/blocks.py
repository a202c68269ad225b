"""One transformer layer, BERT's post-LN wiring (reference §5):

    a   = LN1(dropout(Wo · SelfAttention(x)) + x)                attention.{self, output}
    a   = LN2(dropout(Wc · CrossAttention(a, enc)) + a)          crossattention.{self, output}  (decoder only)
    out = LN3(dropout(W2 · act(W1 · a + b1) + b2) + a)           intermediate.dense, output.{dense, LayerNorm}

The three "output" steps share one shape, ``residual_output_forward``: dense, dropout, add the
residual, LayerNorm (transformers' BertSelfOutput and BertOutput are the same computation).
"""

from __future__ import annotations

from .attention import attention_backward, attention_forward
from .ops import (
    activation_backward,
    activation_forward,
    dropout_backward,
    dropout_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
)


def residual_output_forward(h, residual, p, cfg, rng=None, train=False):
    """LN(dropout(h W^T + b) + residual).

    h: (B, T, in); residual: (B, T, D); p: {"dense", "LayerNorm"} -> (B, T, D)
    """
    projected, dense_cache = linear_forward(h, p["dense"])  # (B, T, in) -> (B, T, D)
    dropped, dropout_cache = dropout_forward(projected, cfg.hidden_dropout_prob, rng, train)
    out, ln_cache = layernorm_forward(dropped + residual, p["LayerNorm"], cfg.layer_norm_eps)
    return out, {"dense": dense_cache, "dropout": dropout_cache, "LayerNorm": ln_cache}


def residual_output_backward(dout, cache):
    """out = LN(dropout(h W^T + b) + residual)  =>  (dh, dresidual, {"dense", "LayerNorm"} grads).

    dout: (B, T, D) -> dh (B, T, in), dresidual (B, T, D)
    """
    dsum, ln_grads = layernorm_backward(dout, cache["LayerNorm"])
    dprojected = dropout_backward(dsum, cache["dropout"])
    dh, dense_grads = linear_backward(dprojected, cache["dense"])
    return dh, dsum, {"dense": dense_grads, "LayerNorm": ln_grads}  # the sum passes dsum to the residual


def attention_block_forward(
    x, p, mask_add, cfg, *, memory=None, past_kv=None, query_positions=None, rng=None, train=False
):
    """Attention plus its output step: LN(dropout(Wo · Attention(x, memory)) + x).

    x: (B, Tq, D); memory: (B, Tk, D) for cross-attention, None for self-attention; past_kv: the
    generation KV cache of this attention (see attention_forward);
    p: {"self": attention params, "output": {"dense", "LayerNorm"}} -> (B, Tq, D)
    """
    is_self = memory is None
    context, attn_cache = attention_forward(
        x,
        p["self"],
        mask_add,
        cfg.num_attention_heads,
        memory=memory,
        past_kv=past_kv,
        # cross-attention is always absolute (reference §4): it has no distance table
        position_embedding_type=cfg.position_embedding_type if is_self else "absolute",
        query_positions=query_positions,
        max_positions=cfg.max_position_embeddings,
        dropout_prob=cfg.attention_probs_dropout_prob,
        rng=rng,
        train=train,
    )
    out, output_cache = residual_output_forward(context, x, p["output"], cfg, rng, train)
    return out, {"self": attn_cache, "output": output_cache}


def attention_block_backward(dout, cache):
    """out = LN(dropout(Wo · Attention(x, memory)) + x)  =>  (dx, dmemory or None, grads like p)."""
    dcontext, dresidual, output_grads = residual_output_backward(dout, cache["output"])
    dx, dmemory, attn_grads = attention_backward(dcontext, cache["self"])
    return dx + dresidual, dmemory, {"self": attn_grads, "output": output_grads}  # x fed both paths


def feed_forward_forward(x, p_intermediate, p_output, cfg, rng=None, train=False):
    """LN(dropout(W2 · act(W1 · x + b1) + b2) + x).

    x: (B, T, D); p_intermediate: {"dense"} (F, D); p_output: {"dense", "LayerNorm"} -> (B, T, D)
    """
    hidden, up_cache = linear_forward(x, p_intermediate["dense"])  # (B, T, D) -> (B, T, F)
    activated, act_cache = activation_forward(hidden, cfg.hidden_act)
    out, output_cache = residual_output_forward(activated, x, p_output, cfg, rng, train)  # (B, T, F) -> (B, T, D)
    return out, {"intermediate": up_cache, "activation": act_cache, "output": output_cache}


def feed_forward_backward(dout, cache):
    """out = LN(dropout(W2 · act(W1 · x + b1) + b2) + x)  =>  (dx, intermediate grads, output grads)."""
    dactivated, dresidual, output_grads = residual_output_backward(dout, cache["output"])
    dhidden = activation_backward(dactivated, cache["activation"])
    dx, up_grads = linear_backward(dhidden, cache["intermediate"])
    return dx + dresidual, {"dense": up_grads}, output_grads  # x fed both paths


def layer_forward(
    x,
    p,
    cfg,
    self_mask_add,
    *,
    memory=None,
    cross_mask_add=None,
    query_positions=None,
    past=None,
    rng=None,
    train=False,
):
    """One encoder or decoder layer.

    x: (B, T, D); self_mask_add: additive (B, 1, 1 or T, T); memory: (B, S, D) encoder states, used
    when the layer has cross-attention ("crossattention" in p) and memory is given (the reference
    silently skips cross-attention without encoder states); cross_mask_add: (B, 1, 1, S) or None.
    query_positions: (T,) for relative positions. past: this layer's generation KV cache,
    {"self": {"k", "v"}, "cross": {"k", "v"}}, or None. Returns (B, T, D), this layer's ``present``
    (the same structure: the keys and values of every position so far, the next step's past) and
    the backward cache.
    """
    cache = {}
    past = past or {}
    h, cache["attention"] = attention_block_forward(
        x, p["attention"], self_mask_add, cfg, past_kv=past.get("self"), query_positions=query_positions,
        rng=rng, train=train,
    )  # fmt: skip
    if "crossattention" in p and memory is not None:
        h, cache["crossattention"] = attention_block_forward(
            h, p["crossattention"], cross_mask_add, cfg, memory=memory, past_kv=past.get("cross"), rng=rng, train=train
        )
    out, cache["feed_forward"] = feed_forward_forward(h, p["intermediate"], p["output"], cfg, rng, train)
    # The keys and values the attentions computed (past ones included): what the next step reuses.
    present = {part: {"k": cache[name]["self"]["k"], "v": cache[name]["self"]["v"]}
               for part, name in (("self", "attention"), ("cross", "crossattention")) if name in cache}  # fmt: skip
    return out, present, cache


def layer_backward(dout, cache):
    """Backward of layer_forward: dout (B, T, D) -> dx (B, T, D), dmemory (B, S, D) or None, grads like p."""
    grads = {}
    dh, grads["intermediate"], grads["output"] = feed_forward_backward(dout, cache["feed_forward"])
    dmemory = None
    if "crossattention" in cache:
        dh, dmemory, grads["crossattention"] = attention_block_backward(dh, cache["crossattention"])
    dx, _, grads["attention"] = attention_block_backward(dh, cache["attention"])
    return dx, dmemory, grads
