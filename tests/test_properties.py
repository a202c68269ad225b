"""Rung 5: properties that must hold whatever the weights: padding invariance, causality, masks."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minibertgen as mbg
from minibertgen.attention import attention_forward, causal_padding_mask
from minibertgen.testing import assert_close

from .conftest import perturb
from .strategies import padded_ids, part_configs

# float64; a masked key contributes exp(finfo.min - max) = exactly 0, so the only difference between
# the runs compared below is BLAS summation order for different shapes (~1e-15): 1e-10 is generous.
ATOL = 1e-10


@settings(max_examples=20)
@given(cfg=part_configs(), data=st.data())
def test_encoder_real_positions_ignore_padding(cfg, data):
    """Each row alone (unpadded) equals the same row inside a padded batch, whatever the pad ids."""
    model = perturb(mbg.BertGenerationEncoder(cfg, seed=0, dtype="float64"))
    ids, mask = data.draw(padded_ids(cfg.vocab_size, 10, min_kept=1))
    batch_out = model(ids, mask)
    for row in range(ids.shape[0]):
        n = int(mask[row].sum())
        alone = model(ids[row : row + 1, :n])
        assert_close(batch_out[row, :n], alone[0], atol=ATOL, name=f"row {row}")


@settings(max_examples=15)
@given(enc=part_configs(), dec=part_configs(), data=st.data())
def test_bert2bert_ignores_padded_source_tokens(enc, dec, data):
    config = mbg.EncoderDecoderConfig(enc, dec, decoder_start_token_id=1, pad_token_id=0)
    model = perturb(mbg.EncoderDecoderModel(config, dtype="float64"))
    ids, mask = data.draw(padded_ids(enc.vocab_size, 8, min_kept=1))
    dec_ids, _ = data.draw(padded_ids(dec.vocab_size, 6, batch=ids.shape[0]))
    other = np.where(mask == 1, ids, (ids + 1) % enc.vocab_size)  # change only the padded tokens
    a = model(ids, mask, decoder_input_ids=dec_ids).logits
    b = model(other, mask, decoder_input_ids=dec_ids).logits
    assert_close(a, b, atol=ATOL, name="logits with different pad tokens")


@settings(max_examples=15)
@given(enc=part_configs(), dec=part_configs(), data=st.data())
def test_decoder_is_causal(enc, dec, data):
    """Logits at position t depend on decoder tokens 0..t only."""
    # LayerNorm of 1 feature is its bias, of 2 features (+-1, -+1) * weight + bias: a changed token may
    # then not change any later logit at all. From 3 features on it generically does.
    assume(dec.hidden_size > 2)
    config = mbg.EncoderDecoderConfig(enc, dec, decoder_start_token_id=1, pad_token_id=0)
    model = perturb(mbg.EncoderDecoderModel(config, dtype="float64"))
    ids, mask = data.draw(padded_ids(enc.vocab_size, 6, min_kept=1))
    dec_ids, _ = data.draw(padded_ids(dec.vocab_size, 7, batch=ids.shape[0]))
    t = data.draw(st.integers(0, dec_ids.shape[1] - 1))
    changed = dec_ids.copy()
    changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % dec.vocab_size
    a = model(ids, mask, decoder_input_ids=dec_ids).logits
    b = model(ids, mask, decoder_input_ids=changed).logits
    assert_close(a[:, : t + 1], b[:, : t + 1], atol=ATOL, name=f"logits up to position {t}")
    if t + 1 < dec_ids.shape[1]:
        # Above float64 rounding (~1e-15 on these logits), not a size: with tiny random weights a changed
        # token can move the later logits by well under 1e-6 (hypothesis found 4.7e-7).
        assert np.abs(a[:, t + 1 :] - b[:, t + 1 :]).max() > 1e-10, "later positions should see the change"


def test_a_fully_masked_row_attends_uniformly_to_every_key():
    """As the reference (§3): all scores equal finfo.min, so softmax is uniform, causal keys included."""
    rng = np.random.default_rng(0)
    D, H, T = 8, 2, 5
    p = {n: {"weight": rng.normal(size=(D, D)), "bias": rng.normal(size=D)} for n in ("query", "key", "value")}
    x = rng.normal(size=(1, T, D))
    mask = np.array([[0, 1, 1, 1, 1]], dtype=np.float64)  # the first query sees nothing (causal + pad)
    _, cache = attention_forward(x, p, causal_padding_mask(mask, T, np.float64), H)
    probs = cache["probs"]  # (1, H, T, T)
    assert_close(probs[0, :, 0, :], np.full((H, T), 1.0 / T), atol=1e-15, name="masked row")  # exact in float64
    assert np.all(probs[0, :, 2, 3:] == 0.0), "causal keys after the query get exactly zero"
    assert_close(probs.sum(-1), np.ones((1, H, T)), atol=1e-12, name="rows sum to 1")  # T terms of float64
