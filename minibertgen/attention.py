"""Multi-head attention: heads, masks, relative positions, self- and cross-attention.

What the reference computes (transformers 4.57.6, eager; reference §3-4), per attention module:

    Q, K, V = x Wq^T + bq,  m Wk^T + bk,  m Wv^T + bv       m = x (self) or encoder states (cross)
    raw     = Q K^T  [+ relative-position terms]               (B, H, Tq, Tk)
    scores  = raw / sqrt(Dh) + mask_add                        mask added after scaling
    probs   = softmax(scores)                                  dropout on probs in training
    context = merge_heads(probs V)                             (B, Tq, D)

The additive mask is ``(1 - keep) * finfo(dtype).min``: a fully masked row has every score equal to
finfo.min, so its softmax is uniform over all keys (no NaN), exactly as the reference.
"""

from __future__ import annotations

import math

from .backend import get_xp
from .ops import (
    dropout_backward,
    dropout_forward,
    embedding_backward,
    embedding_forward,
    linear_backward,
    linear_forward,
    softmax_backward,
    softmax_forward,
)

# ---------------------------------------------------------------- heads


def split_heads(x, num_heads):
    """(B, L, D) -> (B, H, L, Dh)"""
    B, L, D = x.shape
    return x.reshape(B, L, num_heads, D // num_heads).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(B, H, L, Dh) -> (B, L, D)"""
    B, H, L, Dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, L, H * Dh)


# ---------------------------------------------------------------- masks


def additive_mask(keep, dtype):
    """0 where ``keep`` is 1 and finfo(dtype).min where it is 0: added to scores before softmax.

    Like the reference, the mask is not cast to bool: use 0/1 values only.
    """
    xp = get_xp(keep)
    return (1.0 - keep.astype(dtype)) * xp.finfo(dtype).min


def padding_mask(attention_mask, dtype):
    """Keys a query may see, from a (B, Tk) 0/1 mask -> additive (B, 1, 1, Tk), broadcast over heads and queries."""
    return additive_mask(attention_mask[:, None, None, :], dtype)


def causal_padding_mask(attention_mask, query_len, dtype):
    """Decoder self-attention: query i (the i-th of the last ``query_len`` positions) sees key j
    when j is a past key or j <= i, and the padding mask allows j.

    attention_mask: (B, Tk) 0/1 over every key (past ones included) -> additive (B, 1, Tq, Tk)
    """
    xp = get_xp(attention_mask)
    key_len = attention_mask.shape[1]
    past_len = key_len - query_len
    query_pos = past_len + xp.arange(query_len)  # (Tq,)
    causal = query_pos[:, None] >= xp.arange(key_len)[None, :]  # (Tq, Tk)
    keep = causal[None, None, :, :] * attention_mask[:, None, None, :]  # (B, 1, Tq, Tk)
    return additive_mask(keep, dtype)


# ---------------------------------------------------------------- relative positions


def relative_position_embeddings(distance_table, query_positions, key_len, max_positions):
    """The distance embedding for each (query, key) pair: E[(l - r) + P - 1].

    distance_table: (2P-1, Dh); query_positions: (Tq,) ints, each query's own position ->
    (Tq, Tk, Dh), and the cache of the lookup.
    """
    xp = get_xp(distance_table)
    distance = query_positions[:, None] - xp.arange(key_len)[None, :]  # (Tq, Tk), in [-(P-1), P-1]
    return embedding_forward(distance + (max_positions - 1), distance_table)  # (Tq, Tk) -> (Tq, Tk, Dh)


