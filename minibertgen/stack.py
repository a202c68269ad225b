"""The pure BertGeneration stack and the whole bert2bert as one forward/backward pair.

Every function here is pure: ``*_forward(params, cfg, inputs...) -> (outputs..., cache)`` and
``*_backward(d_output, cache, ...) -> gradients``, as the layers below (blocks.py, attention.py,
ops.py). The classes in model.py hold a config and a parameter tree, check the inputs, and call
these. Reading order, top-down:

    encoder_decoder_forward   encode (encoder stack [+ enc_to_dec_proj]) -> decoder_forward -> loss
    decoder_forward           bert_forward (causal, cross-attention over the memory) -> lm_head_forward
    bert_forward              embeddings_forward -> blocks.layer_forward, layer after layer

Parameters are a nested dict mirroring transformers' state-dict names (layers are a list):
``params["encoder"]["layer"][0]["attention"]["self"]["query"]["weight"]`` is
``encoder.layer.0.attention.self.query.weight``.

Shapes: B batch, S source length, T target length, D hidden, V vocabulary.
"""

from __future__ import annotations

from .attention import causal_padding_mask, padding_mask, uses_query_positions
from .backend import get_xp
from .blocks import layer_backward, layer_forward
from .ops import (
    cross_entropy_backward,
    cross_entropy_forward,
    dropout_backward,
    dropout_forward,
    embedding_backward,
    embedding_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
)

# ================================================================ one stack


def embeddings_forward(input_ids, p, cfg, *, position_offset=0, rng=None, train=False):
    """LN(word[ids] + position[offset + arange(T)]), then dropout (reference §2: no token types).

    input_ids: (B, T) ints; p: {"word_embeddings", "position_embeddings", "LayerNorm"} -> (B, T, D)
    """
    xp = get_xp(p["word_embeddings"]["weight"])
    length = input_ids.shape[1]
    if position_offset + length > cfg.max_position_embeddings:
        raise ValueError(
            f"sequence of {position_offset + length} positions is longer than max_position_embeddings "
            f"({cfg.max_position_embeddings}); truncate the input (e.g. tokenizer max_length)"
        )
    positions = position_offset + xp.arange(length)  # (T,)
    words, word_cache = embedding_forward(input_ids, p["word_embeddings"]["weight"])  # (B, T) -> (B, T, D)
    where, position_cache = embedding_forward(positions, p["position_embeddings"]["weight"])  # (T,) -> (T, D)
    summed = words + where  # (B, T, D) + (T, D)
    normed, ln_cache = layernorm_forward(summed, p["LayerNorm"], cfg.layer_norm_eps)
    out, dropout_cache = dropout_forward(normed, cfg.hidden_dropout_prob, rng, train)
    cache = {"word": word_cache, "position": position_cache, "LayerNorm": ln_cache, "dropout": dropout_cache}
    return out, cache


def embeddings_backward(dout, cache, padding_idx=None):
    """out = dropout(LN(word[ids] + position[positions]))  =>  gradients of the three parameter groups.

    dout: (B, T, D). The pad row of the word table gets no gradient from the lookup (torch's
    padding_idx, reference §1). Returns {"word_embeddings", "position_embeddings", "LayerNorm"}.
    """
    dnormed = dropout_backward(dout, cache["dropout"])
    dsummed, ln_grads = layernorm_backward(dnormed, cache["LayerNorm"])
    dwhere = dsummed.sum(axis=0)  # the (T, D) position rows were broadcast over the batch
    return {
        "word_embeddings": {"weight": embedding_backward(dsummed, cache["word"], padding_idx)},
        "position_embeddings": {"weight": embedding_backward(dwhere, cache["position"])},
        "LayerNorm": ln_grads,
    }


