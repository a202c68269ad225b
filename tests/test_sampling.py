"""generate() beyond greedy and beam: processors, warpers, sampling, step scores, configs, streaming.

Each processor and warper is compared with transformers' class of the same name on random scores;
whole generate() runs with each processor are compared token for token; sampling, which cannot
share torch's random stream, is checked by its properties and by a chi-square test of its draws.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minibertgen as mbg
from minibertgen import processors as P
from minibertgen import reference
from minibertgen.generate import sample_candidates, sample_tokens
from minibertgen.generation_config import resolve_settings

from .conftest import require_oracle
from .test_generate import tiny_model

# ================================================================ warpers and processors vs transformers

# Scores drawn from a few levels (ties) or freely, with some -inf (tokens already banned).
LEVELS = [-np.inf, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0]


@st.composite
def score_rows(draw):
    n, v = draw(st.integers(1, 3)), draw(st.integers(2, 12))
    tied = draw(st.booleans())
    element = st.sampled_from(LEVELS[1:]) if tied else st.floats(-8, 8, allow_nan=False, width=32)
    values = np.array(draw(st.lists(st.lists(element, min_size=v, max_size=v), min_size=n, max_size=n)), np.float32)
    for row in range(n):  # ban up to v-1 tokens per row, never all
        for col in draw(st.lists(st.integers(0, v - 1), max_size=v - 1, unique=True)):
            values[row, col] = -np.inf
    return values


def torch_apply(processor, scores, sequences):
    torch, _ = require_oracle()
    return processor(torch.from_numpy(sequences), torch.from_numpy(scores.copy())).numpy()


def boundary_margin(scores, cut):
    """How far the nearest cumulative (sorted) probability is from ``cut``: float32 rounding of
    softmax + cumsum (~1e-7 per term, V <= 12 terms) can move a token across a cut closer than
    ~1e-6, where torch and NumPy may then disagree; such draws are not a behaviour difference."""
    probs = np.exp(scores.astype(np.float64) - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    cums = np.concatenate([np.cumsum(np.sort(probs, axis=1), axis=1), np.cumsum(-np.sort(-probs, axis=1), axis=1),
                           probs, probs / probs.max(axis=1, keepdims=True)], axis=1)  # fmt: skip
    return np.abs(cums - cut).min()


@pytest.mark.oracle
@settings(max_examples=60)
@given(scores=score_rows(), which=st.sampled_from(["temperature", "top_k", "top_p", "min_p", "typical_p",
                                                   "epsilon_cutoff", "eta_cutoff"]),
       value=st.floats(0.01, 0.99), k=st.integers(1, 15), keep=st.integers(1, 3))  # fmt: skip
def test_each_warper_equals_transformers(scores, which, value, k, keep):
    _, transformers = require_oracle()
    g = transformers.generation.logits_process
    seqs = np.zeros((scores.shape[0], 1), dtype=np.int64)
    keep = min(keep, scores.shape[1])
    ours_theirs = {
        "temperature": (lambda x: P.temperature(x, seqs, value * 3), g.TemperatureLogitsWarper(value * 3)),
        "top_k": (lambda x: P.top_k(x, seqs, k, keep), g.TopKLogitsWarper(k, min_tokens_to_keep=keep)),
        "top_p": (lambda x: P.top_p(x, seqs, value, keep), g.TopPLogitsWarper(value, min_tokens_to_keep=keep)),
        "min_p": (lambda x: P.min_p(x, seqs, value, keep), g.MinPLogitsWarper(value, min_tokens_to_keep=keep)),
        "typical_p": (lambda x: P.typical(x, seqs, value, keep), g.TypicalLogitsWarper(value, min_tokens_to_keep=keep)),
        "epsilon_cutoff": (lambda x: P.epsilon_cutoff(x, seqs, value / 4, keep),
                           g.EpsilonLogitsWarper(value / 4, min_tokens_to_keep=keep)),
        "eta_cutoff": (lambda x: P.eta_cutoff(x, seqs, value / 4, keep),
                       g.EtaLogitsWarper(value / 4, min_tokens_to_keep=keep)),
    }  # fmt: skip
    cut = {"top_p": 1 - value, "min_p": value, "typical_p": value, "epsilon_cutoff": value / 4}.get(which)
    if cut is not None:
        assume(boundary_margin(scores, cut) > 1e-6)
    if which == "eta_cutoff":
        assume(boundary_margin(scores, value / 4) > 1e-6)  # eta is min(eps, ...): the eps branch
    ours, theirs = ours_theirs[which]
    got, want = ours(scores), torch_apply(theirs, scores, seqs)
    if which == "typical_p":  # ties in the sorted distances are ordered differently by torch's unstable sort
        assume(len(np.unique(np.abs(scores[np.isfinite(scores)]))) == np.isfinite(scores).sum())
    if which == "eta_cutoff":  # the entropy branch: compare where float32 rounding cannot decide
        assume((np.isinf(got) == np.isinf(want)).all())
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want), err_msg=which)
    finite = np.isfinite(want)
    # Same float32 operations (a division, or none): rounding at most 1 ulp (~1.2e-7 relative).
    np.testing.assert_allclose(got[finite], want[finite], rtol=2.4e-7, atol=0, err_msg=which)


@st.composite
def processor_case(draw):
    scores = draw(score_rows())
    n, v = scores.shape
    length = draw(st.integers(1, 6))
    seqs = np.array(draw(st.lists(st.lists(st.integers(0, v - 1), min_size=length, max_size=length),
                                  min_size=n, max_size=n)), dtype=np.int64)  # fmt: skip
    return scores, seqs


@pytest.mark.oracle
@settings(max_examples=60)
@given(case=processor_case(), which=st.sampled_from(["repetition_penalty", "no_repeat_ngram", "encoder_no_repeat_ngram",
                                                     "bad_words", "min_length", "forced_bos", "forced_eos",
                                                     "remove_invalid_values", "exponential_decay", "suppress",
                                                     "begin_suppress", "renormalize"]),
       data=st.data())  # fmt: skip
def test_each_processor_equals_transformers(case, which, data):
    torch, transformers = require_oracle()
    g = transformers.generation.logits_process
    scores, seqs = case
    n, v = scores.shape
    L = seqs.shape[1]
    token = data.draw(st.integers(0, v - 1), label="token")
    size = data.draw(st.integers(1, 3), label="n")
    tokens = data.draw(st.lists(st.integers(0, v - 1), min_size=1, max_size=3, unique=True), label="tokens")
    source = np.array([data.draw(st.lists(st.integers(0, v - 1), min_size=5, max_size=5), label="source")])
    if which == "remove_invalid_values":
        scores = scores.copy()
        scores[0, 0], scores[-1, -1] = np.nan, np.inf
    words = [data.draw(st.lists(st.integers(0, v - 1), min_size=1, max_size=3), label="word") for _ in range(2)]
    eos = tokens[0]
    words = [w for w in words if w != [eos]] or [[(eos + 1) % v]]
    cases = {
        "repetition_penalty": (lambda: P.repetition_penalty(scores, seqs, 1.7), g.RepetitionPenaltyLogitsProcessor(1.7)),
        "no_repeat_ngram": (lambda: P.no_repeat_ngram(scores, seqs, size), g.NoRepeatNGramLogitsProcessor(size)),
        "encoder_no_repeat_ngram": (lambda: P.encoder_no_repeat_ngram(scores, seqs, size, source),
                                    g.EncoderNoRepeatNGramLogitsProcessor(size, torch.from_numpy(source))),
        "bad_words": (lambda: P.bad_words(scores, seqs, words), g.NoBadWordsLogitsProcessor(words, eos)),
        "min_length": (lambda: P.min_length(scores, seqs, L + size - 2, tokens),
                       g.MinLengthLogitsProcessor(L + size - 2, tokens)),
        "forced_bos": (lambda: P.forced_bos(scores, seqs, token), g.ForcedBOSTokenLogitsProcessor(token)),
        "forced_eos": (lambda: P.forced_eos(scores, seqs, L + size - 1, tokens),
                       g.ForcedEOSTokenLogitsProcessor(L + size - 1, tokens)),
        "remove_invalid_values": (lambda: P.remove_invalid_values(scores, seqs), g.InfNanRemoveLogitsProcessor()),
        "exponential_decay": (lambda: P.exponential_decay_length_penalty(scores, seqs, size - 1, 1.5, tokens),
                              g.ExponentialDecayLengthPenalty((size - 1, 1.5), tokens, 1)),
        "suppress": (lambda: P.suppress_tokens(scores, seqs, tokens), g.SuppressTokensLogitsProcessor(tokens)),
        "begin_suppress": (lambda: P.begin_suppress_tokens(scores, seqs, tokens, size),
                           g.SuppressTokensAtBeginLogitsProcessor(tokens, size)),
        "renormalize": (lambda: P.renormalize(scores, seqs), g.LogitNormalization()),
    }  # fmt: skip
    ours, theirs = cases[which]
    got, want = ours(), torch_apply(theirs, scores, seqs)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want), err_msg=which)
    finite = np.isfinite(want)
    # One float32 operation (or a log_softmax): a few ulp (~1e-7 relative, 1e-6 absolute near 0).
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6, atol=1e-6, err_msg=which)


# ================================================================ whole generate() runs vs transformers

PROCESSOR_SETTINGS = [
    dict(bad_words_ids=[[5], [7, 8], [3, 4, 9]]),
    dict(forced_bos_token_id=9),
    dict(forced_eos_token_id=4),
    dict(suppress_tokens=[3, 4, 5, 6]),
    dict(begin_suppress_tokens=[1, 3, 5]),
    dict(begin_suppress_tokens=[1, 3], forced_bos_token_id=7),
    dict(encoder_no_repeat_ngram_size=2),
    dict(encoder_no_repeat_ngram_size=1),
    dict(exponential_decay_length_penalty=(2, 1.8)),
    dict(renormalize_logits=True),
    dict(remove_invalid_values=True, repetition_penalty=1.5),
    dict(no_repeat_ngram_size=2, bad_words_ids=[[6]], min_new_tokens=2),
]


@pytest.mark.oracle
@pytest.mark.parametrize("extra", PROCESSOR_SETTINGS, ids=lambda d: ",".join(d))
@pytest.mark.parametrize("num_beams", [1, 3])
def test_processors_in_generate_equal_transformers(extra, num_beams):
    torch, _ = require_oracle()
    for pos, seed in (("absolute", 1), ("relative_key_query", 2)):
        model = tiny_model(pos, seed, eos_bias=0.5)
        ids = np.random.default_rng(seed).integers(3, 24, size=(2, 6))
        ids[1, 4:] = 0
        mask = (ids != 0).astype(int)
        kw = dict(num_beams=num_beams, max_new_tokens=7, decoder_start_token_id=2, eos_token_id=1, pad_token_id=0,
                  output_scores=True, return_dict_in_generate=True, **extra)  # fmt: skip
        ours = model.generate(ids, mask, **kw)
        hf = reference.hf_model(model.config, mbg.flatten(model.params))
        with torch.no_grad():
            theirs = hf.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), **kw)
        assert ours.sequences.tolist() == theirs.sequences.tolist(), (pos, extra)
        assert len(ours.scores) == len(theirs.scores)
        for step, (a, b) in enumerate(zip(ours.scores, theirs.scores, strict=True)):
            b = b.numpy()
            np.testing.assert_array_equal(np.isinf(a), np.isinf(b), err_msg=f"step {step}")
            # float64 model, float32 scores: the logits agree to ~1e-13 before the cast, so the
            # processed scores to float32 rounding of values up to ~30 (~4e-6); 1e-5 leaves margin.
            np.testing.assert_allclose(a[np.isfinite(b)], b[np.isfinite(b)], atol=1e-5, rtol=0, err_msg=f"step {step}")
        if num_beams > 1:
            assert ours.beam_indices.tolist() == theirs.beam_indices.tolist()
            # float32 beam sums over ~7 steps (see test_generate.SCORE_ATOL)
            np.testing.assert_allclose(ours.sequences_scores, theirs.sequences_scores.numpy(), atol=2e-5, rtol=0)


@pytest.mark.oracle
@pytest.mark.parametrize("num_beams", [1, 2])
def test_first_sampled_step_scores_equal_transformers(num_beams):
    """Sampling draws differ (NumPy vs torch streams), but the warped scores of the first step,
    from the same prefix, must be the reference's."""
    torch, _ = require_oracle()
    model = tiny_model("relative_key", 4, eos_bias=0.0)
    ids = np.array([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 0, 0]])
    mask = (ids != 0).astype(int)
    kw = dict(do_sample=True, top_k=9, top_p=0.8, temperature=0.7, typical_p=0.95, min_p=0.05, num_beams=num_beams,
              max_new_tokens=1, decoder_start_token_id=2, eos_token_id=1, pad_token_id=0, output_scores=True,
              output_logits=True, return_dict_in_generate=True, repetition_penalty=1.2)  # fmt: skip
    ours = model.generate(ids, mask, seed=0, **kw)
    hf = reference.hf_model(model.config, mbg.flatten(model.params))
    with torch.no_grad():
        theirs = hf.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), **kw)
    a, b = ours.scores[0], theirs.scores[0].numpy()
    np.testing.assert_array_equal(np.isinf(a), np.isinf(b))
    assert np.isinf(a).any() and np.isfinite(a).sum() >= ids.shape[0] * num_beams  # the warpers did cut
    # as in test_processors_in_generate_equal_transformers, divided by temperature 0.7
    np.testing.assert_allclose(a[np.isfinite(b)], b[np.isfinite(b)], atol=2e-5, rtol=0)
    np.testing.assert_allclose(ours.logits[0], theirs.logits[0].numpy(), atol=1e-5, rtol=0)


