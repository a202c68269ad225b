"""Exercise on tokenization: WordPiece's greedy longest-match-first cut of one word (notebook 01)."""

from __future__ import annotations

import numpy as np

from ._grading import _call_learner, _exercise_error

# Hand-made cases, each one a trap for one classic mistake (the random cases below add breadth).
_FIXED_CASES = [
    # longest first: "un" + "##aff" + "##able", not "u" + "##n" + ...
    ("unaffable", {"u", "un", "##n", "##a", "##f", "##aff", "##able", "##b", "##l", "##e", "##ab"}, 100),
    # a continuation is looked up with "##": "ab" is in the vocabulary, "##ab" is not
    ("abab", {"ab", "a", "##b"}, 100),
    # "##" only after the first piece: the word start is looked up bare
    ("bab", {"##b", "##a", "b", "##ab"}, 100),
    # no piece fits at position 3 ("x" and "##x" are missing): the WHOLE word is unknown
    ("playx", {"play", "##x", "p", "##l", "##a", "##y"} - {"##x"}, 100),
    # too long: longer than max_input_chars_per_word, unknown without looking anything up
    ("abababab", {"ab", "##ab", "a", "##a", "##b"}, 6),
    # exactly max_input_chars_per_word characters is still allowed
    ("ababab", {"ab", "##ab"}, 6),
]


def _random_case(rng):
    alphabet = "abcd"
    word = "".join(rng.choice(list(alphabet), size=int(rng.integers(1, 9))))
    vocab = set()
    for _ in range(int(rng.integers(3, 14))):  # random pieces, some word-initial, some "##" continuations
        piece = "".join(rng.choice(list(alphabet), size=int(rng.integers(1, 4))))
        vocab.add(piece if rng.random() < 0.4 else "##" + piece)
    if rng.random() < 0.7:  # usually make every single character available, so most words do have a cut
        vocab |= set(alphabet) | {"##" + c for c in alphabet}
    max_chars = int(rng.integers(3, 10)) if rng.random() < 0.3 else 100
    return word, vocab, max_chars


def _greedy(word, vocab, unk, max_chars, *, longest=True, prefix="##", whole_word_unk=True, limit=True):
    """WordPiece with one of its rules switched off: what each classic mistake computes."""
    if limit and len(word) > max_chars:
        return [unk]
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


def _diagnose(got, word, vocab, unk, max_chars):
    mistakes = [
        (dict(limit=False), f"the word has {len(word)} characters, more than max_input_chars_per_word = {max_chars}: "
                            "it is [unk_token] as a whole, before any lookup"),
        (dict(longest=False), "at each start try the LONGEST candidate first: for end in range(len(word), start, -1)"),
        (dict(prefix=""), "every piece after the first is looked up (and returned) with the '##' prefix: "
                          "'##' + word[start:end]"),
        (dict(prefix="", longest=False), "two mistakes: try the longest candidate first, and look every piece after "
                                         "the first up with the '##' prefix"),
        (dict(whole_word_unk=False), "when no piece fits at some position, the whole word becomes [unk_token] alone; "
                                     "do not keep the pieces found before it"),
    ]
    for rules, why in mistakes:
        if got == _greedy(word, vocab, unk, max_chars, **rules):
            return why
    if got and got[0].startswith("##"):
        return "the first piece of a word is looked up without '##'; only the pieces that continue it have one"
    if unk not in got and "".join(p[2:] if p.startswith("##") else p for p in got) != word:
        return "the pieces, with their '##' removed, must spell the word exactly, left to right"
    return ("from start = 0: take the longest word[start:end] (with '##' if start > 0) that is in the vocabulary, "
            "then start = end; if none is, return [unk_token]")


def check_wordpiece(fn, *, n_cases: int = 60, seed: int = 0) -> None:
    """Grade ``fn(word, vocab, unk_token, max_input_chars_per_word) -> list[str]`` against
    ``tokenization.wordpiece_tokenize``.

    word: one lower-cased word without spaces or punctuation; vocab: a set (or dict) of pieces, where a
    piece that continues a word starts with "##". Greedy longest-match-first: from the left, take the
    longest prefix of what is left that is in the vocabulary ("##"-prefixed after the first piece). If
    nothing fits at some position, or the word is longer than ``max_input_chars_per_word``, the result
    is ``[unk_token]`` for the whole word.
    """
    from ..tokenization import wordpiece_tokenize

    name = "check_wordpiece"
    rng = np.random.default_rng(seed)
    cases = list(_FIXED_CASES) + [_random_case(rng) for _ in range(n_cases)]
    unk = "[UNK]"
    for word, vocab, max_chars in cases:
        where = f"word {word!r}, vocab {sorted(vocab)}, max_input_chars_per_word={max_chars}"
        given = set(vocab)
        got = _call_learner(name, fn, (word, given, unk, max_chars), where)
        if given != set(vocab):
            raise _exercise_error(name, f"your function changed the vocabulary it was given ({where})",
                                  "only look pieces up; never add or remove any")
        if not (isinstance(got, list) and all(isinstance(p, str) for p in got)):
            raise _exercise_error(name, f"return a list of strings, got {got!r} ({where})",
                                  "collect the pieces in a list: pieces.append(piece)")
        expected = wordpiece_tokenize(word, vocab, unk, max_chars)
        if got != expected:
            raise _exercise_error(name, f"you returned {got}, expected {expected} ({where})",
                                  _diagnose(got, word, vocab, unk, max_chars))
    print(f"{name}: all {len(cases)} words cut exactly as minibertgen.tokenization.wordpiece_tokenize")
