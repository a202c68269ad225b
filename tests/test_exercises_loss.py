"""The checkers of notebook 07 (teacher forcing and the loss): the package's solutions pass, a stub's
NotImplementedError passes through, and each plausible mistake fails with a hint that names it."""

from __future__ import annotations

import numpy as np
import pytest

from minibertgen import exercises
from minibertgen.stack import shift_tokens_right


def not_written(*args):
    raise NotImplementedError("your code here")


# ---------------------------------------------------------------- labels -> decoder_input_ids


def shift_keeping_minus_100(labels, pad, start):
    return np.concatenate([np.full((len(labels), 1), start), labels[:, :-1]], axis=1)


def shift_without_start_token(labels, pad, start):
    return np.where(labels == -100, pad, labels)  # the labels fed as they are: no shift at all


def shift_with_pad_first(labels, pad, start):
    shifted = np.concatenate([np.full((len(labels), 1), pad), labels[:, :-1]], axis=1)
    return np.where(shifted == -100, pad, shifted)


def shift_left(labels, pad, start):
    shifted = np.concatenate([labels[:, 1:], np.full((len(labels), 1), pad)], axis=1)
    return np.where(shifted == -100, pad, shifted)


def shift_dropping_the_first_label(labels, pad, start):
    shifted = np.concatenate([np.full((len(labels), 1), start), labels[:, 1:]], axis=1)
    return np.where(shifted == -100, pad, shifted)


def shift_swapping_pad_and_start(labels, pad, start):
    return shift_tokens_right(labels, start, pad)


def shift_in_place(labels, pad, start):
    labels[labels == -100] = pad
    return shift_tokens_right(labels, pad, start)


def test_shift_checker_passes_the_package_solution(capsys):
    exercises.check_shift_right(shift_tokens_right)
    assert capsys.readouterr().out.startswith("check_shift_right: all 20")


def test_shift_checker_lets_a_stub_say_not_implemented():
    with pytest.raises(NotImplementedError):
        exercises.check_shift_right(not_written)


@pytest.mark.parametrize(("wrong", "hint"), [
    (shift_keeping_minus_100, r"-100 is not a token id"),
    (shift_without_start_token, r"these are the labels themselves"),
    (shift_with_pad_first, r"position 0 holds pad_token_id"),
    (shift_left, r"shift LEFT"),
    (shift_dropping_the_first_label, r"dropped the first label and kept the last"),
    (shift_swapping_pad_and_start, r"first decoder input of every row is decoder_start_token_id"),
    (shift_in_place, r"build a new array"),
])  # fmt: skip
def test_shift_checker_names_the_mistake(wrong, hint):
    with pytest.raises(AssertionError, match=rf"^check_shift_right: (.|\n)*\nHint: .*{hint}"):
        exercises.check_shift_right(wrong)


# ---------------------------------------------------------------- the masked mean cross-entropy


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _picked(logits, labels):
    """-log p(label) per position, 0 where ignored; and the counted mask."""
    valid = labels != -100
    nll = -np.take_along_axis(_log_softmax(logits), np.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    return np.where(valid, nll, 0.0), valid


def loss_over_all_positions(logits, labels):
    nll, _ = _picked(logits, labels)
    return nll.mean()  # ignored positions count as zeros in the mean


def loss_per_sequence_mean(logits, labels):
    nll, valid = _picked(logits, labels)
    return (nll.sum(axis=1) / valid.sum(axis=1)).mean()


def loss_off_by_one(logits, labels):
    nll, valid = _picked(logits[:, :-1], labels[:, 1:])  # the causal-LM shift, wrong for EncoderDecoderModel
    return nll.sum() / valid.sum()


def loss_without_max_subtraction(logits, labels):
    valid = labels != -100
    logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))  # exp(1000) = inf
    nll = -np.take_along_axis(logp, np.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    return np.where(valid, nll, 0.0).sum() / valid.sum()


def loss_summed(logits, labels):
    nll, _ = _picked(logits, labels)
    return nll.sum()


def test_loss_checker_passes_the_package_solution(capsys):
    exercises.check_masked_loss(exercises.masked_cross_entropy)
    assert capsys.readouterr().out.startswith("check_masked_loss: all 20")


def test_the_solution_is_the_models_loss():
    """masked_cross_entropy is what EncoderDecoderModel(labels=...) returns, on a real forward."""
    from minibertgen.exercises._grading import _tiny_bert2bert

    model = _tiny_bert2bert(0, "absolute")
    labels = np.array([[5, 6, 7, 1], [8, 1, -100, -100]])
    out = model(np.array([[4, 5, 6], [7, 8, 0]]), np.array([[1, 1, 1], [1, 1, 0]]), labels=labels)
    np.testing.assert_allclose(float(exercises.masked_cross_entropy(out.logits, labels)), float(out.loss), rtol=1e-14)


def test_loss_checker_lets_a_stub_say_not_implemented():
    with pytest.raises(NotImplementedError):
        exercises.check_masked_loss(not_written)


@pytest.mark.parametrize(("wrong", "hint"), [
    (loss_over_all_positions, r"divided by every position"),
    (loss_per_sequence_mean, r"mean of each sequence's mean"),
    (loss_off_by_one, r"shifted the labels against the logits"),
    (loss_without_max_subtraction, r"exp overflows"),
    (loss_summed, r"that is the sum"),
])  # fmt: skip
def test_loss_checker_names_the_mistake(wrong, hint):
    with pytest.raises(AssertionError, match=rf"^check_masked_loss: (.|\n)*\nHint: .*{hint}"):
        exercises.check_masked_loss(wrong)
