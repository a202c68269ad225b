"""Logits processors and sampling warpers: each turns one step's scores into new scores.

Every function here is pure: ``(scores, sequences, ...) -> new scores``, where scores is a float32
array (N, V) on the model's backend (one row per running sequence) and sequences the host array
(N, L) of tokens so far, start token included. A processor that bans a token sets its score to
-inf; a warper (sampling only) reshapes the distribution the next token is drawn from.

``build_processors`` lists the ones a generation config switches on, in transformers 4.57.6's
order (its ``_get_logits_processor``): repetition penalty, no-repeat n-gram, encoder no-repeat
n-gram, bad words, min length, forced bos, forced eos, remove invalid values, exponential decay
length penalty, suppress tokens, begin-suppress tokens; then, when sampling, the warpers
temperature, top-k, top-p, min-p, typical, epsilon, eta; then renormalize. Each is checked against
transformers' class of the same name on random scores (tests/test_sampling.py).
"""

from __future__ import annotations

import numpy as np

from .backend import get_xp
from .ops import log_softmax, softmax_forward

NEG_INF = -np.inf


def _softmax(scores):
    return softmax_forward(scores)[0]


def _ban(scores, remove):
    """scores with every entry where ``remove`` (a bool array like scores) is True set to -inf."""
    xp = get_xp(scores)
    return xp.where(remove, scores.dtype.type(NEG_INF), scores)


def _scatter_back(sorted_flags, order):
    """Undo a per-row sort: ``sorted_flags[r, j]`` belongs to column ``order[r, j]``. (N, V) -> (N, V)"""
    xp = get_xp(sorted_flags)
    flags = xp.empty_like(sorted_flags)
    xp.put_along_axis(flags, order, sorted_flags, axis=1)
    return flags


def _kth_largest(scores, k):
    """The k-th largest value of each row, as a column (N, 1): entries below it are outside the top k."""
    xp = get_xp(scores)
    k = min(k, scores.shape[1])
    return xp.partition(scores, scores.shape[1] - k, axis=1)[:, scores.shape[1] - k, None]


# ================================================================ processors (greedy, beam and sampling)


def repetition_penalty(scores, sequences, penalty):
    """Every distinct earlier token (start included): ``s * p`` if s < 0, else ``s / p`` (CTRL's rule)."""
    xp = get_xp(scores)
    scores = scores.copy()
    seen = xp.asarray(sequences)
    picked = xp.take_along_axis(scores, seen, axis=1)  # (N, L)
    picked = xp.where(picked < 0, picked * penalty, picked / penalty)
    xp.put_along_axis(scores, seen, picked, axis=1)
    return scores


def _banned_by_ngrams(source_tokens, prefix, n):
    """Tokens t such that ``prefix + (t,)`` is an n-gram of ``source_tokens`` (a list)."""
    return {source_tokens[i + n - 1] for i in range(len(source_tokens) - n + 1)
            if tuple(source_tokens[i : i + n - 1]) == prefix}  # fmt: skip


def no_repeat_ngram(scores, sequences, n):
    """Ban each token that would repeat an n-gram already in its row (once the row has n-1 tokens)."""
    xp = get_xp(scores)
    N, L = sequences.shape
    if L + 1 < n:
        return scores
    scores = scores.copy()
    for row in range(N):
        tokens = sequences[row].tolist()
        banned = _banned_by_ngrams(tokens, tuple(tokens[L + 1 - n :]) if n > 1 else (), n)
        if banned:
            scores[row, xp.asarray(sorted(banned))] = NEG_INF
    return scores


