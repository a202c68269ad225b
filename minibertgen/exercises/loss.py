"""Exercises on teacher forcing and the loss (notebook 07): the right shift that makes
decoder_input_ids from labels, and the mean cross-entropy that ignores -100."""

from __future__ import annotations

import numpy as np

from ._grading import _call_learner, _exercise_error, _host

IGNORE = -100  # the label the loss skips, as torch's CrossEntropyLoss(ignore_index=-100)


def _padded_labels(rng, B: int, T: int, low: int, high: int) -> np.ndarray:
    """(B, T) labels as train.collate makes them: a sequence of 1..T ids, then -100 to the end.
    At least one row is shorter than T (so -100 is present) when T > 1."""
    lengths = rng.integers(1, T + 1, size=B)
    if T > 1:
        lengths[int(rng.integers(0, B))] = int(rng.integers(1, T))
    labels = np.full((B, T), IGNORE, dtype=np.int64)
    for b, n in enumerate(lengths):
        labels[b, :n] = rng.integers(low, high, size=n)
    return labels


# ---------------------------------------------------------------- the right shift


def check_shift_right(fn, *, n_cases: int = 20, seed: int = 0) -> None:
    """Grade ``fn(labels, pad_token_id, decoder_start_token_id) -> decoder_input_ids`` against
    ``minibertgen.stack.shift_tokens_right``.

    labels: (B, T) ints, -100 on the positions the loss ignores -> decoder_input_ids (B, T).
    """
    from ..stack import shift_tokens_right

    name = "check_shift_right"
    rng = np.random.default_rng(seed)
    for case in range(n_cases):
        B, T = int(rng.integers(1, 5)), int(rng.integers(2, 8))
        pad, start = (int(i) for i in rng.choice(np.arange(0, 6), size=2, replace=False))  # distinct, any order
        labels = _padded_labels(rng, B, T, 6, 30)  # ordinary ids never equal pad or start: every mistake shows
        given = labels.copy()
        where = f"labels {labels.tolist()}, pad_token_id={pad}, decoder_start_token_id={start}"
        got = _host(_call_learner(name, fn, (given, pad, start), where), name, "decoder_input_ids")
        if not np.array_equal(given, labels):
            raise _exercise_error(name, f"your function wrote into labels ({where})",
                                  "build a new array: the loss still needs the labels, -100 and all")
        if got.shape != labels.shape:
            raise _exercise_error(name, f"decoder_input_ids have shape {got.shape}, expected {labels.shape} ({where})",
                                  "one decoder input per label: drop one label at one end, add the start token "
                                  "at the other")
        expected = shift_tokens_right(labels, pad, start)
        if np.array_equal(got, expected):
            continue
        left = np.concatenate([labels[:, 1:], np.full((B, 1), pad)], axis=1)
        if np.array_equal(got, labels) or np.array_equal(got, np.where(labels == IGNORE, pad, labels)):
            hint = ("these are the labels themselves: position t would see the token it must predict and learn "
                    "to copy it. Shift right: start token first, then labels[:, :-1]")
        elif (got == IGNORE).any():
            hint = ("-100 is not a token id: the shifted labels keep the -100 of the padding; replace it by "
                    "pad_token_id after shifting (the embedding lookup would fail on it)")
        elif np.array_equal(got, np.where(left == IGNORE, pad, left)) or np.array_equal(got[:, :-1], labels[:, 1:]):
            hint = ("that is a shift LEFT (labels[:, 1:]): the decoder input at t must be the token BEFORE "
                    "label t, so shift right: start token first, then labels[:, :-1]")
        elif (got[:, 0] == start).all() and np.array_equal(got[:, 1:], np.where(labels[:, 1:] == IGNORE, pad,
                                                                               labels[:, 1:])):
            hint = ("you dropped the first label and kept the last: keep labels[:, :-1] (the last label is "
                    "never an input, nothing comes after it)")
        elif (got[:, 0] == pad).all() and np.array_equal(got[:, 1:], expected[:, 1:]):
            hint = "position 0 holds pad_token_id: the first decoder input is decoder_start_token_id"
        elif not (got[:, 0] == start).all():
            hint = "the first decoder input of every row is decoder_start_token_id, whatever the labels"
        else:
            hint = ("decoder_input_ids[:, 0] = decoder_start_token_id, decoder_input_ids[:, 1:] = labels[:, :-1], "
                    "then -100 -> pad_token_id")
        row = int(np.argmax((got != expected).any(axis=1)))
        raise _exercise_error(
            name, f"row {row}: yours {got[row].tolist()}, expected {expected[row].tolist()} ({where})", hint,
        )
    print(f"{name}: all {n_cases} random batches match minibertgen.stack.shift_tokens_right")


# ---------------------------------------------------------------- the masked mean cross-entropy


