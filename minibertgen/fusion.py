"""A tiny sentence-fusion task for the demo: two short sentences in, one fused sentence out.

*Sentence fusion* is the task of the DiscoFuse data set (Geva et al., 2019) that Rothe et al. use to
show the value of warm-starting a bert2bert from BERT: the model reads two sentences and writes one
that says the same thing, joined by a *discourse connective* ("but", "because", "so", ...) and
with a repeated subject turned into a *pronoun*:

    source: "Anna was hungry. Anna ate an apple."
    target: "Anna was hungry, so she ate an apple."

    source: "Tom went to the museum. It was closed."
    target: "Tom went to the museum, but it was closed."

DiscoFuse itself is millions of sentences mined from Wikipedia; this module *generates* pairs of
the same shape from small word lists, so the demo needs no download and the task is small enough
to learn in minutes on a laptop CPU. Everything is deterministic given a seed.

How a pair is made (read ``_draw`` top to bottom):

1. pick a *relation* (cause, result, contrast, concession, addition, sequence). Each relation has a
   few sentence templates, and each template belongs to exactly one relation, so the connective
   can be read off the source: "was hungry. ... ate" means "so", "ate ... was hungry" means
   "because". The model has to learn which connective each kind of pair takes;
2. pick a subject (a name, a group of people, or an animal) and fill the template's slots (places,
   objects with an adjective, foods, feelings, verbs); "was" becomes "were" for plural subjects;
3. the second sentence either repeats the first one's subject (then the fused sentence uses the
   pronoun: he, she, it, they), has another subject (kept as is), or has its own fixed subject
   ("It was raining.");
4. fuse (``fuse``): the first sentence without its full stop, the connective (after a comma for
   "and", "but", "so"), the second sentence with its first word lower-cased unless it is a name.

The public functions:

- ``make_examples(n, seed)``: n ``FusionExample``s (the parts, for inspection and tests);
- ``make_pairs(n, seed)``: n (source, target) string pairs, every source different;
- ``train_and_heldout(n_train, n_heldout, seed)``: two lists of pairs that share no source.

Every word the generator can write is a whole token of the uncased BERT WordPiece vocabulary
(``vocabulary()`` lists them; tests/test_fusion.py checks it on the MiniLM vocab), so no [UNK]
appears and sequences stay short (about 10-25 tokens).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# ================================================================ word lists

FEMALE_NAMES = ("Anna", "Maria", "Sarah", "Emma", "Julia", "Lucy", "Alice", "Kate", "Laura", "Nina", "Sophie", "Lily")
MALE_NAMES = ("Tom", "John", "Peter", "David", "Paul", "Mark", "James", "Sam", "Leo", "Max", "Ben", "Jack")
GROUPS = ("the children", "the students", "my parents", "the workers", "our neighbors", "his friends")
ANIMALS = ("the dog", "the cat", "the horse")

PLACES = ("the park", "the market", "the library", "the station", "the beach", "the museum", "the bakery",
          "the office", "the garden", "the hospital")  # fmt: skip
OBJECTS = ("lamp", "book", "key", "umbrella", "bicycle", "ticket", "camera", "jacket", "letter", "wallet",
           "phone", "map", "basket", "guitar")  # fmt: skip
OBJECT_ADJECTIVES = ("old", "new", "red", "blue", "small", "big", "heavy", "cheap", "expensive")
FOODS = ("an apple", "some bread", "a sandwich", "some soup", "a cake")
FEELINGS = ("happy", "sad", "angry", "nervous", "bored", "sleepy")
VERBS = ("cleaned", "painted", "repaired", "sold", "found", "borrowed", "carried", "washed")

CONNECTIVES = ("and", "but", "so", "because", "although", "before")
COMMA_BEFORE = frozenset({"and", "but", "so"})  # "A, but B." / "A because B."


# ================================================================ templates

# A template is (first predicate, second part, animals allowed). The first predicate follows the
# first sentence's subject. The second part is either a predicate ("ate {food}": its subject is
# the first one repeated, or another one) or, when it starts with "=", a whole clause with its own
# subject ("=it was raining"). Slots: {be} (was / were), {place}, {obj} ("the red lamp"),
# {a_obj} ("a red lamp", "an old map"), {food}, {feeling}, {verb}.
TEMPLATES = {
    "because": [  # the second sentence is the reason for the first
        ("stayed at home", "{be} sick", True),
        ("went to {place}", "needed {a_obj}", False),
        ("went to bed early", "{be} tired", True),
        ("ate {food}", "{be} hungry", True),
        ("missed the bus", "woke up late", False),
        ("stayed inside", "=it was raining", True),
        ("could not open the door", "had lost the key", False),
    ],
    "so": [  # the second sentence follows from the first
        ("{be} hungry", "ate {food}", True),
        ("{be} tired", "went to bed early", True),
        ("lost {obj}", "bought a new one", False),
        ("{be} bored", "read a book", False),
        ("{be} cold", "closed the window", False),
        ("found {a_obj} in {place}", "took it home", False),
    ],
    "but": [  # a contrast
        ("looked for {obj}", "did not find it", True),
        ("{be} tired", "kept working", False),
        ("went to {place}", "=it was closed", False),
        ("wanted to buy {a_obj}", "did not have enough money", False),
        ("{be} {feeling}", "did not say anything", False),
    ],
    "although": [  # the first holds in spite of the second
        ("went for a walk", "=it was raining", True),
        ("finished the work", "{be} tired", False),
        ("smiled", "{be} sad", False),
        ("went to work", "{be} sick", False),
    ],
    "and": [  # one more fact
        ("cleaned the kitchen", "washed the car", False),
        ("{verb} {obj}", "went to {place}", False),
        ("visited {place}", "bought {a_obj}", False),
        ("played the guitar", "sang a song", False),
        ("{be} {feeling}", "went to {place}", True),
    ],
    "before": [  # first this, then that
        ("washed the dishes", "went to bed", False),
        ("{verb} {obj}", "went home", False),
        ("closed the window", "left the house", False),
        ("read the letter", "called a friend", False),
    ],
}


# ================================================================ the pieces


@dataclass(frozen=True)
class Subject:
    """Who a sentence is about, and how to refer back to it."""

    text: str  # as written mid-sentence: "Anna", "the children", "the dog"
    pronoun: str  # he, she, they, it
    plural: bool


SUBJECTS = (
    [Subject(n, "she", False) for n in FEMALE_NAMES]
    + [Subject(n, "he", False) for n in MALE_NAMES]
    + [Subject(g, "they", True) for g in GROUPS]
)
ANIMAL_SUBJECTS = [Subject(a, "it", False) for a in ANIMALS]


@dataclass(frozen=True)
class FusionExample:
    """One pair with its parts: ``source`` is ``first + " " + second``, ``target`` the fusion."""

    first: str  # "Anna was hungry."
    second: str  # "Anna ate an apple."
    target: str  # "Anna was hungry, so she ate an apple."
    connective: str  # "so"
    pronoun: str | None  # "she" when the second sentence's repeated subject became a pronoun

    @property
    def source(self) -> str:
        return f"{self.first} {self.second}"


def capitalize(text: str) -> str:
    """First letter upper-case, the rest untouched ("the dog ran" -> "The dog ran")."""
    return text[:1].upper() + text[1:]


NAMES = frozenset(FEMALE_NAMES + MALE_NAMES)


def lower_first(text: str) -> str:
    """A second sentence's start inside the fused one: "The dog ran" -> "the dog ran"; a name stays."""
    first_word = text.split(" ", 1)[0]
    return text if first_word in NAMES else text[:1].lower() + text[1:]


