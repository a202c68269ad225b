"""The model classes: init scheme, views, dtype/backend moves, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest

import minibertgen as mbg


def tiny(**kw):
    base = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
                max_position_embeddings=12, initializer_range=0.05)  # fmt: skip
    return mbg.BertGenerationConfig(**{**base, **kw})


@pytest.fixture
def model():
    return mbg.EncoderDecoderModel(mbg.EncoderDecoderConfig(tiny(), tiny(), decoder_start_token_id=2, pad_token_id=0))


def test_init_follows_the_reference_scheme():
    """Reference §1: Linear/Embedding ~ N(0, initializer_range), biases 0, LayerNorm 1/0, pad row 0."""
    flat = mbg.flatten(mbg.BertGenerationDecoder(tiny(vocab_size=4000, hidden_size=64, is_decoder=True,
                                                      add_cross_attention=True), seed=1).params)  # fmt: skip
    word = flat["bert.embeddings.word_embeddings.weight"]
    assert np.all(word[0] == 0)  # pad_token_id 0
    # 4000 x 64 draws: the sample std is within 1% of 0.05 with overwhelming probability
    assert abs(word[1:].std() - 0.05) < 0.0005
    assert np.all(flat["bert.encoder.layer.1.crossattention.self.key.bias"] == 0)
    assert np.all(flat["bert.encoder.layer.0.output.LayerNorm.weight"] == 1)
    assert np.all(flat["lm_head.bias"] == 0)
    assert word.dtype == np.float32
    same = mbg.flatten(mbg.BertGenerationDecoder(tiny(vocab_size=4000, hidden_size=64, is_decoder=True,
                                                      add_cross_attention=True), seed=1).params)  # fmt: skip
    assert all(np.array_equal(flat[k], same[k]) for k in flat), "the same seed gives the same weights"


def test_encoder_and_decoder_are_views_on_the_same_arrays(model):
    assert model.encoder.params["embeddings"] is model.params["encoder"]["embeddings"]
    assert model.decoder.params is model.params["decoder"]
    ids = np.array([[4, 5, 6]])
    out = model(ids, decoder_input_ids=[[2, 7]])
    np.testing.assert_array_equal(out.encoder_last_hidden_state, model.encoder(ids))


def test_float64_and_back(model):
    model.to(dtype="float64")
    assert model.dtype == np.float64
    assert model([[4, 5]], labels=[[6, 7]]).logits.dtype == np.float64


def test_labels_become_shifted_decoder_inputs(model):
    out = model([[4, 5]], labels=[[6, 7, -100]])
    assert out.decoder_input_ids.tolist() == [[2, 6, 7]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(input_ids=[[4, 50]], labels=[[1]]), r"input_ids holds token id 50, outside \[0, 50\)"),
        (dict(input_ids=[[4, -1]], labels=[[1]]), "token id -1"),
        (dict(input_ids=[[4.0, 5.0]], labels=[[1]]), "integer token ids"),
        (dict(input_ids=[[4] * 13], labels=[[1]]), r"13 positions .* max_position_embeddings \(12\)"),
        (dict(input_ids=np.zeros((0, 3), int), labels=[[1]]), "empty"),
        (dict(input_ids=[[4, 5]], attention_mask=[[1, 1, 1]], labels=[[1]]), r"attention_mask has shape \(1, 3\)"),
        (dict(input_ids=[[4, 5]], attention_mask=[[1, 2]], labels=[[1]]), "only 0 and 1"),
        (dict(input_ids=[[4, 5]], decoder_input_ids=[[2, 3]], labels=[[1]]), "labels has shape"),
        (dict(input_ids=[[4, 5]]), "decoder_input_ids or labels"),
        (dict(input_ids=[[4, 5], [6, 7]], labels=[[1]]), "batch"),
        (dict(input_ids=[[[4]]], labels=[[1]]), r"shape \(batch, length\)"),
    ],
)
def test_bad_inputs_get_clear_errors(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        model(**kwargs)


def test_labels_without_a_start_token_say_which_field_to_set():
    model = mbg.EncoderDecoderModel(mbg.EncoderDecoderConfig(tiny(), tiny()))
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        model([[4, 5]], labels=[[6]])


def test_decoder_with_cross_attention_must_be_a_decoder():
    with pytest.raises(ValueError, match="is_decoder"):
        mbg.BertGenerationDecoder(tiny(add_cross_attention=True))


def test_training_mode_dropout_is_seeded_and_changes_the_output(model):
    ids, labels = [[4, 5, 6]], [[7, 8]]
    a = model(ids, labels=labels, train=True, rng=np.random.default_rng(0)).logits
    b = model(ids, labels=labels, train=True, rng=np.random.default_rng(0)).logits
    c = model(ids, labels=labels, train=False).logits
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


def test_float32_stays_float32_through_backward(model):
    """NumPy 2 promotes float32 with a float64 *scalar* to float64: nothing may leak one in."""
    out = model([[4, 5, 6]], [[1, 1, 0]], labels=[[7, 8, -100]], train=True, rng=np.random.default_rng(0))
    assert out.logits.dtype == np.float32 and out.loss.dtype == np.float32
    grads = mbg.flatten(model.backward(out))
    assert {str(g.dtype) for g in grads.values()} == {"float32"}