def relative_scores(q, k, pos_emb, position_embedding_type):
    """The relative-position terms added to the unscaled Q K^T.

    relative_key:        raw[b,h,l,r] += sum_d Q[b,h,l,d] P[l,r,d]
    relative_key_query:  raw[b,h,l,r] += sum_d Q[b,h,l,d] P[l,r,d] + sum_d K[b,h,r,d] P[l,r,d]

    q: (B, H, Tq, Dh); k: (B, H, Tk, Dh); pos_emb: (Tq, Tk, Dh) -> (B, H, Tq, Tk)
    """
    xp = get_xp(q)
    if position_embedding_type == "relative_key":
        return xp.einsum("bhld,lrd->bhlr", q, pos_emb)
    if position_embedding_type == "relative_key_query":
        return xp.einsum("bhld,lrd->bhlr", q, pos_emb) + xp.einsum("bhrd,lrd->bhlr", k, pos_emb)
    raise ValueError(f"relative_scores: {position_embedding_type!r} is not a relative position type")


def relative_scores_backward(draw, q, k, pos_emb, position_embedding_type):
    """Gradients of the relative terms into Q, K and the (Tq, Tk, Dh) position embeddings.

    extra[b,h,l,r] = sum_d Q[b,h,l,d] P[l,r,d]  (+ sum_d K[b,h,r,d] P[l,r,d])  =>
    dQ = sum_r draw P,  dP = sum_bh draw Q  (+ dK = sum_l draw P,  dP += sum_bh draw K)

    draw: (B, H, Tq, Tk) -> dq (B, H, Tq, Dh), dk (B, H, Tk, Dh) or None, dpos (Tq, Tk, Dh)
    """
    xp = get_xp(draw)
    dq = xp.einsum("bhlr,lrd->bhld", draw, pos_emb)
    dpos = xp.einsum("bhlr,bhld->lrd", draw, q)
    if position_embedding_type == "relative_key":
        return dq, None, dpos
    if position_embedding_type == "relative_key_query":
        dk = xp.einsum("bhlr,lrd->bhrd", draw, pos_emb)
        return dq, dk, dpos + xp.einsum("bhlr,bhrd->lrd", draw, k)
    raise ValueError(f"relative_scores_backward: {position_embedding_type!r} is not a relative position type")


# ---------------------------------------------------------------- the position types, in one place
# Adding a position type touches config.POSITION_EMBEDDING_TYPES and the three functions below.


def uses_query_positions(position_embedding_type) -> bool:
    """Whether attention of this type needs each query's position (``query_positions``)."""
    if position_embedding_type == "absolute":  # positions were added to the embeddings, once
        return False
    if position_embedding_type in ("relative_key", "relative_key_query"):
        return True
    raise ValueError(f"unknown position_embedding_type {position_embedding_type!r}; expected "
                     "'absolute', 'relative_key' or 'relative_key_query'")  # fmt: skip


def position_scores_forward(q, k, p, position_embedding_type, query_positions, max_positions):
    """What positions add to the unscaled scores Q K^T, per type, and the cache of its backward.

    absolute: nothing (None). relative_key / relative_key_query: ``relative_scores`` with the
    distance table p["distance_embedding"] (2P-1, Dh) looked up for each (query, key) pair.
    q: (B, H, Tq, Dh); k: (B, H, Tk, Dh); query_positions: (Tq,) -> (B, H, Tq, Tk) or None
    """
    if not uses_query_positions(position_embedding_type):  # absolute (an unknown type raised there)
        return None, {"type": "absolute"}
    pos_emb, lookup_cache = relative_position_embeddings(
        p["distance_embedding"]["weight"], query_positions, k.shape[2], max_positions
    )  # (Tq, Tk, Dh)
    extra = relative_scores(q, k, pos_emb, position_embedding_type)  # (B, H, Tq, Tk)
    return extra, {"type": position_embedding_type, "q": q, "k": k, "pos_emb": pos_emb, "lookup": lookup_cache}