def bert_forward(
    p,
    cfg,
    input_ids,
    attention_mask=None,
    *,
    causal=False,
    memory=None,
    memory_mask=None,
    past=None,
    rng=None,
    train=False,
):
    """One BertGeneration stack: embeddings, then every layer.

    p: {"embeddings", "encoder": {"layer": [...]}}; input_ids: (B, T); attention_mask: (B, T) 0/1
    or None (all ones), covering the past positions too when ``past`` is given; causal: the
    decoder's causal mask; memory: (B, S, D) encoder states for cross-attention and memory_mask
    (B, S) or None; past: the generation KV cache, one ``present`` of an earlier call, whose length
    Tp shifts the positions of the new tokens to Tp, ..., Tp + T - 1.
    Returns the last hidden state (B, T, D), the hidden states [embeddings, layer 1, ..., layer N],
    ``present`` (per layer {"self": {"k", "v"}, "cross": {"k", "v"}}, the keys and values of every
    position so far: the next step's ``past``) and the backward cache.
    """
    past_len = 0 if past is None else past[0]["self"]["k"].shape[2]
    hidden, emb_cache = embeddings_forward(input_ids, p["embeddings"], cfg, position_offset=past_len, rng=rng,
                                           train=train)  # fmt: skip
    xp, dtype = get_xp(hidden), hidden.dtype
    B, T = input_ids.shape
    if attention_mask is None:
        attention_mask = xp.ones((B, past_len + T), dtype=dtype)
    if causal:
        self_mask_add = causal_padding_mask(attention_mask, T, dtype)  # (B, 1, T, Tp + T)
    else:
        self_mask_add = padding_mask(attention_mask, dtype)  # (B, 1, 1, T)
    cross_mask_add = None if memory_mask is None else padding_mask(memory_mask, dtype)  # (B, 1, 1, S)
    # Each query at its own position (DESIGN.md §1): equals transformers with use_cache=False, and
    # its step-by-step generate().
    query_positions = past_len + xp.arange(T) if uses_query_positions(cfg.position_embedding_type) else None

    hidden_states, present, layer_caches = [hidden], [], []
    for i, layer_params in enumerate(p["encoder"]["layer"]):
        hidden, layer_present, layer_cache = layer_forward(
            hidden,
            layer_params,
            cfg,
            self_mask_add,
            memory=memory,
            cross_mask_add=cross_mask_add,
            query_positions=query_positions,
            past=None if past is None else past[i],
            rng=rng,
            train=train,
        )
        hidden_states.append(hidden)
        present.append(layer_present)
        layer_caches.append(layer_cache)
    return hidden, hidden_states, present, {"embeddings": emb_cache, "layers": layer_caches}


def bert_backward(dhidden, cache, padding_idx=None):
    """Backward of bert_forward from the gradient of its last hidden state (B, T, D).

    Returns (grads like p, dmemory (B, S, D) summed over every cross-attention layer, or None).
    It *consumes* ``cache``: each layer's cache is released once used, so the memory held falls as
    the backward walks down (the one exception to "backward never writes into the cache").
    """
    layer_caches = cache["layers"]
    layer_grads, dmemory = [], None
    while layer_caches:
        dhidden, dmem, grads = layer_backward(dhidden, layer_caches.pop())
        layer_grads.append(grads)
        if dmem is not None:
            dmemory = dmem if dmemory is None else dmemory + dmem  # every layer read the same memory
    grads = {"embeddings": embeddings_backward(dhidden, cache.pop("embeddings"), padding_idx),
             "encoder": {"layer": layer_grads[::-1]}}  # fmt: skip
    return grads, dmemory


def lm_head_forward(hidden, p_lm_head, word_embeddings):
    """logits = h W^T + bias, with W the word embeddings when tied (no "decoder" in p_lm_head).

    hidden: (B, T, D); word_embeddings: (V, D) -> logits (B, T, V)
    """
    weight = p_lm_head["decoder"]["weight"] if "decoder" in p_lm_head else word_embeddings
    return linear_forward(hidden, {"weight": weight, "bias": p_lm_head["bias"]})  # (B, T, D) -> (B, T, V)