def fuse(first: str, second: str, connective: str, *, repeated_subject: str | None = None,
         pronoun: str | None = None) -> str:  # fmt: skip
    """The fusion rule: join two sentences with a connective; a repeated subject becomes a pronoun.

    first, second: sentences ending in "." ("Anna was hungry.", "Anna ate an apple.").
    repeated_subject: the subject both sentences share, as written mid-sentence ("Anna",
    "the dog"), which ``pronoun`` replaces at the start of the second sentence; None if they differ.
    Returns e.g. "Anna was hungry, so she ate an apple."
    """
    if connective not in CONNECTIVES:
        raise ValueError(f"unknown connective {connective!r}; expected one of {CONNECTIVES}")
    head, tail = first.removesuffix("."), second.removesuffix(".")
    if repeated_subject is not None:
        start = capitalize(repeated_subject) + " "
        if pronoun is None or not tail.startswith(start):
            raise ValueError(f"expected a pronoun and a second sentence starting with {start!r}, got {pronoun!r}, {second!r}")
        tail = f"{pronoun} {tail[len(start):]}"
    else:
        tail = lower_first(tail)
    joint = f", {connective} " if connective in COMMA_BEFORE else f" {connective} "
    return f"{head}{joint}{tail}."


# ================================================================ drawing


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _fill(template: str, subject: Subject, rng: random.Random) -> str:
    """Replace each slot of a template with a word drawn from its list."""
    adjective, noun = rng.choice(OBJECT_ADJECTIVES), rng.choice(OBJECTS)
    values = {
        "be": "were" if subject.plural else "was",
        "place": rng.choice(PLACES),
        "obj": f"the {adjective} {noun}",
        "a_obj": f"{_article(adjective)} {adjective} {noun}",
        "food": rng.choice(FOODS),
        "feeling": rng.choice(FEELINGS),
        "verb": rng.choice(VERBS),
    }
    return template.format(**values)


