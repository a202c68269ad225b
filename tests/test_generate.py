"""Greedy and beam search: the reference's outputs (dumps and live), the KV cache, and search properties."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minibertgen as mbg
from minibertgen import reference
from minibertgen.generate import beam_search, decoder_step, encode_once, resolve_settings
from minibertgen.ops import log_softmax
from minibertgen.testing import assert_close

from .conftest import FIXTURES, perturb, require_oracle

GENERATION = FIXTURES / "generation"
# Beam scores are float32 sums of ~10 log-probabilities of size ~1-10 divided by a length factor:
# float32 rounding (6e-8 relative) of each term gives ~1e-6; 2e-5 leaves margin (reference §10
# reports up to 1.1e-4 absolute only for much longer runs).
SCORE_ATOL = 2e-5


def tiny_model(pos="absolute", seed=0, vocab=24, eos_bias=2.0, max_pos=32):
    part = mbg.BertGenerationConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=20, max_position_embeddings=max_pos,
                                    position_embedding_type=pos)  # fmt: skip
    config = mbg.EncoderDecoderConfig(part, part, decoder_start_token_id=2, pad_token_id=0, eos_token_id=1)
    model = perturb(mbg.EncoderDecoderModel(config, seed=seed, dtype="float64"), seed=seed, scale=0.5)
    model.params["decoder"]["lm_head"]["bias"][1] += eos_bias  # lean towards eos: beams end at different lengths
    return model


@pytest.mark.parametrize("pos", ["absolute", "relative_key", "relative_key_query"])
def test_grid_matches_the_reference_dumps(pos):
    grid = json.loads((GENERATION / pos / "grid.json").read_text())
    model = mbg.EncoderDecoderModel.from_pretrained(GENERATION / pos, dtype="float64")
    ids = np.array(grid["input_ids"])
    for result in grid["results"]:
        out = model.generate(ids, (ids != 0).astype(int), **grid["ids"], **result["settings"], return_dict_in_generate=True, output_scores=True)
        assert out.sequences.tolist() == result["sequences"], result["settings"]
        if result["sequences_scores"] is not None:
            assert_close(out.sequences_scores, result["sequences_scores"], atol=SCORE_ATOL, name=str(result["settings"]))
    assert len(grid["results"]) > 100


@settings(max_examples=15)
@given(pos=st.sampled_from(["absolute", "relative_key", "relative_key_query"]), seed=st.integers(0, 999),
       steps=st.integers(1, 8))  # fmt: skip
def test_cached_decoding_equals_full_recompute(pos, seed, steps):
    """Every step's logits with the KV cache equal a full forward over the whole prefix."""
    model = tiny_model(pos, seed)
    ids = np.array([[5, 6, 7, 8], [9, 10, 0, 0]])
    mask = (ids != 0).astype(int)
    memory = encode_once(model, ids, mask.astype(float))
    prefix = np.full((2, 1), 2)
    past = None
    for _ in range(steps):
        cached, past = decoder_step(model, prefix[:, -1:], past, memory, mask.astype(float))
        full = model(ids, mask, decoder_input_ids=prefix).logits[:, -1]
        # both float64 until the final float32 cast: they agree to float32 rounding of O(10) logits
        assert_close(cached, full.astype(np.float32), atol=1e-5, name=f"step {prefix.shape[1]}")
        prefix = np.concatenate([prefix, full.argmax(-1)[:, None]], axis=1)
    assert past[0]["self"]["k"].shape[2] == steps  # one cached position per step


@settings(max_examples=10)
@given(seed=st.integers(0, 999), pos=st.sampled_from(["absolute", "relative_key_query"]))
def test_one_beam_is_greedy(seed, pos):
    model = tiny_model(pos, seed)
    ids = np.array([[5, 6, 7, 8, 9]])
    greedy = model.generate(ids, max_new_tokens=10)
    one_beam = beam_search(model, encode_once(model, ids, None), None,
                           resolve_settings(model.config, max_new_tokens=10, num_beams=1, early_stopping=True,
                                            length_penalty=0.0), 1)  # fmt: skip
    assert one_beam.sequences.tolist() == greedy.tolist()


@settings(max_examples=8)
@given(seed=st.integers(0, 999), length_penalty=st.sampled_from([0.0, 1.0, 2.0]))
def test_wide_beam_finds_the_brute_force_best(seed, length_penalty):
    """Vocabulary of 5 with eos banned until the end: 4^3 sequences of 3 new tokens; 16 beams
    cover every 2-token prefix, so beam search is exhaustive and must return the best sum."""
    model = tiny_model("relative_key", seed, vocab=5, eos_bias=0.0)
    ids = np.array([[3, 4, 2]])
    out = model.generate(ids, num_beams=16, max_new_tokens=3, min_length=4, length_penalty=length_penalty,
                         return_dict_in_generate=True, output_scores=True)
    best, best_score = None, -np.inf
    for tail in itertools.product([0, 2, 3, 4], repeat=3):  # every token but eos (1)
        seq = np.array([[2, *tail]])
        log_probs = log_softmax(model(ids, decoder_input_ids=seq[:, :-1]).logits.astype(np.float32))[0]
        total = np.float32(0.0)
        for t, token in enumerate(tail):
            total = np.float32(total + log_probs[t, token])  # float32 running sum, as beam search adds
        if total > best_score:
            best, best_score = seq[0].tolist(), total
    assert out.sequences[0].tolist() == best
    # float32 sums of 3 log-probabilities of size ~1-5: rounding ~1e-6, so 1e-5 leaves margin
    assert_close(out.sequences_scores[0], best_score / np.float32(3.0**length_penalty), atol=1e-5, name="best score")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(num_beams=0), "num_beams"),
        (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(max_new_tokens=40), "max_position_embeddings"),
        (dict(max_length=-3), "max_length"),
        (dict(min_new_tokens=-1), "min_new_tokens"),
        (dict(early_stopping="sometimes"), "early_stopping"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(eos_token_id=24), "eos_token_id"),
    ],
)
def test_invalid_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        tiny_model().generate([[5, 6]], **kwargs)