def decoder_forward(p, cfg, input_ids, attention_mask=None, *, memory=None, memory_mask=None, past=None,
                    rng=None, train=False):  # fmt: skip
    """The decoder stack (causal when cfg.is_decoder) and the LM head.

    p: {"bert", "lm_head"}; input_ids: (B, T); memory: (B, S, D) or None; past: the generation KV
    cache (see bert_forward). Returns logits (B, T, V), hidden states, ``present``, cache.
    """
    hidden, hidden_states, present, bert_cache = bert_forward(
        p["bert"], cfg, input_ids, attention_mask, causal=cfg.is_decoder,
        memory=memory, memory_mask=memory_mask, past=past, rng=rng, train=train,
    )  # fmt: skip
    logits, head_cache = lm_head_forward(hidden, p["lm_head"], p["bert"]["embeddings"]["word_embeddings"]["weight"])
    return logits, hidden_states, present, {"bert": bert_cache, "lm_head": head_cache}


def decoder_backward(dlogits, cache, cfg):
    """Backward of decoder_forward: dlogits (B, T, V) -> (grads like p, dmemory or None).

    Tied, the LM head's weight gradient is added into the word embeddings' (they are one tensor).
    """
    dhidden, head_grads = linear_backward(dlogits, cache["lm_head"])
    grads, dmemory = bert_backward(dhidden, cache["bert"], cfg.pad_token_id)
    if cfg.tie_word_embeddings:
        word = grads["embeddings"]["word_embeddings"]
        word["weight"] = word["weight"] + head_grads["weight"]  # lookup and LM head share the table
        grads = {"bert": grads, "lm_head": {"bias": head_grads["bias"]}}
    else:
        grads = {"bert": grads, "lm_head": {"decoder": {"weight": head_grads["weight"]}, "bias": head_grads["bias"]}}
    return grads, dmemory


def shift_tokens_right(labels, pad_token_id, decoder_start_token_id):
    """decoder_input_ids from labels: start token first, then labels[:, :-1], with -100 -> pad.

    labels: (B, T) -> (B, T)
    """
    xp = get_xp(labels)
    shifted = xp.empty_like(labels)
    shifted[:, 0] = decoder_start_token_id
    shifted[:, 1:] = labels[:, :-1]
    return xp.where(shifted == -100, pad_token_id, shifted)


# ================================================================ the bert2bert


def encoder_params(params, cfg):
    """The encoder's parameter tree inside a bert2bert's ``params``.

    Its own (``params["encoder"]``), or with ``cfg.tie_encoder_decoder`` a view on the decoder's
    stack without the cross-attention: every encoder weight is the decoder's (reference §8), so the
    view shares the arrays.
    """
    if not cfg.tie_encoder_decoder:
        return params["encoder"]
    bert = params["decoder"]["bert"]
    layers = [{k: v for k, v in layer.items() if k != "crossattention"} for layer in bert["encoder"]["layer"]]
    return {"embeddings": bert["embeddings"], "encoder": {"layer": layers}}


def encode(params, cfg, input_ids, attention_mask=None, *, rng=None, train=False):
    """The bert2bert's encoder side: what the decoder's cross-attention reads.

    The encoder stack, then ``enc_to_dec_proj`` when the two hidden sizes differ. Used by the
    forward below and, once per batch, by generation. input_ids: (B, S); attention_mask: (B, S) 0/1
    or None. Returns the memory (B, S, D_dec), the encoder's last hidden state (B, S, D_enc), its
    hidden states and the cache for ``encode_backward``.
    """
    hidden, hidden_states, _, stack_cache = bert_forward(encoder_params(params, cfg), cfg.encoder, input_ids,
                                                         attention_mask, rng=rng, train=train)  # fmt: skip
    memory, proj_cache = hidden, None
    if "enc_to_dec_proj" in params:
        memory, proj_cache = linear_forward(hidden, params["enc_to_dec_proj"])  # (B, S, De) -> (B, S, Dd)
    return memory, hidden, hidden_states, {"stack": stack_cache, "enc_to_dec_proj": proj_cache}


def encode_backward(dmemory, cache, cfg):
    """Backward of encode: dmemory (B, S, D_dec) -> (encoder stack grads, enc_to_dec_proj grads or None)."""
    proj_grads = None
    if cache["enc_to_dec_proj"] is not None:
        dmemory, proj_grads = linear_backward(dmemory, cache["enc_to_dec_proj"])  # (B, S, Dd) -> (B, S, De)
    stack_grads, _ = bert_backward(dmemory, cache["stack"], cfg.encoder.pad_token_id)
    return stack_grads, proj_grads


