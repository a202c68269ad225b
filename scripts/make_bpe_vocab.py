"""Write tests/fixtures/bpe/: a small byte-level BPE vocabulary (vocab.json, merges.txt), trained here.

    python scripts/make_bpe_vocab.py [OUT_DIR]

Byte-level BPE training, from scratch and deterministic (no randomness, ties broken by the pair's
text), on the short English CORPUS below:

1. cut the corpus into words with the tokenizer's own pre-tokenizer and write each word's bytes as
   BPE characters (tokenization_roberta.PRETOKENIZE, byte_encode): " cat" -> "Ġcat";
2. start every word as single characters; the vocabulary starts as the 256 byte characters;
3. count every adjacent pair of symbols over all words (each word weighted by how often it
   occurs), take the most frequent pair, record it as the next merge and join it in every word;
   the joined symbol is a new vocabulary entry. Repeat until the vocabulary has VOCAB_SIZE entries.

Ids follow RoBERTa's order: <s>=0, <pad>=1, </s>=2, <unk>=3, then the 256 bytes (in byte order),
then the merged tokens in the order they were learned, and <mask> last (VOCAB_SIZE - 1).
tests/test_roberta_tokenizer.py checks that running this again gives the committed files.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from minibertgen.tokenization_roberta import BYTE_TO_CHAR, MERGES_HEADER, PRETOKENIZE, byte_encode  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "bpe"
VOCAB_SIZE = 1000
SPECIALS_FIRST = ("<s>", "<pad>", "</s>", "<unk>")
MASK = "<mask>"

# Written for this fixture: everyday English with contractions, numbers, punctuation, capitals,
# a few accented words and line breaks, so the merges cover what the tests tokenize.
CORPUS = """\
The weather was cold this morning, so I wore a warm coat and walked to the station. The train was late
again; it's the third time this week. When it finally arrived, every seat was taken, and I stood by the
door reading the news on my phone. The lower deck was quieter than the upper one.

My sister doesn't like trains. She'd rather ride her bicycle, even in the rain. She says it's faster, and
she's usually right: the ride takes her twenty minutes, while the train takes thirty-five. We've argued
about this for years, and I'm sure we'll argue about it for many more.

At the bakery on the corner they sell bread, cakes and coffee. A small coffee costs 2.50 and a large one
costs 3.20. On Saturdays there is a long line outside the door before eight o'clock. The baker, a tall man
named Peter, starts work at four in the morning. He says the secret of good bread is patience.

A tokenizer turns text into numbers. It cuts the text into pieces that are in a fixed vocabulary, and
gives each piece its number. A byte-level tokenizer works on bytes, so it never meets a character it does
not know: an emoji, a Chinese character or a letter with an accent are all just a few bytes. The newest
tokenizers learn their pieces from data, by merging the pairs of symbols that occur most often.

In 1998 the city built a new bridge over the river. It is 320 metres long and 24 metres wide. Before the
bridge, people crossed the river by boat; the old ferry still runs in summer for the tourists. The widest
part of the river is near the harbour, where the water is deep enough for large ships.

"Where are you going?" asked the old woman. "To the market," said the boy. "I need apples, onions, and a
loaf of bread." She smiled and gave him a coin. "Then buy yourself something sweet, too." He thanked her
and ran down the street, past the church and the school, until he reached the square.

The café near our house serves crêpes and a very good soup. The owner, Zoë, moved here from Montréal ten
years ago. She speaks French and English, and she is learning German. Her menu changes every season: in
winter there is a thick soup with beans, in summer a cold one with tomatoes and cucumbers.

Numbers are everywhere: 7 days in a week, 12 months in a year, 365 days in most years and 366 in a leap
year. A kilometre is 1000 metres, and a mile is about 1.609 kilometres. The answer to the question was 42,
but nobody remembered the question. Call me at 555-0199 after 6 p.m. on Monday, June 3rd.

Learning to cook takes time. First you learn to boil an egg, then to make rice, then a simple sauce. You'll
burn a few things; everybody does. Read the recipe twice, prepare everything before you start, and taste
as you go. The best cooks I know are not the fastest, but they are the most careful.

The children played in the garden all afternoon. They built a tower of wooden blocks, knocked it over,
and built it again, higher each time. When the sun went down their mother called them in for dinner:
soup, bread, cheese and apples. Afterwards they were too tired to argue about going to bed.

Scientists measure the temperature of the ocean with thousands of floating instruments. Each one sinks to
a depth of 2000 metres, drifts for ten days, and rises slowly to the surface, recording the temperature and
the salt of the water on the way up. Then it sends its data to a satellite and sinks again.

I can't remember where I put my keys. They weren't on the table, they weren't in my coat, and they
weren't in the car. In the end I found them in the fridge, next to the milk. Don't ask me how they got
there; I really don't know. My brother says I'd lose my head if it weren't attached.
"""


def train(corpus: str, vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab {token: id}, merges in learned order) of byte-level BPE on ``corpus`` (see the module doc)."""
    words = Counter(byte_encode(w) for w in PRETOKENIZE.findall(corpus))
    # Each distinct word as a list of symbols, with its count; sorted, so the order never depends on hashing.
    symbols = [(list(word), count) for word, count in sorted(words.items())]
    vocab = {token: i for i, token in enumerate(SPECIALS_FIRST)}
    for b in range(256):
        vocab[BYTE_TO_CHAR[b]] = len(vocab)
    merges = []
    while len(vocab) < vocab_size - 1:  # the last id is kept for <mask>
        pairs: Counter = Counter()
        for parts, count in symbols:
            for pair in zip(parts, parts[1:]):
                pairs[pair] += count
        if not pairs:
            raise ValueError(f"the corpus is too small: every word is one token after {len(merges)} merges")
        # The most frequent pair; among equals, the one whose text sorts first (deterministic).
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        joined = best[0] + best[1]
        for parts, _ in symbols:
            i = 0
            while i < len(parts) - 1:
                if parts[i] == best[0] and parts[i + 1] == best[1]:
                    parts[i : i + 2] = [joined]  # left to right, no overlap: as the tokenizer applies it
                i += 1
        if joined not in vocab:  # (two different merges can make the same string)
            vocab[joined] = len(vocab)
    vocab[MASK] = len(vocab)
    return vocab, merges


def write(out_dir: Path) -> tuple[Path, Path]:
    """Train and write ``out_dir/vocab.json`` and ``out_dir/merges.txt``; returns the two paths."""
    vocab, merges = train(CORPUS, VOCAB_SIZE)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = out_dir / "vocab.json", out_dir / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    merges_path.write_text(MERGES_HEADER + "\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return vocab_path, merges_path


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0]) if argv else OUT
    vocab_path, merges_path = write(out_dir)
    print(f"wrote {vocab_path} and {merges_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