def test_missing_start_token_is_explained():
    part = mbg.BertGenerationConfig(vocab_size=10, hidden_size=4, num_hidden_layers=1, num_attention_heads=1,
                                    intermediate_size=4, bos_token_id=None)  # fmt: skip
    model = mbg.EncoderDecoderModel(mbg.EncoderDecoderConfig(part, part))
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        model.generate([[3, 4]])


@pytest.mark.oracle
@settings(max_examples=20)
@given(
    pos=st.sampled_from(["absolute", "relative_key", "relative_key_query"]),
    seed=st.integers(0, 10_000),
    num_beams=st.integers(1, 4),
    length_penalty=st.sampled_from([1.0, 0.0, 2.0, -0.5]),
    early_stopping=st.sampled_from([True, False, "never"]),
    max_new_tokens=st.integers(1, 10),
    extra=st.sampled_from([{}, {"repetition_penalty": 1.4}, {"no_repeat_ngram_size": 2}, {"min_new_tokens": 3}]),
    data=st.data(),
)
def test_live_against_transformers_generate(pos, seed, num_beams, length_penalty, early_stopping, max_new_tokens,
                                            extra, data):  # fmt: skip
    torch, _ = require_oracle()
    model = tiny_model(pos, seed)
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 24, size=(2, 5))
    ids[1, 3:] = 0
    mask = (ids != 0).astype(int)
    kw = dict(num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping,
              max_new_tokens=max_new_tokens, num_return_sequences=data.draw(st.integers(1, num_beams)),
              decoder_start_token_id=2, eos_token_id=1, pad_token_id=0, **extra)  # fmt: skip
    ours = model.generate(ids, mask, **kw, return_dict_in_generate=True, output_scores=True)
    hf = reference.hf_model(model.config, mbg.flatten(model.params))
    with torch.no_grad():
        theirs = hf.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), do_sample=False,
                             output_scores=True, return_dict_in_generate=True, **kw)  # fmt: skip
    assert ours.sequences.tolist() == theirs.sequences.tolist()
    if num_beams > 1:
        assert_close(ours.sequences_scores, theirs.sequences_scores.numpy(), atol=SCORE_ATOL, name="scores")


@pytest.mark.oracle
def test_saved_generation_config_gives_transformers_our_start_token(tmp_path):
    torch, transformers = require_oracle()
    model = tiny_model("absolute", 3)
    model.config.decoder_start_token_id = 7
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "generation_config.json").read_text())["decoder_start_token_id"] == 7
    hf = transformers.EncoderDecoderModel.from_pretrained(tmp_path, dtype="auto").eval()
    ids = np.array([[5, 6, 7, 8]])
    with torch.no_grad():
        theirs = hf.generate(input_ids=torch.from_numpy(ids), max_new_tokens=5, num_beams=2)
    ours = mbg.EncoderDecoderModel.from_pretrained(tmp_path, dtype="float64").generate(ids, max_new_tokens=5, num_beams=2)
    assert theirs[0, 0].item() == 7 and ours.tolist() == theirs.tolist()


@pytest.mark.parametrize("pos", ["absolute", "relative_key_query"])
def test_beams_share_their_input_s_cross_attention_keys_and_values(pos, monkeypatch):
    """The memory is not repeated per beam: each step's cross K/V have one row per input, and the
    scores equal decoding against a memory repeated k times (the textbook layout)."""
    from minibertgen import generate as gen

    model = tiny_model(pos)
    ids = np.random.default_rng(3).integers(3, 24, size=(3, 5))
    k = 4
    seen = []
    original = gen.decoder_step

    def recording_step(model, tokens, past, memory, memory_mask):
        logits, present = original(model, tokens, past, memory, memory_mask)
        seen.append((tokens.shape[0], present[0]["cross"]["k"].shape[0]))
        repeated = np.repeat(memory, tokens.shape[0] // memory.shape[0], axis=0)
        past_repeated = None if past is None else [
            {"self": layer["self"], "cross": {n: np.repeat(a, k, axis=0) for n, a in layer["cross"].items()}}
            for layer in past]  # fmt: skip
        want, _ = original(model, tokens, past_repeated, repeated, None)
        np.testing.assert_allclose(logits, want, rtol=0, atol=1e-6)  # float32 logits of float64 sums in two orders
        return logits, present

    monkeypatch.setattr(gen, "decoder_step", recording_step)
    model.generate(ids, num_beams=k, max_new_tokens=4)
    assert seen and all(rows == 3 * k and cross_rows == 3 for rows, cross_rows in seen)


def test_shared_memory_is_refused_outside_generation():
    from minibertgen.attention import attention_forward

    model = tiny_model()
    p = model.params["decoder"]["bert"]["encoder"]["layer"][0]["crossattention"]["self"]
    x, memory = np.ones((4, 2, 16)), np.ones((2, 3, 16))
    with pytest.raises(ValueError, match="only generation's cross-attention shares one memory row"):
        attention_forward(x, p, None, 2, memory=memory, train=True)