def encoder_decoder_forward(params, cfg, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask=None,
                            labels=None, *, rng=None, train=False):  # fmt: skip
    """bert2bert (transformers' EncoderDecoderModel): encode the source, decode the target with
    cross-attention over it, and the reference's loss.

    input_ids, attention_mask: (B, S); decoder_input_ids, decoder_attention_mask: (B, T) (masks 0/1
    or None); labels: (B, T) or None, -100 where the loss ignores a position. The loss is the mean
    cross-entropy of logits[t] against labels[t]: no shift, the decoder inputs are already shifted.
    Returns (out, cache); out: {"logits" (B, T, V), "loss" (scalar or None),
    "encoder_last_hidden_state" (B, S, D_enc), "encoder_hidden_states", "decoder_hidden_states",
    "present" (the decoder's keys and values, see bert_forward)}.
    """
    memory, enc_hidden, enc_states, enc_cache = encode(params, cfg, input_ids, attention_mask, rng=rng, train=train)
    logits, dec_states, present, dec_cache = decoder_forward(
        params["decoder"], cfg.decoder, decoder_input_ids, decoder_attention_mask,
        memory=memory, memory_mask=attention_mask, rng=rng, train=train,
    )  # fmt: skip
    cache = {"encode": enc_cache, "decoder": dec_cache, "logits_shape": logits.shape, "loss": None}
    loss = None
    if labels is not None:
        V = logits.shape[-1]
        loss, cache["loss"] = cross_entropy_forward(logits.reshape(-1, V), labels.reshape(-1))  # (B*T, V), no shift
    out = {"logits": logits, "loss": loss, "encoder_last_hidden_state": enc_hidden,
           "encoder_hidden_states": enc_states, "decoder_hidden_states": dec_states, "present": present}  # fmt: skip
    return out, cache


def encoder_decoder_backward(dlogits, cache, cfg):
    """Backward of encoder_decoder_forward: gradients of the loss when ``dlogits`` is None (the
    forward had labels), else of sum(logits * dlogits), dlogits (B, T, V).

    The gradient into the memory is the sum over every decoder layer's cross-attention; with
    tie_encoder_decoder the encoder's gradients add into the decoder's shared weights. Returns a
    tree like the parameters the forward used (``complete_grads`` adds zeros for the rest).
    Consumes ``cache``: to backpropagate twice, run the forward twice.
    """
    if dlogits is None:
        if cache["loss"] is None:
            raise ValueError("backward needs dlogits, or a forward run with labels")
        dlogits = cross_entropy_backward(1.0, cache["loss"]).reshape(cache["logits_shape"])  # (B*T, V) -> (B, T, V)
    grads = {}
    grads["decoder"], dmemory = decoder_backward(dlogits, cache["decoder"], cfg.decoder)
    encoder_grads, proj_grads = encode_backward(dmemory, cache["encode"], cfg)
    if proj_grads is not None:
        grads["enc_to_dec_proj"] = proj_grads
    if cfg.tie_encoder_decoder:  # one set of weights served both stacks: the gradients add
        grads["decoder"]["bert"] = tree_add(grads["decoder"]["bert"], encoder_grads)
    else:
        grads["encoder"] = encoder_grads
    return grads


# ================================================================ gradient trees


def tree_add(tree, extra):
    """tree + extra, leaf by leaf, where ``extra`` has a leaf (a tied weight's gradients add up)."""
    if isinstance(extra, dict):
        return {k: tree_add(v, extra[k]) if k in extra else v for k, v in tree.items()}
    if isinstance(extra, list):
        return [tree_add(a, b) for a, b in zip(tree, extra, strict=True)]
    return tree + extra


def complete_grads(grads, params):
    """grads with zeros for every parameter the forward did not use (e.g. skipped cross-attention),
    ordered like params, so the result mirrors the parameter tree exactly."""
    if isinstance(params, dict):
        return {k: complete_grads(grads.get(k) if grads else None, v) for k, v in params.items()}
    if isinstance(params, list):
        return [complete_grads(grads[i] if grads else None, v) for i, v in enumerate(params)]
    return get_xp(params).zeros_like(params) if grads is None else grads