def position_scores_backward(draw, cache):
    """Backward of position_scores_forward: draw (B, H, Tq, Tk), the gradient of the raw scores ->
    (dq or None, dk or None, parameter grads: {} or {"distance_embedding": {"weight"}})."""
    if cache["type"] == "absolute":
        return None, None, {}
    dq, dk, dpos = relative_scores_backward(draw, cache["q"], cache["k"], cache["pos_emb"], cache["type"])
    return dq, dk, {"distance_embedding": {"weight": embedding_backward(dpos, cache["lookup"])}}


# ---------------------------------------------------------------- attention


def attention_forward(
    x,
    p,
    mask_add,
    num_heads,
    *,
    memory=None,
    past_kv=None,
    position_embedding_type="absolute",
    query_positions=None,
    max_positions=None,
    dropout_prob=0.0,
    rng=None,
    train=False,
):
    """Multi-head attention (transformers' BertSelfAttention): the context, before the output dense.

    x: (B, Tq, D) the queries' input. memory: (B, Tk, D) the keys' and values' input, or None for
    self-attention (memory = x); in generation memory may have B / g rows, each shared by g
    consecutive rows of x (and mask_add then has the memory's rows). p: {"query", "key", "value"} linears and, for relative positions,
    "distance_embedding" (2P-1, Dh). mask_add: additive mask broadcastable to (B, H, Tq, Tk), or None.
    query_positions: (Tq,) position of each query (relative types only); max_positions: P.
    past_kv: the generation KV cache, {"k", "v"} (B, H, Tp, Dh): for self-attention the keys and
    values of earlier positions (the new ones are appended); for cross-attention the memory's keys
    and values from the first step (reused: the memory is not projected again).
    Returns context (B, Tq, D) and the cache; cache["k"], cache["v"] are the next step's past_kv.
    """
    q_lin, q_cache = linear_forward(x, p["query"])  # (B, Tq, D)
    q = split_heads(q_lin, num_heads)  # (B, Tq, D) -> (B, H, Tq, Dh)
    k_cache = v_cache = None
    if memory is not None and past_kv is not None:  # cross-attention, later steps: reuse K, V
        k, v = past_kv["k"], past_kv["v"]
    else:
        kv_input = x if memory is None else memory
        k_lin, k_cache = linear_forward(kv_input, p["key"])  # (B, Tk, D)
        v_lin, v_cache = linear_forward(kv_input, p["value"])  # (B, Tk, D)
        k = split_heads(k_lin, num_heads)  # (B, Tk, D) -> (B, H, Tk, Dh)
        v = split_heads(v_lin, num_heads)  # (B, Tk, D) -> (B, H, Tk, Dh)
        if past_kv is not None:  # self-attention, later steps: earlier keys and values first
            xp = get_xp(k)
            k = xp.concatenate([past_kv["k"], k], axis=2)  # (B, H, Tp + Tq, Dh)
            v = xp.concatenate([past_kv["v"], v], axis=2)
    head_dim = q.shape[-1]
    # Generation may give cross-attention one memory row per input and g = N / B query rows (beams or
    # returned sequences) per input: each input's g rows become g * Tq query rows of one product with
    # its keys, so the memory's K and V are computed, stored and read once per input, not g times.
    N, groups = q.shape[0], q.shape[0] // k.shape[0]
    if groups > 1:
        if train or memory is None or q.shape[0] != groups * k.shape[0]:
            raise ValueError(f"{q.shape[0]} query rows for {k.shape[0]} memory rows: only generation's "
                             "cross-attention shares one memory row among several query rows")  # fmt: skip
        H, Tq = q.shape[1], q.shape[2]
        q = q.reshape(-1, groups, H, Tq, head_dim).transpose(0, 2, 1, 3, 4).reshape(-1, H, groups * Tq, head_dim)

    # The scores are the layer's largest arrays: they are updated in place (the same numbers).
    scores = q @ k.transpose(0, 1, 3, 2)  # (B, H, Tq, Dh) @ (B, H, Dh, Tk) -> (B, H, Tq, Tk)
    extra, position_cache = position_scores_forward(q, k, p, position_embedding_type, query_positions, max_positions)
    if extra is not None:
        scores += extra  # before scaling, as the reference
    scores /= math.sqrt(head_dim)
    if mask_add is not None:
        scores += mask_add  # after scaling, as the reference
    probs, softmax_cache = softmax_forward(scores)  # (B, H, Tq, Tk)
    probs_dropped, dropout_cache = dropout_forward(probs, dropout_prob, rng, train)
    heads = probs_dropped @ v  # (B, H, Tq, Tk) @ (B, H, Tk, Dh) -> (B, H, Tq, Dh)
    if groups > 1:  # (B, H, g * Tq, Dh) -> (B * g, H, Tq, Dh): back to one row per query row
        heads = heads.reshape(-1, H, groups, Tq, head_dim).transpose(0, 2, 1, 3, 4).reshape(N, H, Tq, head_dim)
    context = merge_heads(heads)  # (B, H, Tq, Dh) -> (B, Tq, D)

    cache = {
        "q": q, "k": k, "v": v, "probs": probs, "probs_dropped": probs_dropped,
        "q_cache": q_cache, "k_cache": k_cache, "v_cache": v_cache,
        "softmax": softmax_cache, "dropout": dropout_cache,
        "position": position_cache, "self_attention": memory is None,
        "used_past": past_kv is not None, "groups": groups,
    }  # fmt: skip
    return context, cache