def encoder_no_repeat_ngram(scores, sequences, n, encoder_input_ids):
    """Ban each token that would make the row's last n-1 tokens plus it an n-gram of its *source*.

    encoder_input_ids: host (B, S), padding included (as the reference: pad n-grams count too).
    Rows are grouped by item: row r belongs to item ``r // (N // B)``.
    """
    xp = get_xp(scores)
    N, L = sequences.shape
    per_item = N // encoder_input_ids.shape[0]
    if L < n - 1:  # not enough tokens for a prefix yet
        return scores
    scores = scores.copy()
    for row in range(N):
        prefix = tuple(sequences[row, L - (n - 1) :].tolist()) if n > 1 else ()
        banned = _banned_by_ngrams(encoder_input_ids[row // per_item].tolist(), prefix, n)
        if banned:
            scores[row, xp.asarray(sorted(banned))] = NEG_INF
    return scores


def bad_words(scores, sequences, bad_words_ids):
    """Ban the last token of each bad word whose other tokens end the row (one-token words: always).

    bad_words_ids: a list of token lists, already without the ``[eos]`` entries (see build_processors).
    """
    xp = get_xp(scores)
    N, L = sequences.shape
    banned = np.zeros(scores.shape, dtype=bool)  # host (N, V): a few words, tiny work
    for word in bad_words_ids:
        *prefix, last = word
        if len(word) > L:  # longer than the context: cannot match yet
            continue
        if not prefix:
            banned[:, last] = True
        else:
            banned[:, last] |= (sequences[:, L - len(prefix) :] == prefix).all(axis=1)
    return _ban(scores, xp.asarray(banned))


def min_length(scores, sequences, length, eos_token_ids):
    """eos may not end a row shorter than ``length`` tokens (start included)."""
    xp = get_xp(scores)
    if sequences.shape[1] >= length:
        return scores
    scores = scores.copy()
    scores[:, xp.asarray(eos_token_ids)] = NEG_INF
    return scores


def _only(scores, token_ids):
    """Scores that allow only ``token_ids`` (score 0), every other token -inf."""
    xp = get_xp(scores)
    forced = xp.full_like(scores, NEG_INF)
    forced[:, xp.asarray(token_ids)] = 0.0
    return forced


def forced_bos(scores, sequences, token_id):
    """The first generated token is ``token_id``."""
    return _only(scores, [token_id]) if sequences.shape[1] == 1 else scores


def forced_eos(scores, sequences, max_length, eos_token_ids):
    """The last token a max_length run can generate is an eos."""
    return _only(scores, eos_token_ids) if sequences.shape[1] == max_length - 1 else scores


def remove_invalid_values(scores, sequences):
    """nan -> 0, +inf -> the largest float, -inf -> the most negative float (scores' dtype)."""
    xp = get_xp(scores)
    info = np.finfo(scores.dtype)
    return xp.nan_to_num(scores, nan=0.0, posinf=info.max, neginf=info.min)


def exponential_decay_length_penalty(scores, sequences, start_index, decay_factor, eos_token_ids, prompt_length=1):
    """After ``start_index`` generated tokens, raise eos scores by ``|s| * (factor ** i - 1)`` at the
    i-th token past the start (the reference's formula: for a negative score this moves it towards,
    and past, zero)."""
    xp = get_xp(scores)
    cur_len = sequences.shape[1]
    regulation_start = start_index + prompt_length
    if cur_len <= regulation_start:
        return scores
    scores = scores.copy()
    eos = xp.asarray(eos_token_ids)
    scores[:, eos] = scores[:, eos] + xp.abs(scores[:, eos]) * (decay_factor ** (cur_len - regulation_start) - 1)
    return scores


def suppress_tokens(scores, sequences, token_ids):
    """These tokens are never generated."""
    xp = get_xp(scores)
    scores = scores.copy()
    scores[:, xp.asarray(list(token_ids), dtype=np.int64)] = NEG_INF
    return scores


def begin_suppress_tokens(scores, sequences, token_ids, begin_index):
    """These tokens are not generated at position ``begin_index`` (the first generated token, or the
    second when forced_bos_token_id fixes the first)."""
    return suppress_tokens(scores, sequences, token_ids) if sequences.shape[1] == begin_index else scores


def renormalize(scores, sequences):
    """log_softmax again, so the processed scores are log-probabilities."""
    return log_softmax(scores)


# ================================================================ warpers (sampling only)


def temperature(scores, sequences, t):
    """Divide by t: t < 1 sharpens the distribution, t > 1 flattens it."""
    return scores / scores.dtype.type(t)


def top_k(scores, sequences, k, min_tokens_to_keep=1):
    """Keep the k highest scores of each row (every token tied with the k-th stays too)."""
    k = max(k, min_tokens_to_keep)
    return _ban(scores, scores < _kth_largest(scores, k))


def top_p(scores, sequences, p, min_tokens_to_keep=1):
    """Nucleus sampling: keep the smallest set of best tokens whose probabilities sum to more than p.

    As the reference: sort ascending, drop every token whose cumulative probability (from the
    worst) is <= 1 - p, but always keep the best ``min_tokens_to_keep``.
    """
    xp = get_xp(scores)
    order = xp.argsort(scores, axis=1, kind="stable")  # ascending; ties in index order
    cumulative = xp.cumsum(_softmax(xp.take_along_axis(scores, order, axis=1)), axis=1)
    remove_sorted = cumulative <= (1 - p)
    remove_sorted[:, scores.shape[1] - min_tokens_to_keep :] = False
    return _ban(scores, _scatter_back(remove_sorted, order))


def min_p(scores, sequences, p, min_tokens_to_keep=1):
    """Keep tokens whose probability is at least p times the best token's."""
    xp = get_xp(scores)
    probs = _softmax(scores)
    remove = probs < p * probs.max(axis=1, keepdims=True)
    order = xp.argsort(-scores, axis=1, kind="stable")  # best first
    remove_sorted = xp.take_along_axis(remove, order, axis=1)
    remove_sorted[:, :min_tokens_to_keep] = False
    return _ban(scores, _scatter_back(remove_sorted, order))


def typical(scores, sequences, mass, min_tokens_to_keep=1):
    """Locally typical sampling: keep the tokens whose surprisal is closest to the entropy, up to
    probability ``mass`` (the reference's cut: the first token where the sorted cumulative
    probability reaches mass is kept, and every token with the same distance)."""
    xp = get_xp(scores)
    log_probs = log_softmax(scores)
    probs = xp.exp(log_probs)
    entropy = -(probs * xp.where(probs > 0, log_probs, 0.0)).sum(axis=1, keepdims=True)  # (N, 1); 0 log 0 = 0
    distance = xp.abs(-log_probs - entropy)  # (N, V)
    order = xp.argsort(distance, axis=1, kind="stable")  # most typical first
    sorted_distance = xp.take_along_axis(distance, order, axis=1)
    cumulative = xp.cumsum(_softmax(xp.take_along_axis(scores, order, axis=1)), axis=1)
    last = xp.minimum((cumulative < mass).sum(axis=1), scores.shape[1] - 1)  # (N,)
    remove_sorted = sorted_distance > xp.take_along_axis(sorted_distance, last[:, None], axis=1)
    remove_sorted[:, :min_tokens_to_keep] = False
    return _ban(scores, _scatter_back(remove_sorted, order))


def epsilon_cutoff(scores, sequences, epsilon, min_tokens_to_keep=1):
    """Drop tokens with probability below epsilon, keeping the best ``min_tokens_to_keep``."""
    remove = (_softmax(scores) < epsilon) & (scores < _kth_largest(scores, min_tokens_to_keep))
    return _ban(scores, remove)


def eta_cutoff(scores, sequences, epsilon, min_tokens_to_keep=1):
    """Drop tokens with probability below ``min(eps, sqrt(eps) * exp(-entropy))`` (eta sampling)."""
    xp = get_xp(scores)
    probs = _softmax(scores)
    log_probs = log_softmax(scores)
    entropy = -(probs * xp.where(probs > 0, log_probs, 0.0)).sum(axis=1, keepdims=True)  # (N, 1); 0 log 0 = 0
    eta = xp.minimum(scores.dtype.type(epsilon), np.float32(np.sqrt(epsilon)) * xp.exp(-entropy))
    remove = (probs < eta) & (scores < _kth_largest(scores, min_tokens_to_keep))
    return _ban(scores, remove)


# ================================================================ the list a config switches on


def build_processors(s, encoder_input_ids=None):
    """The (name, function) pairs that settings ``s`` switch on, in the reference's order.

    Each function takes ``(scores, sequences)``. encoder_input_ids (host (B, S)) is needed for
    encoder_no_repeat_ngram_size. See docs/generate.md for what each argument means.
    """
    eos = list(s.eos_token_ids)
    steps = []
    if s.repetition_penalty != 1.0:
        steps.append(("repetition_penalty", lambda x, q: repetition_penalty(x, q, s.repetition_penalty)))
    if s.no_repeat_ngram_size > 0:
        steps.append(("no_repeat_ngram_size", lambda x, q: no_repeat_ngram(x, q, s.no_repeat_ngram_size)))
    if s.encoder_no_repeat_ngram_size > 0:
        steps.append(("encoder_no_repeat_ngram_size",
                      lambda x, q: encoder_no_repeat_ngram(x, q, s.encoder_no_repeat_ngram_size, encoder_input_ids)))  # fmt: skip
    if s.bad_words_ids is not None:
        words = [w for w in s.bad_words_ids if not (len(w) == 1 and w[0] in eos)]  # the reference keeps eos allowed
        steps.append(("bad_words_ids", lambda x, q: bad_words(x, q, words)))
    if s.min_length > 0:
        steps.append(("min_length", lambda x, q: min_length(x, q, s.min_length, eos)))
    if s.forced_bos_token_id is not None:
        steps.append(("forced_bos_token_id", lambda x, q: forced_bos(x, q, s.forced_bos_token_id)))
    if s.forced_eos_token_id is not None:
        steps.append(("forced_eos_token_id", lambda x, q: forced_eos(x, q, s.max_length, s.forced_eos_token_id)))
    if s.remove_invalid_values:
        steps.append(("remove_invalid_values", remove_invalid_values))
    if s.exponential_decay_length_penalty is not None:
        start, factor = s.exponential_decay_length_penalty
        steps.append(("exponential_decay_length_penalty",
                      lambda x, q: exponential_decay_length_penalty(x, q, start, factor, eos)))  # fmt: skip
    if s.suppress_tokens is not None:
        steps.append(("suppress_tokens", lambda x, q: suppress_tokens(x, q, s.suppress_tokens)))
    if s.begin_suppress_tokens is not None:
        begin_index = 1 if s.forced_bos_token_id is None else 2  # the prompt is the start token alone
        steps.append(("begin_suppress_tokens",
                      lambda x, q: begin_suppress_tokens(x, q, s.begin_suppress_tokens, begin_index)))  # fmt: skip
    if s.do_sample:
        keep = len(eos) + 1 if s.num_beams > 1 else 1  # beam sampling keeps room for a non-eos candidate
        if s.temperature != 1.0:
            steps.append(("temperature", lambda x, q: temperature(x, q, s.temperature)))
        if s.top_k != 0:
            steps.append(("top_k", lambda x, q: top_k(x, q, s.top_k, keep)))
        if s.top_p < 1.0:
            steps.append(("top_p", lambda x, q: top_p(x, q, s.top_p, keep)))
        if s.min_p is not None:
            steps.append(("min_p", lambda x, q: min_p(x, q, s.min_p, keep)))
        if s.typical_p < 1.0:
            steps.append(("typical_p", lambda x, q: typical(x, q, s.typical_p, keep)))
        if 0.0 < s.epsilon_cutoff < 1.0:
            steps.append(("epsilon_cutoff", lambda x, q: epsilon_cutoff(x, q, s.epsilon_cutoff, keep)))
        if 0.0 < s.eta_cutoff < 1.0:
            steps.append(("eta_cutoff", lambda x, q: eta_cutoff(x, q, s.eta_cutoff, keep)))
    if s.renormalize_logits:
        steps.append(("renormalize_logits", renormalize))
    return steps


def apply_processors(steps, scores, sequences):
    """Run each (name, function) of ``steps`` in order."""
    for _, fn in steps:
        scores = fn(scores, sequences)
    return scores