# ================================================================ sampling's own properties


def test_sampling_is_reproducible_and_depends_on_the_seed():
    model = tiny_model("absolute", 5, eos_bias=-1.0)
    ids = [[5, 6, 7, 8], [9, 10, 11, 12]]
    runs = [model.generate(ids, do_sample=True, seed=s, max_new_tokens=12, num_return_sequences=3) for s in (7, 7, 8)]
    assert runs[0].tolist() == runs[1].tolist()
    assert runs[0].tolist() != runs[2].tolist()
    rng_run = model.generate(ids, do_sample=True, rng=np.random.default_rng(7), max_new_tokens=12, num_return_sequences=3)
    assert rng_run.tolist() == runs[0].tolist()  # seed=s is rng=default_rng(s)
    assert len({tuple(r) for r in runs[0].tolist()}) > 1  # the three samples of an input differ


@settings(max_examples=8)
@given(seed=st.integers(0, 999), pos=st.sampled_from(["absolute", "relative_key_query"]))
def test_top_k_1_and_a_tiny_temperature_are_greedy(seed, pos):
    model = tiny_model(pos, seed)
    ids = np.random.default_rng(seed).integers(3, 24, size=(2, 5))
    greedy = model.generate(ids, max_new_tokens=8)
    assert model.generate(ids, do_sample=True, top_k=1, seed=seed, max_new_tokens=8).tolist() == greedy.tolist()
    assert model.generate(ids, do_sample=True, temperature=1e-6, top_k=0, seed=seed,
                          max_new_tokens=8).tolist() == greedy.tolist()  # fmt: skip


