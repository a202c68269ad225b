"""Rung 3: live differential tests against transformers 4.57.6 (marker ``oracle``; required in CI).

Hypothesis draws configs (sizes, layers, heads, activation, position type, tying) and inputs
(lengths, padding, -100 labels) and compares hidden states, logits and loss in float64. Models
are built here with random weights moved off their init, then copied into transformers.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minibertgen as mbg
from minibertgen import reference
from minibertgen.config import check_tieable
from minibertgen.testing import assert_close

from .conftest import perturb, require_oracle
from .strategies import padded_ids, part_configs

pytestmark = pytest.mark.oracle

# float64 both sides, activations O(1-10) through at most 3 post-LN layers: the two differ by
# rounding order only (~1e-14); 1e-9 (absolute and relative) leaves room and catches real errors.
TOL = dict(atol=1e-9, rtol=1e-9)


@pytest.fixture(autouse=True)
def _oracle():
    require_oracle()


@settings(max_examples=25)
@given(data=st.data())
def test_bert2bert_matches_transformers(data):
    enc_cfg = data.draw(part_configs(), label="encoder")
    tie = data.draw(st.booleans(), label="tie_encoder_decoder")
    if tie:
        dec_cfg = enc_cfg.replace(hidden_act=data.draw(st.sampled_from(["gelu", "relu", "gelu_new"])))
    else:
        dec_cfg = data.draw(part_configs(), label="decoder")
    start = data.draw(st.integers(0, dec_cfg.vocab_size - 1), label="decoder_start")
    pad = data.draw(st.sampled_from([0, start]), label="pad")
    config = mbg.EncoderDecoderConfig(enc_cfg, dec_cfg, decoder_start_token_id=start, pad_token_id=pad,
                                      tie_encoder_decoder=tie)  # fmt: skip
    model = perturb(mbg.EncoderDecoderModel(config, seed=data.draw(st.integers(0, 99)), dtype="float64"), seed=1)
    ids, mask = data.draw(padded_ids(enc_cfg.vocab_size, 10), label="source")
    labels, label_mask = data.draw(padded_ids(dec_cfg.vocab_size, 8, batch=ids.shape[0], min_kept=1), label="labels")
    labels = np.where(label_mask == 1, labels, -100)

    ours = model(ids, mask, labels=labels)
    hf = reference.hf_model(config, mbg.flatten(model.params))
    theirs = reference.run_encoder_decoder(hf, ids, mask, labels=labels)
    assert_close(ours.encoder_last_hidden_state, theirs["encoder_last_hidden_state"], **TOL, name="encoder output")
    assert_close(ours.logits, theirs["logits"], **TOL, name="logits")
    assert_close(ours.loss, theirs["loss"], **TOL, name="loss")


@settings(max_examples=15)
@given(cfg=part_configs(), data=st.data())
def test_encoder_matches_transformers(cfg, data):
    model = perturb(mbg.BertGenerationEncoder(cfg, seed=3, dtype="float64"), seed=2)
    ids, mask = data.draw(padded_ids(cfg.vocab_size, 12))
    ours = model.forward(ids, mask)
    theirs = reference.run_encoder(reference.hf_model(cfg, mbg.flatten(model.params)), ids, mask)
    for i, (a, b) in enumerate(zip(ours.hidden_states, theirs["hidden_states"], strict=True)):
        assert_close(a, b, **TOL, name=f"hidden_states[{i}]")


@settings(max_examples=15)
@given(cfg=part_configs(is_decoder=True, add_cross_attention=True), data=st.data())
def test_decoder_with_cross_attention_matches_transformers(cfg, data):
    model = perturb(mbg.BertGenerationDecoder(cfg, seed=4, dtype="float64"), seed=3)
    ids, mask = data.draw(padded_ids(cfg.vocab_size, 9), label="ids")
    memory_len = data.draw(st.integers(1, 6))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    memory = rng.normal(size=(ids.shape[0], memory_len, cfg.hidden_size))
    memory_mask = (rng.random((ids.shape[0], memory_len)) < 0.7).astype(np.int64)
    labels = rng.integers(0, cfg.vocab_size, size=ids.shape)
    ours = model(ids, mask, encoder_hidden_states=memory, encoder_attention_mask=memory_mask, labels=labels)
    theirs = reference.run_decoder(reference.hf_model(cfg, mbg.flatten(model.params)), ids, mask, memory,
                                   memory_mask, labels=labels)  # fmt: skip
    assert_close(ours.logits, theirs["logits"], **TOL, name="logits")
    # the reference's causal-LM loss casts logits to float32 (reference §7): float32 rounding, ~1e-6
    assert_close(ours.loss, theirs["loss"], atol=5e-6, rtol=1e-6, name="loss")


def test_tie_encoder_decoder_shares_weights_as_transformers_does():
    """With tie_encoder_decoder the encoder runs on the decoder's stack (reference §8)."""
    cfg = mbg.BertGenerationConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=12, position_embedding_type="relative_key")  # fmt: skip
    check_tieable(cfg, cfg)
    config = mbg.EncoderDecoderConfig(cfg, cfg, decoder_start_token_id=1, pad_token_id=0, tie_encoder_decoder=True)
    model = perturb(mbg.EncoderDecoderModel(config, dtype="float64"))
    assert "encoder" not in model.params  # one copy of every shared weight
    hf = reference.hf_model(config, mbg.flatten(model.params))
    torch, _ = require_oracle()
    assert hf.encoder.embeddings.word_embeddings.weight is hf.decoder.bert.embeddings.word_embeddings.weight
    ids = np.array([[3, 4, 5, 6]])
    ours = model(ids, labels=[[7, 8, 9]])
    theirs = reference.run_encoder_decoder(hf, ids, labels=np.array([[7, 8, 9]]))
    assert_close(ours.logits, theirs["logits"], **TOL, name="logits")


