# Text twin of notebooks/01_tokenization.ipynb (cells only; outputs in the notebook). Written by scripts/notebook_text.py.

# %% [markdown]
# # 01 · Tokenization: sentencepiece and WordPiece side by side
#
# **You will learn:** how text becomes the integers a model reads: BERT's basic tokenizer and greedy
# WordPiece, sentencepiece's unigram segmentation, special tokens, and padded batches with an attention mask.
#
# **Prerequisites:** none, this is the first chapter (Python and a little NumPy).
#
# **Time:** about 30 minutes.
#
# A model never sees text, only integers: row numbers of its embedding matrix. A **tokenizer** cuts
# text into *pieces* from a fixed vocabulary and returns their ids. BertGeneration checkpoints use a
# **sentencepiece** (unigram) vocabulary; BERT checkpoints, such as the MiniLM we warm-start from in
# notebook 09, use **WordPiece**. This notebook runs both on the same sentences.
#
# **Code path** (`minibertgen/tokenization.py`):
#
# | step | sentencepiece | WordPiece |
# |---|---|---|
# | load | `BertGenerationTokenizer(spm_file)` | `BertTokenizer.from_pretrained(folder)` → `load_vocab_txt` |
# | text → pieces | `_tokenize_chunk` (the `sentencepiece` library) | `basic_tokenize`, then `wordpiece_tokenize` per word |
# | specials around a sequence | none | `[CLS] A [SEP]` (`_add_special_tokens`) |
# | batch, truncate, pad | `_Tokenizer.__call__` (shared) | same |
# | ids → text | `decode` → `_tokens_to_string` | `decode` (joins, removes `" ##"`) |
#
# **Check:** live against transformers 4.57.6's tokenizers when it is installed, else against
# the ids published in the transformers test suite.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minibertgen as mbg
from minibertgen.fetch import require_weights
from minibertgen.tokenization import basic_tokenize, wordpiece_tokenize

# The sentencepiece model of the transformers test suite, shipped in notebooks/data/ (see notebooks/README.md)
SP_MODEL = Path("data") / "test_sentencepiece.model"  # relative to this notebook's folder, Jupyter's cwd
# The real MiniLM checkpoint folder (config, weights, vocab.txt). Missing, this stops with the command to run:
# `minibertgen fetch minilm-l6` (once, ~84 MB).
MINILM = require_weights("minilm-l6")

sp_tok = mbg.BertGenerationTokenizer(SP_MODEL)
wp_tok = mbg.BertTokenizer.from_pretrained(MINILM)
for name, tok in [("sentencepiece", sp_tok), ("WordPiece", wp_tok)]:
    print(f"{name:13s}: {len(tok):6d} ids, specials {dict(zip(tok.all_special_tokens, tok.all_special_ids))}")

# %% [markdown]
# The sentencepiece file is a *tiny* test vocabulary (1,000 pieces), so it splits words into many
# pieces; MiniLM's WordPiece vocabulary has 30,522. Its five special tokens are not all in the
# sentencepiece model, so `<::::>` and `<pad>` are appended after the last piece (ids 1000, 1001).
#
# ## Two ways to cut a word
#
# **WordPiece** is greedy. BERT's *basic tokenizer* first cleans the text, lower-cases it (for an
# uncased vocabulary), strips accents and splits off punctuation. Then each word is cut from the
# left, always taking the **longest** prefix in the vocabulary; a piece that continues a word is
# looked up with a `##` prefix. If some position has no match, the whole word becomes `[UNK]`.
#
# **Sentencepiece (unigram)** scores every possible segmentation $x = (x_1, \dots, x_m)$ of the text
# with a unigram language model and keeps the most probable one:
#
# $$\hat{x} = \arg\max_{x \in S(\text{text})} \sum_{i=1}^{m} \log p(x_i),$$
#
# found with the Viterbi algorithm. Spaces are not separators but part of the pieces: `▁` (U+2581)
# marks the start of a word, so decoding is just "join the pieces and turn `▁` back into spaces".
#
# **Predict, then run:** the next cell cuts `unaffable` with MiniLM's WordPiece vocabulary. Into which
# pieces, and how many? And does the tiny sentencepiece vocabulary need more pieces or fewer?

# %%
word = "unaffable"
vocab = wp_tok.vocab
print("basic tokenizer:", basic_tokenize("Unaffable, isn't it?"))
pieces = wordpiece_tokenize(word, vocab)  # greedy longest-match-first
# Where each piece starts: every candidate the vocabulary has there. WordPiece took the longest one.
start = 0
for piece in pieces:
    prefix = "" if start == 0 else "##"  # a piece that continues a word is stored with "##"
    found = [prefix + word[start:end] for end in range(start + 1, len(word) + 1) if prefix + word[start:end] in vocab]
    print(f"  start {start}: candidates in the vocabulary {found} -> takes {piece!r}")
    start += len(piece) - len(prefix)