def test_sampled_first_tokens_follow_the_warped_distribution():
    """Chi-square goodness of fit of 4000 first tokens against softmax(warped scores).

    With the seed fixed the test is deterministic; the threshold is the 0.999 quantile of
    chi-square for the number of categories, so a correct sampler fails with chance 1/1000 over
    seeds, and a sampler off by a few percent on any token fails nearly always.
    """
    from scipy import stats

    model = tiny_model("absolute", 6, eos_bias=0.0)
    ids = np.array([[5, 6, 7, 8]])
    kw = dict(do_sample=True, top_k=0, top_p=0.9, temperature=1.3, max_new_tokens=1)
    out = model.generate(ids, return_dict_in_generate=True, output_scores=True, seed=0, **kw)
    warped = out.scores[0][0].astype(np.float64)
    expected = np.exp(warped - warped.max())
    expected /= expected.sum()
    n = 4000
    draws = model.generate(np.repeat(ids, n, axis=0), seed=1, **kw)[:, 1]
    support = np.flatnonzero(expected)
    assert set(draws.tolist()) <= set(support.tolist())  # nothing outside the nucleus is ever drawn
    counts = np.bincount(draws, minlength=len(expected))[support]
    chi2 = ((counts - n * expected[support]) ** 2 / (n * expected[support])).sum()
    assert len(support) >= 3  # a real distribution, not a near-one-hot
    assert chi2 < stats.chi2.ppf(0.999, len(support) - 1), (chi2, counts, n * expected[support])


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), v=st.integers(2, 9), n=st.integers(1, 4))
def test_draws_never_pick_a_banned_token(seed, v, n):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(3, v)).astype(np.float32)
    scores[rng.random((3, v)) < 0.4] = -np.inf
    scores[:, rng.integers(v)] = 0.0  # at least one allowed per row
    assume((np.isfinite(scores).sum(axis=1) >= n).all())
    tokens = sample_tokens(scores, rng.random(3))
    assert np.isfinite(scores[np.arange(3), tokens]).all()
    picked, values = sample_candidates(scores, n, rng.random((3, n)))
    assert all(len(set(row)) == n for row in picked.tolist())  # without replacement
    assert np.isfinite(values).all()


