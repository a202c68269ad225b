"""Exercise on sampling: the top-p (nucleus) cut of one step's scores (notebook 12).

The solution is ``processors.top_p`` (transformers 4.57.6's ``TopPLogitsWarper``): this module only
grades. The known mistakes below are written out so that a wrong answer gets a hint naming its
mistake, not only "differs".
"""

from __future__ import annotations

import numpy as np

from ._grading import _call_learner, _exercise_error, _host


def _softmax64(scores):
    p = np.exp(scores.astype(np.float64) - scores.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def _keep_to_scores(scores, keep):
    return np.where(keep, scores, np.float32(-np.inf)).astype(scores.dtype)


def _nucleus_keep(weights, p, strict: bool, keep_one: bool, sort: bool = True):
    """Which tokens a (right or wrong) nucleus rule keeps. weights: (N, V), the per-token mass the rule
    accumulates (probabilities, or the raw scores for the "no softmax" mistake)."""
    order = np.argsort(-weights, axis=1, kind="stable") if sort else np.tile(np.arange(weights.shape[1]), (len(weights), 1))
    sorted_w = np.take_along_axis(weights, order, axis=1)  # best first (or index order)
    before = np.cumsum(sorted_w, axis=1) - sorted_w  # the mass of the tokens ranked above each one
    inclusive = before + sorted_w
    keep_sorted = (inclusive <= p) if strict else (before < p)  # strict: drops the token that crosses p
    if keep_one:
        keep_sorted[:, 0] = True
    keep = np.empty_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=1)
    return keep


def _known_mistakes(scores, p):
    """name -> (scores a known-wrong top-p returns, the hint for it)."""
    probs = _softmax64(scores)
    return {
        "crossing": (_keep_to_scores(scores, _nucleus_keep(probs, p, strict=True, keep_one=True)),
                     "you dropped the token whose probability makes the running sum reach p. The nucleus is the "
                     "smallest set whose probabilities sum to at least p, so the token that crosses p is in it "
                     "(keep a token when the mass of the tokens ranked *above* it is still below p)"),
        "none kept": (_keep_to_scores(scores, _nucleus_keep(probs, p, strict=False, keep_one=False)),
                      "with p = 0 (or a p smaller than the best token's probability under your rule) you kept no "
                      "token at all, and a row of -inf cannot be sampled: always keep the best token"),
        "index order": (_keep_to_scores(scores, _nucleus_keep(probs, p, strict=False, keep_one=True, sort=False)),
                        "you accumulated the probabilities in token-index order; sort the tokens by probability, "
                        "best first, before the running sum, then put the decisions back in index order"),
        "no softmax": (_keep_to_scores(scores, _nucleus_keep(scores.astype(np.float64), p, strict=False,
                                                             keep_one=True)),
                       "you summed the raw scores (logits); the cut is on probabilities: softmax(scores) first"),
    }  # fmt: skip


def _random_cases(rng, n_cases):
    """(scores (N, V) float32, p) pairs without ties and with every cumulative sum at least 1e-4 away
    from p, so float32 rounding cannot decide a token (the reference's rounding is not the point)."""
    cases = [  # small ones a reader can check by hand: probabilities in index order, p
        (np.log(np.array([[0.1, 0.5, 0.3, 0.1]])), 0.7),  # keep tokens 1, 2 (0.5 + 0.3 crosses 0.7)
        (np.log(np.array([[0.05, 0.6, 0.25, 0.1]])), 0.5),  # keep token 1 alone: it crosses p by itself
        (np.log(np.array([[0.2, 0.3, 0.4, 0.1]])), 0.0),  # p = 0: the nucleus is empty, keep the best
    ]
    while len(cases) < n_cases:
        n, v = int(rng.integers(1, 4)), int(rng.integers(3, 13))
        scores = (rng.normal(size=(n, v)) * rng.uniform(0.5, 3.0)).astype(np.float32)
        p = float(np.round(rng.uniform(0.05, 0.95), 2))
        sorted_probs = -np.sort(-_softmax64(scores), axis=1)
        if np.abs(np.cumsum(sorted_probs, axis=1) - p).min() < 1e-4:
            continue
        cases.append((scores, p))
    return [(s.astype(np.float32), p) for s, p in cases]


def check_top_p(fn, *, n_cases: int = 30, seed: int = 0) -> None:
    """Grade ``fn(scores, p) -> new_scores``: the top-p (nucleus) warper.

    scores: (N, V) float32, one row per sequence; p: a float in [0, 1]. Each row keeps the smallest
    set of its best tokens whose probabilities softmax(scores) sum to at least p (the token that
    makes the sum reach p is kept), and always at least its best token; every other score becomes
    -inf, kept scores are returned unchanged. The solution is ``minibertgen.processors.top_p``
    (transformers' ``TopPLogitsWarper``).
    """
    from ..processors import top_p

    name = "check_top_p"
    rng = np.random.default_rng(seed)
    for scores, p in _random_cases(rng, n_cases):
        where = f"p={p}, scores {np.round(scores, 3).tolist()} (probabilities {np.round(_softmax64(scores), 3).tolist()})"
        got = _host(_call_learner(name, fn, (scores.copy(), p), where), name, "new_scores")
        if got.shape != scores.shape:
            raise _exercise_error(name, f"new_scores has shape {got.shape}, expected {scores.shape} ({where})",
                                  "return the whole (N, V) array, removed tokens set to -inf")
        want = top_p(scores, None, p)
        removed = np.isneginf(want)
        if np.array_equal(np.isneginf(got), removed) and np.array_equal(got[~removed], scores[~removed]):
            continue
        if removed.any() and np.isfinite(got).all() and (got[removed] < -1e9).all():
            hint = "removed tokens must be exactly -inf (a large negative number still has a tiny probability)"
        elif np.array_equal(np.isneginf(got), removed):
            hint = "the kept tokens' scores must be returned unchanged (no renormalising, no softmax in the output)"
        else:
            hint = next((h for wrong, h in _known_mistakes(scores, p).values() if np.array_equal(got, wrong)),
                        "sort by probability (best first), keep a token while the probability of the tokens above "
                        "it is below p, always keep the best one, set the rest to -inf")
        kept = [np.flatnonzero(~np.isneginf(r)).tolist() for r in got]
        expected = [np.flatnonzero(~r).tolist() for r in removed]
        raise _exercise_error(name, f"you kept tokens {kept} with scores {np.round(got, 3).tolist()}, expected to "
                                    f"keep {expected} ({where})", hint)  # fmt: skip
    print(f"{name}: all {n_cases} cases keep the same tokens as minibertgen.processors.top_p "
          "(transformers' TopPLogitsWarper)")
