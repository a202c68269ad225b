"""Notebook 01's checker: the package's WordPiece passes, each classic mistake fails with a hint naming it."""

from __future__ import annotations

import pytest

from minibertgen.exercises import check_wordpiece
from minibertgen.tokenization import wordpiece_tokenize


def _greedy(word, vocab, unk, longest=True, prefix="##", whole_word_unk=True):
    pieces, start = [], 0
    while start < len(word):
        ends = range(len(word), start, -1) if longest else range(start + 1, len(word) + 1)
        for end in ends:
            piece = word[start:end] if start == 0 else prefix + word[start:end]
            if piece in vocab:
                break
        else:
            if whole_word_unk:
                return [unk]
            pieces.append(unk)
            start += 1
            continue
        pieces.append(piece)
        start = end
    return pieces


def shortest_match_first(word, vocab, unk, max_chars):
    return [unk] if len(word) > max_chars else _greedy(word, vocab, unk, longest=False)


def without_continuation_prefix(word, vocab, unk, max_chars):
    return [unk] if len(word) > max_chars else _greedy(word, vocab, unk, prefix="")


def unk_only_for_the_missing_piece(word, vocab, unk, max_chars):
    return [unk] if len(word) > max_chars else _greedy(word, vocab, unk, whole_word_unk=False)


def ignoring_max_chars(word, vocab, unk, max_chars):
    return wordpiece_tokenize(word, vocab, unk)


def returning_a_tuple(word, vocab, unk, max_chars):
    return tuple(wordpiece_tokenize(word, vocab, unk, max_chars))


def test_the_package_passes(capsys):
    check_wordpiece(wordpiece_tokenize)
    assert capsys.readouterr().out.startswith("check_wordpiece: all ")


@pytest.mark.parametrize(("wrong", "hint"), [
    (shortest_match_first, "LONGEST candidate first"),
    (without_continuation_prefix, "with the '##' prefix"),
    (unk_only_for_the_missing_piece, r"the whole word becomes \[unk_token\] alone"),
    (ignoring_max_chars, "more than max_input_chars_per_word"),
    (returning_a_tuple, "collect the pieces in a list"),
])  # fmt: skip
def test_a_known_wrong_answer_fails_with_a_hint_naming_the_mistake(wrong, hint):
    with pytest.raises(AssertionError, match=rf"^check_wordpiece: (.|\n)*\nHint: .*{hint}"):
        check_wordpiece(wrong)


def test_a_crash_says_on_which_word():
    with pytest.raises(AssertionError, match=r"your function raised ZeroDivisionError.*word 'unaffable'"):
        check_wordpiece(lambda word, vocab, unk, max_chars: 1 / 0)


def test_a_stub_passes_through():
    def stub(word, vocab, unk, max_chars):
        raise NotImplementedError("your code here")

    with pytest.raises(NotImplementedError):
        check_wordpiece(stub)