print("wordpiece_tokenize:", pieces)
print("sentencepiece     :", sp_tok.tokenize(word))

# %%
sentences = [
    "This is a test",
    "I was born in 92000, and this is falsé.",
    "Unaffable transformers tokenize text!",
    "The quick brown fox jumps over the lazy dog.",
]
for s in sentences:
    print(s)
    print("   sentencepiece:", " ".join(sp_tok.tokenize(s)))
    print("   WordPiece    :", " ".join(wp_tok.tokenize(s)))

# %% [markdown]
# Differences to notice:
#
# * WordPiece lower-cases and strips accents (`falsé` → `false`); sentencepiece keeps case. A
#   character that this small sentencepiece vocabulary lacks (`9`, `é`) stays a piece of its own but
#   gets the `<unk>` id 0, so it cannot come back when decoding.
# * WordPiece splits `,` `.` `!` off as words of their own; sentencepiece glues them to pieces.
# * `encode` adds BERT's `[CLS] … [SEP]` around a sequence; BertGeneration adds **nothing**.
#
# **Predict, then run:** how many ids will each tokenizer's `encode` return for the first sentence,
# `This is a test`, compared with the pieces printed above? Which two WordPiece ids frame the sentence?

# %%
s = sentences[0]
print("sentencepiece ids:", sp_tok.encode(s))
print("WordPiece ids    :", wp_tok.encode(s), "->", wp_tok.convert_ids_to_tokens(wp_tok.encode(s)))

# %% [markdown]
# ## Batches: truncation, padding and the attention mask
#
# A batch is a rectangle. `tok(texts, padding=True, truncation=True, max_length=L)` cuts every
# sequence to at most `L` ids, pads the shorter ones on the right with the pad id, and returns an
# `attention_mask` that is 1 on real tokens and 0 on padding. The model uses that mask to keep
# padding out of attention (notebook 03).

# %%
L = 16
batches = {
    "sentencepiece": sp_tok(sentences, padding=True, truncation=True, max_length=L),
    "WordPiece": wp_tok(sentences, padding=True, truncation=True, max_length=L),
}
from matplotlib.colors import ListedColormap

fig, axes = plt.subplots(1, 2, figsize=(16, 3.6))
for ax, (name, batch) in zip(axes, batches.items()):
    mask = np.array(batch["attention_mask"])
    im = ax.imshow(mask, cmap=ListedColormap(["#dddddd", "#b7e4b0"]), vmin=-0.5, vmax=1.5, aspect="auto")
    bar = fig.colorbar(im, ax=ax, ticks=[0, 1], fraction=0.05, pad=0.02)
    bar.set_ticklabels(["0: padding", "1: token"])
    bar.set_label("attention_mask")
    tok = sp_tok if name == "sentencepiece" else wp_tok
    for (r, c), i in np.ndenumerate(np.array(batch["input_ids"])):
        ax.text(c, r, tok.convert_ids_to_tokens(int(i)).replace("▁", "_")[:5], ha="center", va="center", fontsize=7)
    ax.set_title(f"{name}: padded to {mask.shape[1]} columns")
    ax.set_xlabel("position")
    ax.set_yticks(range(len(sentences)))
    ax.set_yticklabels([f"sentence {i}" for i in range(len(sentences))])
fig.tight_layout()
plt.show()

# %% [markdown]
# The same sentences need different numbers of ids. A smaller vocabulary means more, shorter pieces,
# so longer sequences, and attention costs grow with the square of the length.

# %%
counts = {name: [len(tok.encode(s)) for s in sentences] for name, tok in [("sentencepiece (1k pieces)", sp_tok),
                                                                       ("WordPiece (30k pieces)", wp_tok)]}
x = np.arange(len(sentences))
fig, ax = plt.subplots(figsize=(7, 2.8))
for k, (name, n) in enumerate(counts.items()):
    ax.bar(x + 0.4 * k - 0.2, n, width=0.4, label=name)
ax.set_xticks(x)
ax.set_xticklabels([f"sentence {i}\n({len(s)} chars)" for i, s in enumerate(sentences)])
ax.set_ylabel("ids from encode()")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Back to text
#
# `decode` maps ids to pieces and joins them. With `skip_special_tokens=True` the specials go, and
# for sentencepiece that includes `<unk>`: characters it could not represent are lost.