# how often the second sentence repeats the first one's subject (then: a pronoun)
SAME_SUBJECT_PROBABILITY = 0.6


def _draw(rng: random.Random) -> FusionExample:
    """One random example (see the module docstring for the steps)."""
    connective = rng.choice(CONNECTIVES)  # 1. the relation, named by its connective
    first_pred, second_part, animals_ok = rng.choice(TEMPLATES[connective])
    pool = SUBJECTS + ANIMAL_SUBJECTS if animals_ok else SUBJECTS
    subject = rng.choice(pool)  # 2. the subject and the slots
    first = capitalize(f"{subject.text} {_fill(first_pred, subject, rng)}.")
    if second_part.startswith("="):  # 3. a clause with its own subject ("it was raining")
        second = capitalize(second_part[1:]) + "."
        return FusionExample(first, second, fuse(first, second, connective), connective, None)
    if rng.random() < SAME_SUBJECT_PROBABILITY:
        other = subject
    else:
        other = rng.choice([s for s in pool if s.text != subject.text])
    second = capitalize(f"{other.text} {_fill(second_part, other, rng)}.")
    pronoun = subject.pronoun if other == subject else None
    target = fuse(first, second, connective, repeated_subject=subject.text if pronoun else None, pronoun=pronoun)  # 4.
    return FusionExample(first, second, target, connective, pronoun)


def make_examples(n: int, seed: int = 0) -> list[FusionExample]:
    """``n`` examples with pairwise different sources, the same ones for the same seed.

    Drawn one after another, skipping a source already drawn, so ``make_examples(n, seed)`` is the
    first n of ``make_examples(n + m, seed)``. Raises ValueError if ``n`` is more than the
    generator can make different ones (tens of thousands).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    rng = random.Random(seed)
    examples, seen = [], set()
    attempts, max_attempts = 0, 100 * n + 1000
    while len(examples) < n:
        attempts += 1
        if attempts > max_attempts:
            raise ValueError(f"could only make {len(examples)} different examples, {n} asked for")
        example = _draw(rng)
        if example.source not in seen:
            seen.add(example.source)
            examples.append(example)
    return examples


def make_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (source, target) pairs: ("Anna was hungry. Anna ate an apple.",
    "Anna was hungry, so she ate an apple."), every source different, deterministic given ``seed``."""
    return [(e.source, e.target) for e in make_examples(n, seed)]


def train_and_heldout(n_train: int, n_heldout: int, seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train pairs, held-out pairs) with no held-out source among the training sources.

    The held-out pairs are drawn first, so they stay the same when ``n_train`` changes. They use the
    same templates and word lists as training, in new combinations: the test is whether the model
    learned the rules, not whether it remembers the sentences.
    """
    if isinstance(n_heldout, bool) or not isinstance(n_heldout, int) or n_heldout < 0:
        raise ValueError(f"n_heldout must be an integer >= 0, got {n_heldout!r}")
    if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 0:
        raise ValueError(f"n_train must be an integer >= 0, got {n_train!r}")
    pairs = make_pairs(n_heldout + n_train, seed)
    return pairs[n_heldout:], pairs[:n_heldout]


def vocabulary() -> set[str]:
    """Every lower-cased word and punctuation mark the generator can write (for vocabulary checks)."""
    texts = [*FEMALE_NAMES, *MALE_NAMES, *GROUPS, *ANIMALS, *PLACES, *OBJECTS, *OBJECT_ADJECTIVES, *FOODS,
             *FEELINGS, *VERBS, *CONNECTIVES, "he she it they was were a an the , ."]  # fmt: skip
    for templates in TEMPLATES.values():
        for first, second, _ in templates:
            texts += [first, second.lstrip("=")]
    words = set()
    for text in texts:
        words.update(re.findall(r"[a-z]+|[.,]", re.sub(r"\{[a-z_]+\}", " ", text.lower())))
    return words