def test_a_row_with_nothing_left_to_draw_is_explained():
    with pytest.raises(ValueError, match="no token left to draw"):
        sample_tokens(np.full((1, 4), -np.inf, dtype=np.float32), np.array([0.5]))


# ================================================================ batched equals alone


@settings(max_examples=6)
@given(seed=st.integers(0, 999), pos=st.sampled_from(["absolute", "relative_key", "relative_key_query"]))
def test_padded_batch_generates_what_each_source_generates_alone(seed, pos):
    model = tiny_model(pos, seed, eos_bias=0.5)
    rng = np.random.default_rng(seed)
    lengths = [6, 3, 4]
    ids = np.zeros((3, 6), dtype=np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(3, 24, size=n)
    mask = (ids != 0).astype(int)
    settings_list = [dict(max_new_tokens=6), dict(max_new_tokens=6, num_beams=3, num_return_sequences=2),
                     dict(max_new_tokens=6, do_sample=True, seed=[11, 12, 13], num_return_sequences=2),
                     dict(max_new_tokens=6, do_sample=True, num_beams=2, seed=[21, 22, 23])]  # fmt: skip
    for kw in settings_list:
        together = model.generate(ids, mask, **kw)
        per_row = len(together) // 3
        for row, n in enumerate(lengths):
            alone_kw = dict(kw, seed=[kw["seed"][row]]) if "seed" in kw else kw
            alone = model.generate(ids[row : row + 1, :n], **alone_kw)
            mine = together[row * per_row : (row + 1) * per_row, : alone.shape[1]]
            assert mine.tolist() == alone.tolist(), (kw, row)


# ================================================================ arguments, configs, limits


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(num_beam=4), "unknown argument 'num_beam'; did you mean num_beams"),
        (dict(do_smaple=True), "did you mean do_sample"),
        (dict(top_pp=0.9), "did you mean top_p"),
        (dict(diversity_penalty=0.5), "'diversity_penalty' is a transformers argument that minibertgen does not support"),
        (dict(output_attentions=True), "does not support"),
        (dict(do_sample=True, temperature=0.0), "temperature must be a positive number"),
        (dict(do_sample=True, top_p=1.5), "top_p must be in"),
        (dict(do_sample=True, top_k=-1), "top_k must be an integer >= 0"),
        (dict(bad_words_ids=[5]), "bad_words_ids must be a non-empty list of non-empty token-id lists"),
        (dict(suppress_tokens=[99]), "suppress_tokens 99 is outside the decoder vocabulary"),
        (dict(exponential_decay_length_penalty=3), "exponential_decay_length_penalty must be"),
        (dict(num_return_sequences=2), "greedy decoding gives one sequence"),
        (dict(do_sample=True, rng=3), "rng must be a numpy.random.Generator"),
        (dict(do_sample=True, seed=[1, 2, 3]), "one entry per input"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        tiny_model().generate([[5, 6]], **kwargs)


def test_sampling_options_without_do_sample_warn():
    with pytest.warns(UserWarning, match="do_sample is False, so top_p has no effect"):
        tiny_model().generate([[5, 6]], top_p=0.5, max_new_tokens=2)


def test_max_length_reaches_one_past_the_position_table():
    model = tiny_model(max_pos=8)
    out = model.generate([[5, 6]], max_new_tokens=8, min_new_tokens=8)  # the start token + 8 new
    assert out.shape == (1, 9)
    assert model.generate([[5, 6]], max_length=9, min_length=9).shape == (1, 9)
    with pytest.raises(ValueError, match="at most max_new_tokens=8"):
        model.generate([[5, 6]], max_new_tokens=9)


def test_generation_config_defaults_are_overridden_by_keywords(tmp_path):
    model = tiny_model("absolute", 2, eos_bias=-1.0)
    ids = [[5, 6, 7]]
    model.generation_config = mbg.GenerationConfig(num_beams=3, max_new_tokens=4, num_return_sequences=2)
    assert model.generate(ids).shape == (2, 5)
    assert model.generate(ids, num_beams=1, num_return_sequences=1).shape == (1, 5)
    given = mbg.GenerationConfig(max_new_tokens=6)  # its non-default fields win over the model's
    assert model.generate(ids, generation_config=given).shape == (2, 7)
    assert model.generate(ids, generation_config=given, max_new_tokens=2).shape == (2, 3)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    assert saved["num_beams"] == 3 and saved["decoder_start_token_id"] == 2 and saved["max_new_tokens"] == 4
    loaded = mbg.EncoderDecoderModel.from_pretrained(tmp_path, dtype="float64")
    assert loaded.generation_config.num_beams == 3
    assert loaded.generate(ids).tolist() == model.generate(ids).tolist()


@pytest.mark.oracle
def test_generation_config_json_is_read_by_transformers(tmp_path):
    torch, transformers = require_oracle()
    model = tiny_model("absolute", 3, eos_bias=-1.0)
    model.generation_config = mbg.GenerationConfig(num_beams=2, max_new_tokens=5, no_repeat_ngram_size=2)
    model.save_pretrained(tmp_path)
    hf = transformers.EncoderDecoderModel.from_pretrained(tmp_path, dtype="auto").eval()
    assert hf.generation_config.num_beams == 2 and hf.generation_config.no_repeat_ngram_size == 2
    ids = np.array([[5, 6, 7, 8]])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = hf.generate(input_ids=torch.from_numpy(ids))
    assert model.generate(ids).tolist() == theirs.tolist()


def test_an_unsupported_field_in_a_generation_config_file_is_refused(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    path = tmp_path / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "num_beam_groups": 2, "transformers_version": "4.57.6"}))
    loaded = mbg.EncoderDecoderModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="sets num_beam_groups=2, which minibertgen does not support"):
        loaded.generate([[5, 6]])
    del loaded.generation_config.extra["num_beam_groups"]
    assert loaded.generate([[5, 6]], max_new_tokens=2).shape[0] == 1