# %%
for s in sentences[1:3]:
    for name, tok in [("sentencepiece", sp_tok), ("WordPiece", wp_tok)]:
        ids = tok.encode(s)
        print(f"{name:13s} decode: {tok.decode(ids)!r}")
        print(f"{'':13s} skip  : {tok.decode(ids, skip_special_tokens=True)!r}")

# %% [markdown]
# ## Check against the reference
#
# With transformers 4.57.6 installed, we run its own (slow, pure-Python) `BertGenerationTokenizer`
# and `BertTokenizer` on the same inputs and require identical tokens, ids, batches and decoded
# text. Without it, we compare with the ids published in transformers' test suite for the same
# sentencepiece file, and the MiniLM ids recorded in the reference notes (§13).

# %%
from minibertgen import reference

import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when transformers loads
if reference.oracle_available():
    _, transformers = reference.load_oracle()
    hf_sp = transformers.BertGenerationTokenizer(str(SP_MODEL))
    hf_wp = transformers.BertTokenizer(str(MINILM / "vocab.txt"), do_lower_case=True)
    for ours, theirs in [(sp_tok, hf_sp), (wp_tok, hf_wp)]:
        for s in sentences:
            assert ours.tokenize(s) == theirs.tokenize(s), s
            assert ours.encode(s) == theirs.encode(s), s
            ids = ours.encode(s)
            assert ours.decode(ids) == theirs.decode(ids), s
            assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True), s
        theirs_batch = theirs(sentences, padding=True, truncation=True, max_length=L)
        ours_batch = ours(sentences, padding=True, truncation=True, max_length=L)
        for key in ours_batch:
            assert ours_batch[key] == theirs_batch[key], key
    print(f"live check: both tokenizers equal transformers {transformers.__version__} on {len(sentences)} sentences "
          "(tokens, ids, padded batch, decode)")
else:
    # Published by transformers' test suite (test_tokenization_bert_generation.py) for this exact file:
    assert sp_tok.encode("This is a test") == [285, 46, 10, 170, 382]
    assert sp_tok.encode(sentences[1]) == [8, 21, 84, 55, 24, 19, 7, 0, 602, 347, 347, 347, 3, 12, 66, 46, 72, 80, 6, 0, 4]
    # MiniLM's vocabulary (reference notes §13):
    assert wp_tok.encode("Hello, my dog is cute.") == [101, 7592, 1010, 2026, 3899, 2003, 10140, 1012, 102]
    print("transformers is not installed: checked against the published ids instead")

# %% [markdown]
# ## Exercise: WordPiece for one word
#
# Write `my_wordpiece(word, vocab, unk_token, max_input_chars_per_word)`, the WordPiece pieces of one
# word: already lower-cased, without spaces or punctuation (what `basic_tokenize` hands over).
#
# * `vocab` is a set of pieces; a piece that *continues* a word is stored with a `##` prefix;
# * greedy **longest-match-first**: from the left, take the longest prefix of what is left that is in
#   `vocab` (looked up with `##` after the first piece), then go on after it;
# * if no piece fits at some position, the result is `[unk_token]` for the **whole** word, and the
#   same if the word has more than `max_input_chars_per_word` characters.
#
# The checker tries hand-made traps and random vocabularies over the letters a-d, and compares your
# pieces with `minibertgen.tokenization.wordpiece_tokenize`.

# %%
from minibertgen.exercises import check_wordpiece


def my_wordpiece(word, vocab, unk_token, max_input_chars_per_word):
    raise NotImplementedError("your code here")


try:
    check_wordpiece(my_wordpiece)
except NotImplementedError:
    print("Not written yet: fill in my_wordpiece above, then run this cell again.")

# %% [markdown]
# The package's own function passes the same checker:

# %%
check_wordpiece(wordpiece_tokenize)  # the solution: minibertgen.tokenization.wordpiece_tokenize

# %% [markdown]
# ## Summary
#
# * A tokenizer maps text to ids, the rows of the embedding matrix. BertGeneration checkpoints use a
#   sentencepiece (unigram) vocabulary, BERT checkpoints such as MiniLM use WordPiece.
# * WordPiece: the basic tokenizer cleans, lower-cases, strips accents and splits off punctuation;
#   then each word is cut greedily, longest piece first, continuations looked up with `##`, and a
#   word that cannot be cut becomes one `[UNK]`.
# * Sentencepiece picks the most probable segmentation (Viterbi); `▁` marks word starts, so spaces
#   survive decoding, but characters outside its vocabulary come back as `<unk>` and are lost.
# * BERT's `encode` adds `[CLS] … [SEP]`, BertGeneration adds nothing; a batch is truncated,
#   right-padded and comes with an `attention_mask` (1 on tokens, 0 on padding).
# * Both of minibertgen's tokenizers give transformers' tokens, ids, batches and decoded text.