def masked_cross_entropy(logits, labels):
    """The solution, as EncoderDecoderModel computes its loss: logits (B, T, V), labels (B, T) -> scalar.

    Mean over every counted label of the batch (label != -100) of -log softmax(logits[b, t])[label],
    with no shift: logits[b, t] is scored against labels[b, t].
    """
    from ..ops import cross_entropy_forward

    V = logits.shape[-1]
    return cross_entropy_forward(logits.reshape(-1, V), labels.reshape(-1))[0]  # (B*T, V) -> scalar


def _nll(logits, labels):
    """Per-position -log p(label) (B, T), nan where ignored (for the checker's diagnoses)."""
    from ..ops import log_softmax

    logp = log_softmax(logits)
    safe = np.where(labels == IGNORE, 0, labels)
    picked = -np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    return np.where(labels == IGNORE, np.nan, picked)


def check_masked_loss(fn, *, n_cases: int = 20, seed: int = 0) -> None:
    """Grade ``fn(logits, labels) -> loss`` against ``masked_cross_entropy`` (EncoderDecoderModel's loss).

    logits: (B, T, V) floats; labels: (B, T) ints with -100 where ignored -> a scalar. The last
    cases have logits of size ~1000, where exp overflows unless the maximum is subtracted first.
    """
    name = "check_masked_loss"
    rng = np.random.default_rng(seed)
    for case in range(n_cases):
        B, T, V = int(rng.integers(2, 5)), int(rng.integers(3, 8)), int(rng.integers(3, 12))
        huge = case >= n_cases - 3  # the last cases: logits whose exp overflows float64
        scale = 1000.0 if huge else 2.0
        logits = rng.normal(size=(B, T, V)) * scale
        labels = _padded_labels(rng, B, T, 0, V)
        given_logits, given_labels = logits.copy(), labels.copy()
        where = f"logits {logits.shape} (scale {scale:g}), labels {labels.tolist()}"
        with np.errstate(all="ignore"):  # a naive exp may overflow: that is graded below, not warned
            got = _host(_call_learner(name, fn, (given_logits, given_labels), where), name, "the loss")
        if not (np.array_equal(given_logits, logits) and np.array_equal(given_labels, labels)):
            raise _exercise_error(name, f"your function wrote into logits or labels ({where})",
                                  "compute new arrays; the backward still needs the inputs")
        if got.size != 1:
            raise _exercise_error(name, f"the loss has shape {got.shape}, expected a scalar ({where})",
                                  "average the counted per-position losses into ONE number")
        value, expected = float(got.reshape(())), float(masked_cross_entropy(logits, labels))
        # float64 sums of at most 28 terms of size <= ~1e4: rounding is ~1e-12 relative; mistakes are O(0.1)
        if np.isclose(value, expected, rtol=1e-9, atol=1e-12):
            continue
        nll = _nll(logits, labels)  # (B, T), nan where ignored
        valid = labels != IGNORE
        zeroed = np.where(valid, nll, 0.0)
        with np.errstate(all="ignore"):
            candidates = {
                "all": zeroed.sum() / labels.size,
                "per_sequence": np.mean(zeroed.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)),
                "sum": zeroed.sum(),
            }
            shifted = _nll(logits[:, :-1], labels[:, 1:])
            candidates["off_by_one"] = np.nanmean(shifted) if (labels[:, 1:] != IGNORE).any() else np.nan
            shifted_back = _nll(logits[:, 1:], labels[:, :-1])
            candidates["off_by_one_back"] = np.nanmean(shifted_back) if (labels[:, :-1] != IGNORE).any() else np.nan
        close = {k for k, v in candidates.items() if np.isclose(value, v, rtol=1e-9, atol=1e-12)}
        if not np.isfinite(value) and huge:
            hint = ("with logits near 1000, exp overflows to inf: subtract each row's maximum before exp "
                    "(log-sum-exp: log sum exp z = m + log sum exp(z - m))")
        elif not np.isfinite(value):
            hint = "the loss is not finite: are ignored labels (-100) used as indices or inside a log?"
        elif "all" in close:
            hint = ("you divided by every position (B*T), ignored ones included: divide by the number of "
                    "labels that are not -100")
        elif "per_sequence" in close:
            hint = ("that is the mean of each sequence's mean: the reference averages over all counted tokens of "
                    "the batch at once, so a long sequence weighs more than a short one")
        elif "sum" in close:
            hint = "that is the sum: divide by the number of counted labels"
        elif "off_by_one" in close or "off_by_one_back" in close:
            hint = ("you shifted the labels against the logits. In EncoderDecoderModel the decoder inputs are "
                    "already shifted, so logits[:, t] is scored against labels[:, t] (no shift)")
        else:
            hint = ("loss = -(1/n) sum over (b, t) with labels[b, t] != -100 of log_softmax(logits[b, t])"
                    "[labels[b, t]], n the number of such (b, t)")
        raise _exercise_error(name, f"loss {value:.10g}, expected {expected:.10g} ({where})", hint)
    print(f"{name}: all {n_cases} random batches match EncoderDecoderModel's loss (ops.cross_entropy_forward)")