def test_return_dict_gives_every_field_and_the_default_gives_the_array():
    model = tiny_model()
    ids = [[5, 6, 7]]
    plain = model.generate(ids, max_new_tokens=4)
    assert isinstance(plain, np.ndarray) and plain.ndim == 2
    out = model.generate(ids, max_new_tokens=4, return_dict_in_generate=True)
    assert out.sequences.tolist() == plain.tolist() and out["sequences"] is out.sequences
    assert out.scores is None and out.sequences_scores is None
    beams = model.generate(ids, max_new_tokens=4, num_beams=2, return_dict_in_generate=True, output_scores=True,
                           output_logits=True)  # fmt: skip
    assert beams.sequences_scores.shape == (1,) and beams.beam_indices.shape == (1, beams.sequences.shape[1] - 1)
    assert len(beams.scores) == len(beams.logits) >= 1 and beams.scores[0].shape == (2, 24)


def test_use_cache_false_recomputes_the_same_tokens():
    model = tiny_model("relative_key_query", 9, eos_bias=0.0)
    ids = [[5, 6, 7, 8]]
    for kw in (dict(), dict(num_beams=3), dict(do_sample=True, seed=3)):
        assert model.generate(ids, max_new_tokens=6, use_cache=False, **kw).tolist() == \
            model.generate(ids, max_new_tokens=6, **kw).tolist(), kw  # fmt: skip