@settings(max_examples=12)
@given(data=st.data())
def test_every_gradient_matches_torch_autograd(data):
    torch, _ = require_oracle()
    enc_cfg = data.draw(part_configs(), label="encoder")
    tie = data.draw(st.booleans(), label="tie_encoder_decoder")
    dec_cfg = enc_cfg.replace(tie_word_embeddings=data.draw(st.booleans())) if tie else data.draw(part_configs())
    config = mbg.EncoderDecoderConfig(enc_cfg, dec_cfg, decoder_start_token_id=1, pad_token_id=0,
                                      tie_encoder_decoder=tie)  # fmt: skip
    model = perturb(mbg.EncoderDecoderModel(config, seed=0, dtype="float64"), seed=5)
    ids, mask = data.draw(padded_ids(enc_cfg.vocab_size, 8), label="source")
    labels, kept = data.draw(padded_ids(dec_cfg.vocab_size, 6, batch=ids.shape[0], min_kept=1), label="labels")
    labels = np.where(kept == 1, labels, -100)
    grads = mbg.flatten(model.backward(model(ids, mask, labels=labels)))

    hf = reference.hf_model(config, mbg.flatten(model.params))
    loss = hf(input_ids=reference.to_torch(ids), attention_mask=reference.to_torch(mask),
              labels=reference.to_torch(labels), use_cache=False).loss  # fmt: skip
    loss.backward()
    # float64 gradients of O(1) sums: rounding-order differences only (see TOL). With hidden_size 1
    # every LayerNorm input is constant (x - mean = 0), so its 1/sqrt(var + eps) is 1/sqrt(eps) ~ 1e6:
    # gradients that are exactly 0 in ours come out of torch as rounding (~1e-16) times that, up to
    # ~2e-9 (measured), hence 1e-7 there.
    atol = 1e-9 if min(enc_cfg.hidden_size, dec_cfg.hidden_size) > 1 else 1e-7
    for name, grad in grads.items():
        theirs = hf.get_parameter(name).grad
        theirs = torch.zeros_like(hf.get_parameter(name)) if theirs is None else theirs
        assert_close(grad, theirs.numpy(), atol=atol, rtol=1e-7, name=f"d loss / d {name}")
