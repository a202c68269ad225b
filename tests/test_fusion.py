"""The sentence-fusion generator (minibertgen/fusion.py): deterministic, split-safe, rule-abiding,
and written in words the MiniLM WordPiece vocabulary has."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minibertgen import fusion
from minibertgen.fusion import (
    CONNECTIVES,
    FusionExample,
    fuse,
    make_examples,
    make_pairs,
    train_and_heldout,
    vocabulary,
)

from .conftest import require_path

PRONOUNS = {"he", "she", "it", "they"}


# ---------------------------------------------------------------- determinism


def test_same_seed_same_pairs():
    assert make_pairs(200, seed=7) == make_pairs(200, seed=7)


def test_different_seeds_differ():
    assert make_pairs(50, seed=0) != make_pairs(50, seed=1)


def test_a_shorter_run_is_a_prefix():
    assert make_pairs(40, seed=3) == make_pairs(120, seed=3)[:40]


def test_known_first_pair_is_stable():
    """A change to the word lists, templates or drawing order changes the data every demo trains on:
    this pins the first pair so such a change is made on purpose."""
    assert make_examples(1, seed=0)[0] == FusionExample(
        first="Our neighbors could not open the door.",
        second="My parents had lost the key.",
        target="Our neighbors could not open the door because my parents had lost the key.",
        connective="because",
        pronoun=None,
    )


def test_sources_are_distinct():
    pairs = make_pairs(2000, seed=0)
    assert len({s for s, _ in pairs}) == 2000


def test_a_source_always_gets_the_same_target():
    """The connective is a function of the source (each template belongs to one relation), so the
    task is learnable: the same source drawn under any seed has the same target."""
    target_of = {}
    for seed in range(4):
        for source, target in make_pairs(3000, seed=seed):
            assert target_of.setdefault(source, target) == target, source


# ---------------------------------------------------------------- splits


@given(n_train=st.integers(0, 300), n_heldout=st.integers(0, 100), seed=st.integers(0, 2**32 - 1))
def test_heldout_sources_never_in_train(n_train, n_heldout, seed):
    train, heldout = train_and_heldout(n_train, n_heldout, seed)
    assert len(train) == n_train and len(heldout) == n_heldout
    assert not {s for s, _ in train} & {s for s, _ in heldout}


def test_heldout_does_not_move_when_train_grows():
    _, small = train_and_heldout(100, 50, seed=5)
    _, large = train_and_heldout(1000, 50, seed=5)
    assert small == large


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_bad_sizes_raise(bad):
    with pytest.raises(ValueError):
        make_pairs(bad)
    with pytest.raises(ValueError):
        train_and_heldout(bad, 5)
    with pytest.raises(ValueError):
        train_and_heldout(5, bad)


def test_asking_for_more_than_exist_raises(monkeypatch):
    monkeypatch.setattr(fusion, "TEMPLATES", {c: [("smiled", "=it was raining", False)] for c in CONNECTIVES})
    with pytest.raises(ValueError, match="different examples"):
        make_pairs(10_000)


# ---------------------------------------------------------------- the fusion rules


def check_rules(e: FusionExample) -> None:
    """What every example must satisfy, read off the strings (not re-running the generator)."""
    assert e.connective in CONNECTIVES
    assert e.source == f"{e.first} {e.second}"
    assert e.first[0].isupper() and e.second[0].isupper()
    assert e.first.endswith(".") and e.second.endswith(".") and e.target.endswith(".")
    assert e.target.count(".") == 1, "one fused sentence"
    head = e.first[:-1]
    joint = f", {e.connective} " if e.connective in ("and", "but", "so") else f" {e.connective} "
    assert e.target.startswith(head + joint), (e.target, head + joint)
    tail = e.target[len(head + joint) : -1]
    second = e.second[:-1]
    if e.pronoun is not None:
        # the second sentence repeated the first one's subject; the pronoun stands in for it
        assert e.pronoun in PRONOUNS
        subject_words = len(second.split()) - len(tail.split()) + 1
        subject = " ".join(second.split()[:subject_words])
        assert head.startswith(subject + " "), (subject, head)
        assert tail == f"{e.pronoun} {' '.join(second.split()[subject_words:])}"
    else:
        # nothing replaced: the second sentence, its first word lower-cased unless a name
        first_word = second.split()[0]
        expected = second if first_word in fusion.NAMES else second[0].lower() + second[1:]
        assert tail == expected
        assert not (first_word in fusion.NAMES and head.startswith(first_word + " ")), "a repeated name must become a pronoun"


def test_rules_hold_on_many_examples():
    for e in make_examples(3000, seed=11):
        check_rules(e)


def test_every_connective_and_every_pronoun_occurs():
    examples = make_examples(3000, seed=0)
    assert {e.connective for e in examples} == set(CONNECTIVES)
    assert {e.pronoun for e in examples} - {None} == PRONOUNS
    assert any(e.pronoun is None for e in examples)


def test_pronoun_matches_the_subject():
    for e in make_examples(2000, seed=2):
        if e.pronoun is None:
            continue
        first_word = e.first.split()[0]
        if first_word in fusion.FEMALE_NAMES:
            assert e.pronoun == "she"
        elif first_word in fusion.MALE_NAMES:
            assert e.pronoun == "he"
        elif e.first.lower().startswith(tuple(fusion.ANIMALS)):
            assert e.pronoun == "it"
        else:
            assert e.pronoun == "they"


def test_plural_subjects_take_were():
    for e in make_examples(2000, seed=4):
        for sentence in (e.first, e.second):
            plural = sentence.lower().startswith(tuple(fusion.GROUPS))
            assert not (plural and " was " in f" {sentence} ".replace(".", " ")), sentence
            assert not (not plural and re.search(r"\bwere\b", sentence)), sentence


def test_fuse_examples():
    assert fuse("Anna was hungry.", "Anna ate an apple.", "so", repeated_subject="Anna", pronoun="she") == (
        "Anna was hungry, so she ate an apple."
    )
    assert fuse("Tom went to the museum.", "It was closed.", "but") == "Tom went to the museum, but it was closed."
    assert fuse("The dog slept.", "Tom left.", "because") == "The dog slept because Tom left."
    assert fuse("My parents smiled.", "My parents were sad.", "although", repeated_subject="my parents",
                pronoun="they") == "My parents smiled although they were sad."  # fmt: skip


def test_fuse_rejects_bad_input():
    with pytest.raises(ValueError, match="connective"):
        fuse("A b.", "C d.", "however")
    with pytest.raises(ValueError, match="starting with"):
        fuse("Anna ran.", "Tom ran.", "and", repeated_subject="Anna", pronoun="she")


# ---------------------------------------------------------------- vocabulary


def test_every_word_is_a_whole_minilm_token():
    """No [UNK], and no word split into pieces: the demo's sequences stay short."""
    from minibertgen import BertTokenizer
    from minibertgen.fetch import find_weights, weights_root

    folder = find_weights("minilm-l6") or weights_root() / "minilm-l6"
    require_path(folder / "vocab.txt", "the MiniLM checkpoint (minibertgen fetch minilm-l6)")
    tok = BertTokenizer.from_pretrained(folder)
    vocab = tok.get_vocab()
    missing = sorted(w for w in vocabulary() if w not in vocab)
    assert not missing, f"words not in the MiniLM vocabulary: {missing}"
    for source, target in make_pairs(500, seed=0):
        for text in (source, target):
            pieces = tok.tokenize(text)
            assert "[UNK]" not in pieces, text
            assert not any(p.startswith("##") for p in pieces), (text, pieces)