def attention_backward(dcontext, cache):
    """Backward of attention_forward.

    dcontext: (B, Tq, D) -> dx (B, Tq, D); dmemory (B, Tk, D), or None for self-attention (where the
    key/value gradients are already in dx); parameter gradients like p.
    """
    if cache["used_past"] or cache["groups"] > 1:
        raise ValueError("backward through a generation step (past_kv) is not supported: run a full forward")
    q, k, v = cache["q"], cache["k"], cache["v"]
    head_dim = q.shape[-1]
    num_heads = q.shape[1]
    # context = merge_heads(probs_dropped @ V)
    d_heads = split_heads(dcontext, num_heads)  # (B, Tq, D) -> (B, H, Tq, Dh)
    dprobs_dropped = d_heads @ v.transpose(0, 1, 3, 2)  # (B, H, Tq, Dh) @ (B, H, Dh, Tk) -> (B, H, Tq, Tk)
    dv = cache["probs_dropped"].transpose(0, 1, 3, 2) @ d_heads  # (B, H, Tk, Tq) @ (B, H, Tq, Dh) -> (B, H, Tk, Dh)
    dprobs = dropout_backward(dprobs_dropped, cache["dropout"])
    # probs = softmax(raw / sqrt(Dh) + mask_add); the mask is a constant
    draw = softmax_backward(dprobs, cache["probs"])
    draw /= math.sqrt(head_dim)
    # raw = Q K^T (+ relative terms)
    dq = draw @ k  # (B, H, Tq, Tk) @ (B, H, Tk, Dh) -> (B, H, Tq, Dh)
    dk = draw.transpose(0, 1, 3, 2) @ q  # (B, H, Tk, Tq) @ (B, H, Tq, Dh) -> (B, H, Tk, Dh)
    dq_position, dk_position, grads = position_scores_backward(draw, cache["position"])
    if dq_position is not None:
        dq = dq + dq_position
    if dk_position is not None:
        dk = dk + dk_position
    dx, grads["query"] = linear_backward(merge_heads(dq), cache["q_cache"])  # (B, H, Tq, Dh) -> (B, Tq, D)
    dkv_from_k, grads["key"] = linear_backward(merge_heads(dk), cache["k_cache"])
    dkv_from_v, grads["value"] = linear_backward(merge_heads(dv), cache["v_cache"])
    dkv = dkv_from_k + dkv_from_v  # K and V read the same input: their gradients add
    if cache["self_attention"]:
        return dx + dkv, None, grads  # the input fed Q, K and V
    return dx, dkv, grads