def test_resolve_settings_keeps_transformers_default_length():
    config = tiny_model().config
    assert resolve_settings(config).max_length == 21  # the reference's 20, plus the start token
    assert resolve_settings(config, max_length=20).max_length == 20


# ================================================================ streaming


class Recorder:
    def __init__(self):
        self.calls = []

    def put(self, value):
        self.calls.append(np.asarray(value).tolist())

    def end(self):
        self.calls.append("end")


def test_streamer_sees_the_start_token_then_each_new_token():
    model = tiny_model("absolute", 1, eos_bias=-2.0)
    recorder = Recorder()
    out = model.generate([[5, 6, 7]], max_new_tokens=5, streamer=recorder, do_sample=True, seed=2)
    assert recorder.calls[0] == [[2]] and recorder.calls[-1] == "end"
    assert [c[0] for c in recorder.calls[1:-1]] == out[0, 1:].tolist()
    with pytest.raises(ValueError, match="streamer= works with greedy decoding and sampling only"):
        model.generate([[5, 6, 7]], num_beams=2, streamer=Recorder())


def test_text_streamer_prints_what_decode_gives(capsys):
    class Words:  # a tokenizer whose token t decodes to the word "w<t>"
        def decode(self, tokens, skip_special_tokens=False):
            return " ".join(f"w{t}" for t in tokens)

    model = tiny_model("absolute", 1, eos_bias=-2.0)
    out = model.generate([[5, 6, 7]], max_new_tokens=5, streamer=mbg.TextStreamer(Words()))
    assert capsys.readouterr().out == " ".join(f"w{t}" for t in out[0].tolist()) + "\n"


def test_docs_list_exactly_the_arguments_generate_takes():
    import re
    from pathlib import Path

    from minibertgen.generation_config import CALL_ARGUMENTS, UNSUPPORTED, GenerationConfig

    text = (Path(__file__).resolve().parents[1] / "docs" / "generate.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", text, flags=re.M))
    fields = {f for f in GenerationConfig.__dataclass_fields__ if f != "extra"}
    assert documented == fields | set(CALL_ARGUMENTS)
    unsupported_section = text[text.index("## Not supported") :]
    assert set(re.findall(r"`(\w+)`", unsupported_section)) >= set(UNSUPPORTED)
