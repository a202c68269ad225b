"""Tokenizers: published outputs, live comparison with transformers 4.57.6, clear errors.

Where the expected values come from:
- BertGenerationTokenizer on ../shared/fixtures/test_sentencepiece.model: the published ids of
  transformers' test suite and the decode examples of the reference notes (§11, §12);
- BertTokenizer: the rules and the clean-up example of §11b on a small vocab.txt written here, and
  the published ids of "Hello, my dog is cute." in the real MiniLM vocabulary (§13);
- everything else: transformers 4.57.6's slow tokenizers, live (marker ``oracle``), on text drawn
  by hypothesis (CJK, accents, punctuation, control characters, whitespace runs, special tokens).
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibertgen.fetch import weights_dir
from minibertgen.tokenization import (
    BertGenerationTokenizer,
    BertTokenizer,
    TokenizerInputError,
    basic_tokenize,
    wordpiece_tokenize,
)

from .conftest import require_oracle, require_path

SPM = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "test_sentencepiece.model"
SPM_SHA256 = "8dfd1eae4522281b1b839eab877a791befec7a1663a41c814c77d9c89c748f2d"  # reference §11
MINILM = weights_dir("minilm-l6")  # where ``minibertgen fetch minilm-l6`` puts it ($MINIBERTGEN_WEIGHTS honoured)
MINILM_VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"  # reference §13

# ---------------------------------------------------------------- a small WordPiece vocabulary
# Specials, every ASCII letter/digit/punctuation alone and as "##" piece, words and word pieces
# (lower- and upper-case, so the cased settings have something to find), CJK ideographs, an
# accented letter (found only when accents are kept), Hiragana (not split like CJK), and Greek
# sigmas (a final capital sigma lower-cases to "ς" or "σ" depending on how the text is lower-cased).
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = [chr(c) for c in range(33, 127)]
WORDS = """the a an is was this that test hello world don ' t stop he said ok un ##aff ##able quick brown
fox jump ##s ##ed ##ing ##er over lazy dog cafe resume naive born in and fal ##se ##ly my cute i
new york city token ##izer ##ization play ##ground to be or not question ##s sigma ##ma""".split()
CASED = "The Hello World He I New York ##A ##B Token Sigma".split()
OTHER = ["中", "国", "人", "大", "日", "本", "語", "é", "##é", "の", "##の", "¿", "—", "。", "、", "「", "」",
         "α", "##α", "σ", "##σ", "ς", "##ς", "Σ", "##Σ"]  # fmt: skip


def small_vocab() -> list[str]:
    tokens = SPECIALS + CHARS + ["##" + c for c in CHARS if c.isalnum()] + WORDS + CASED + OTHER
    return list(dict.fromkeys(tokens))  # no repeats: a repeated line is an error


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("wordpiece") / "vocab.txt"
    path.write_text("".join(t + "\n" for t in small_vocab()), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def spm_file() -> str:
    return str(require_path(SPM, "the sentencepiece fixture (../shared/fixtures, beside the checkout)"))


@pytest.fixture(scope="module")
def bg(spm_file) -> BertGenerationTokenizer:
    return BertGenerationTokenizer(spm_file)


@pytest.fixture(scope="module")
def wp(vocab_file) -> BertTokenizer:
    return BertTokenizer(vocab_file)


# ---------------------------------------------------------------- text that finds the corner cases
FRAGMENTS = [
    # words of both vocabularies, in several cases
    "This is a test", "hello", "Hello", "HELLO", "world", "unaffable", "the quick brown fox", "New York",
    "tokenization", "playground", "I was born in 92000", "don't", "he's", "we've", "they're", "I'm",
    # accents, composed and decomposed, and the letters whose lower-casing depends on context or grows
    "falsé", "café", "Résumé", "naïve", "e\u0301", "\u0301", "ΑΣ", "Σ", "ΣΑΣ ", "İstanbul", "ß", "ﬁ", "Å",
    # CJK ideographs (split), Hiragana / Hangul (not split), full-width forms (NFKC in sentencepiece)
    "中国人", "日本語", "の", "한국어", "ＡＢＣ", "１２", "\U00020000",
    # punctuation, ASCII and Unicode
    ",", ".", "!", "?", "'", " . ", " ,", "(a)", "--", "¿", "—", "。", "、", "「」", "$5", "^_^", "`",
    # special tokens of both tokenizers, and near-misses
    "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "[cls]", "[CLS", "<s>", "</s>", "<pad>", "<unk>", "<::::>",
    "<S>", "< s>", "[CL\x00S]",
    # whitespace runs of every kind, control and format characters, replacement char, NUL
    " ", "  ", "   ", "\t", "\n", "\r\n", "\u3000", "\xa0", "\u2028", "\u200b", "\x00", "\x07", "\x1f",
    "\x85", "\ufffd", "\ufeff",
    # a word over WordPiece's 100-character limit, and one just at it
    "a" * 101, "b" * 100,
]  # fmt: skip

fragments = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.text(max_size=6),  # any Unicode character (surrogates excluded)
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz #'.,", max_size=8),
)
texts = st.lists(fragments, max_size=10).map("".join)


# ================================================================ published outputs (reference §11, §12)


def test_fixture_is_the_published_file(spm_file):
    data = Path(spm_file).read_bytes()
    assert len(data) == 253154 and hashlib.sha256(data).hexdigest() == SPM_SHA256


def test_special_tokens_and_sizes(bg):
    # §11: <unk> 0, <s> 1, </s> 2 are in the model; <::::> 1000, <pad> 1001 appended; vocab 1000, len 1002.
    assert bg.vocab_size == 1000 and len(bg) == 1002
    ids = (bg.unk_token_id, bg.bos_token_id, bg.eos_token_id, bg.sep_token_id, bg.pad_token_id)
    assert ids == (0, 1, 2, 1000, 1001)
    assert bg.convert_tokens_to_ids("<s>") == 1 and bg.convert_ids_to_tokens(1) == "<s>"
    vocab = sorted(bg.get_vocab().items(), key=lambda kv: kv[1])
    assert [t for t, _ in vocab[:3]] == ["<unk>", "<s>", "</s>"]
    assert [t for t, _ in vocab[-2:]] == ["<::::>", "<pad>"]
    assert len(vocab) == 1002


def test_published_ids_this_is_a_test(bg):
    tokens = bg.tokenize("This is a test")
    assert tokens == ["▁This", "▁is", "▁a", "▁t", "est"]
    assert bg.convert_tokens_to_ids(tokens) == [285, 46, 10, 170, 382]
    assert bg.encode("This is a test") == [285, 46, 10, 170, 382]
    assert bg.convert_ids_to_tokens([285, 46, 10, 170, 382]) == tokens


FALSE_TEXT = "I was born in 92000, and this is falsé."
FALSE_TOKENS = ["▁I", "▁was", "▁b", "or", "n", "▁in", "▁", "9", "2", "0", "0", "0", ",", "▁and", "▁this", "▁is",
                "▁f", "al", "s", "é", "."]  # fmt: skip
FALSE_IDS = [8, 21, 84, 55, 24, 19, 7, 0, 602, 347, 347, 347, 3, 12, 66, 46, 72, 80, 6, 0, 4]


def test_published_ids_with_accents_and_unknowns(bg):
    assert bg.tokenize(FALSE_TEXT) == FALSE_TOKENS
    assert bg.encode(FALSE_TEXT) == FALSE_IDS
    back = bg.convert_ids_to_tokens(FALSE_IDS)  # "9" and "é" are not in the vocabulary
    assert back == [("<unk>" if t in ("9", "é") else t) for t in FALSE_TOKENS]


def test_special_token_strings_are_split_out_first(bg):
    assert bg.tokenize("Hello <s> world</s>") == ["▁He", "ll", "o", "<s>", "▁world", "</s>"]
    assert bg.encode("Hello <s> world</s>") == [156, 86, 20, 1, 891, 2]


def test_no_lowercasing_and_whitespace_collapsed(bg):
    assert bg.tokenize("  a   b  ") == ["▁a", "▁b"]
    assert bg.tokenize("This") != bg.tokenize("this")


def test_no_special_tokens_are_added(bg):
    a, b = bg.encode("This is a test"), bg.encode(FALSE_TEXT)
    assert bg.encode("This is a test", FALSE_TEXT) == a + b
    assert bg.num_special_tokens_to_add() == 0 and bg.num_special_tokens_to_add(pair=True) == 0
    assert bg("This is a test") == {"input_ids": a, "attention_mask": [1] * len(a)}


def test_published_decode_examples(bg):
    ids = bg.encode("This is a test")
    assert bg.decode([1] + ids + [2, 0]) == "<s>This is a test</s><unk>"
    assert bg.decode([1, 285, 2, 285, 1001, 1000, 0, 8]) == "<s>This</s>This<pad><::::><unk>I"
    assert bg.decode([0, 8]) == "<unk>I"
    assert bg.decode([7]) == ""
    assert bg.decode(1) == "<s>" and bg.decode(1, skip_special_tokens=True) == ""  # one id, not a list
    assert bg.decode(FALSE_IDS) == "I was born in <unk>2000, and this is fals<unk>."
    assert bg.decode(FALSE_IDS, skip_special_tokens=True) == "I was born in 2000, and this is fals."
    # skip_special_tokens drops all five, <unk> included; the rest is one run of "▁This ▁This ▁I"
    assert bg.decode([1, 285, 2, 285, 1001, 1000, 0, 8], skip_special_tokens=True) == "This This I"


def test_decode_spacing_rules_of_each_segment(bg):
    # §11 step 3 on pieces "▁" 7, "▁a" 10, "a" 18, "▁b" 84: sentencepiece drops a segment's leading
    # space, keeps its trailing one; a special token is pasted in with no space; the end is stripped.
    assert bg.decode([7, 10]) == "a"  # ['▁','▁a'] -> 'a'
    assert bg.decode([18, 7, 1]) == "a <s>"  # ['a','▁'] -> 'a ' then '<s>'
    assert bg.decode([18, 7]) == "a"  # the trailing space goes in the final strip
    assert bg.decode([10, 7, 84]) == "a  b"  # ['▁a','▁','▁b'] -> 'a  b'
    assert bg.decode([1, 7, 10]) == "<s>a"
    assert bg.decode([]) == ""


def test_padding_on_the_right_with_pad(bg):
    batch = bg(["This is a test", "", FALSE_TEXT], padding=True)
    n = len(FALSE_IDS)
    assert batch["input_ids"] == [
        [285, 46, 10, 170, 382] + [1001] * (n - 5),
        [1001] * n,
        FALSE_IDS,
    ]
    assert batch["attention_mask"] == [[1] * 5 + [0] * (n - 5), [0] * n, [1] * n]
    assert set(batch) == {"input_ids", "attention_mask"}


# ================================================================ WordPiece by the rules of §11b


def test_basic_tokenizer_steps():
    # 1. clean: NUL, U+FFFD and control characters go; tab/newline/NBSP become spaces
    assert basic_tokenize("a\x00b\ufffdc\x07d\u200be\tf\ng\xa0h") == ["abcde", "f", "g", "h"]
    # 2. CJK ideographs get spaces around them; Hiragana and Hangul do not
    assert basic_tokenize("ab中国cd のの", strip_accents=False) == ["ab", "中", "国", "cd", "のの"]
    # (accent stripping is NFD + dropping Mn marks: a Hangul syllable decomposes into its letters, which stay)
    decomposed = unicodedata.normalize("NFD", "한국")
    assert basic_tokenize("한국") == [decomposed] and decomposed != "한국"
    # 3-4. NFC, lower-case, strip accents (strip_accents None follows lower-casing)
    assert basic_tokenize("Café E\u0301") == ["cafe", "e"]
    assert basic_tokenize("Café", strip_accents=False) == ["café"]
    assert basic_tokenize("Café", do_lower_case=False) == ["Café"]
    assert basic_tokenize("Café", do_lower_case=False, strip_accents=True) == ["Cafe"]
    # 5. punctuation: ASCII non-alphanumerics and Unicode P* each alone
    assert basic_tokenize("don't$5 ¿sí?") == ["don", "'", "t", "$", "5", "¿", "si", "?"]
    # never_split words are kept whole
    assert basic_tokenize("[MASK] x.y", never_split={"[MASK]"}) == ["[MASK]", "x", ".", "y"]


def test_wordpiece_greedy_longest_match_first():
    vocab = {"a", "ab", "abc", "##c", "##bc", "##b", "un", "##aff", "##able", "x"}
    assert wordpiece_tokenize("abc", vocab) == ["abc"]
    assert wordpiece_tokenize("abbc", vocab) == ["ab", "##bc"]  # longest first at each step
    assert wordpiece_tokenize("unaffable", vocab) == ["un", "##aff", "##able"]
    assert wordpiece_tokenize("abd", vocab) == ["[UNK]"]  # one position without a match: whole word
    assert wordpiece_tokenize("ax", vocab) == ["[UNK]"]  # "x" exists, but not "##x"
    long_vocab = {"a", "##a"}
    assert wordpiece_tokenize("a" * 100, long_vocab) == ["a"] + ["##a"] * 99
    assert wordpiece_tokenize("a" * 101, long_vocab) == ["[UNK]"]  # over 100 characters


def test_encode_adds_cls_and_sep(wp):
    cls, sep = wp.cls_token_id, wp.sep_token_id
    a, b = wp.encode("hello world", add_special_tokens=False), wp.encode("he said", add_special_tokens=False)
    assert wp.encode("hello world") == [cls] + a + [sep]
    assert wp.encode("hello world", "he said") == [cls] + a + [sep] + b + [sep]
    out = wp("hello world", "he said")
    assert out["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert list(out) == ["input_ids", "token_type_ids", "attention_mask"]
    assert wp.encode("") == [cls, sep] and wp.tokenize("") == []


def test_tokenize_uncased_with_specials(wp):
    assert wp.tokenize("Hello [MASK] World! unaffable") == ["hello", "[MASK]", "world", "!", "un", "##aff", "##able"]
    assert wp.tokenize("[cls] [CLS]") == ["[", "c", "##l", "##s", "]", "[CLS]"]  # only the exact string is special
    assert wp.tokenize("中国人 Café") == ["中", "国", "人", "cafe"]


def test_decode_cleans_up_spaces(wp):
    # §11b: "don't stop, he said . ok ?" round-trips to "don't stop, he said. ok?"
    ids = wp.encode("don't stop, he said . ok ?")
    assert wp.decode(ids, skip_special_tokens=True) == "don't stop, he said. ok?"
    assert wp.decode(ids) == "[CLS] don't stop, he said. ok? [SEP]"
    raw = wp.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    assert raw == "don ' t stop , he said . ok ?"
    assert wp.decode(wp.encode("unaffable playground"), skip_special_tokens=True) == "unaffable playground"


@settings(max_examples=50)
@given(words=st.lists(st.sampled_from([w for w in WORDS if w.isalpha()]), max_size=8))
def test_wordpiece_round_trip_of_vocabulary_words(wp, words):
    text = " ".join(words)
    assert wp.decode(wp.encode(text), skip_special_tokens=True) == text


def test_specials_missing_from_vocab_are_appended(tmp_path):
    # Same rule as the sentencepiece fixture: missing specials get ids after the file's lines, in
    # transformers' role order (unk, sep, pad, cls, mask).
    path = tmp_path / "vocab.txt"
    path.write_text("[UNK]\n[CLS]\na\nb\n##b\n", encoding="utf-8")
    tok = BertTokenizer(str(path))
    assert tok.vocab_size == 5 and len(tok) == 8
    assert (tok.sep_token_id, tok.pad_token_id, tok.mask_token_id) == (5, 6, 7)
    assert tok.tokenize("A[MASK]b [PAD]ab [SEP]") == ["a", "[MASK]", "b", "[PAD]", "a", "##b", "[SEP]"]


# ================================================================ the real MiniLM vocabulary (§13)


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    vocab = require_path(MINILM / "vocab.txt", "the MiniLM vocabulary (run: minibertgen fetch minilm-l6)")
    assert hashlib.sha256(vocab.read_bytes()).hexdigest() == MINILM_VOCAB_SHA256, "rerun: minibertgen fetch minilm-l6"
    return MINILM


def test_minilm_published_ids(minilm_dir):
    tok = BertTokenizer.from_pretrained(minilm_dir)
    assert tok.encode("Hello, my dog is cute.") == [101, 7592, 1010, 2026, 3899, 2003, 10140, 1012, 102]
    assert (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id) == (101, 102, 0)
    assert tok.model_max_length == 512 and tok.do_lower_case


# ================================================================ clear errors (DESIGN.md §9)


def test_missing_or_wrong_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.model"):
        BertGenerationTokenizer(tmp_path / "nope.model")
    with pytest.raises(FileNotFoundError, match="directory"):
        BertGenerationTokenizer(tmp_path)
    bad = tmp_path / "bad.model"
    bad.write_text("this is not a sentencepiece model\n")
    with pytest.raises(ValueError, match="bad.model.*not a sentencepiece model"):
        BertGenerationTokenizer(bad)
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        BertTokenizer(tmp_path / "vocab.txt")
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        BertTokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError):
        BertTokenizer.from_pretrained(tmp_path / "missing")
    (tmp_path / "vocab.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        BertTokenizer(tmp_path / "vocab.txt")
    (tmp_path / "vocab.txt").write_text("[UNK]\nab\n##c\nab\n")
    with pytest.raises(ValueError, match="'ab'.*lines 2 and 4"):
        BertTokenizer(tmp_path / "vocab.txt")


@pytest.mark.parametrize("bad", [b"bytes", None, 3, ["a list"]])
def test_text_must_be_str(bg, wp, bad):
    for tok in (bg, wp):
        calls = [tok.tokenize, tok.encode, lambda t: tok(["fine", t])]
        if bad is not None:  # None as text_pair means "no pair"
            calls.append(lambda t: tok.encode("fine", t))
        for call in calls:
            with pytest.raises(TokenizerInputError, match=type(bad).__name__) as err:
                call(bad)
            assert isinstance(err.value, ValueError) and isinstance(err.value, TypeError)


@pytest.mark.parametrize("tok_name", ["bg", "wp"])
def test_ids_outside_the_vocabulary(request, tok_name):
    tok = request.getfixturevalue(tok_name)
    for bad in (len(tok), -1, 10**9):
        with pytest.raises(ValueError, match=f"token id {bad} is outside the vocabulary \\[0, {len(tok)}\\)"):
            tok.decode([3, bad])
        with pytest.raises(ValueError, match=str(bad)):
            tok.convert_ids_to_tokens(bad)
    for bad in ([1.0], [True], "12", np.zeros((2, 2), dtype=np.int64), np.array([1.5])):
        with pytest.raises(TokenizerInputError):
            tok.decode(bad)
    assert tok.decode(np.array([3, 4, 5])) == tok.decode([3, 4, 5])  # arrays of ids are fine
    assert tok.batch_decode(np.array([[3, 4], [5, 6]])) == [tok.decode([3, 4]), tok.decode([5, 6])]


@pytest.mark.parametrize("tok_name", ["bg", "wp"])
def test_padding_and_truncation_options(request, tok_name):
    tok = request.getfixturevalue(tok_name)
    with pytest.raises(ValueError, match="truncation=True needs max_length"):
        tok(["a b"], truncation=True)
    with pytest.raises(ValueError, match="padding='max_length' needs max_length"):
        tok(["a b"], padding="max_length")
    with pytest.raises(ValueError, match="max_length=5 has no effect"):
        tok(["a b"], padding=True, max_length=5)
    with pytest.raises(ValueError, match="'left'"):
        tok(["a b"], padding="left")
    with pytest.raises(ValueError, match="'only_third'"):
        tok(["a b"], truncation="only_third", max_length=5)
    with pytest.raises(ValueError, match="'only_second' needs a pair"):
        tok(["a b"], truncation="only_second", max_length=5)
    for bad in (-1, 0, 2.5, True):
        with pytest.raises(ValueError, match=f"max_length must be a positive int or None, got {bad}"):
            tok(["a b"], truncation=True, max_length=bad)
    if tok_name == "wp":  # room for [CLS] [SEP] only: the text would vanish (the reference leaves it whole)
        with pytest.raises(ValueError, match="max_length=2 leaves no room"):
            tok.encode("hello world this is a test", truncation=True, max_length=2)
    else:  # no special tokens: one token of text fits
        assert len(tok.encode("hello world this is a test", truncation=True, max_length=1)) == 1
    with pytest.raises(TokenizerInputError, match="text_pair"):
        tok(["a", "b"], text_pair=["c"])
    assert tok([]) == {name: [] for name in tok.model_input_names}
    assert tok.encode("") == ([] if tok_name == "bg" else [tok.cls_token_id, tok.sep_token_id])


@pytest.mark.parametrize("tok_name", ["bg", "wp"])
def test_long_inputs_truncate(request, tok_name):
    tok = request.getfixturevalue(tok_name)
    text = "the quick brown fox jumps over the lazy dog " * 200
    full = tok.encode(text)
    assert len(full) > 1000
    batch = tok([text, "a test"], padding="max_length", truncation=True, max_length=16)
    assert [len(row) for row in batch["input_ids"]] == [16, 16]
    assert batch["attention_mask"][0] == [1] * 16
    if tok_name == "wp":  # [CLS] + the first 14 word pieces + [SEP]
        assert batch["input_ids"][0] == full[:15] + full[-1:]
    else:
        assert batch["input_ids"][0] == full[:16]
    assert tok.encode(text, truncation=True, max_length=16) == batch["input_ids"][0]


def test_save_and_load(bg, wp, tmp_path):
    (path,) = bg.save_vocabulary(tmp_path)
    assert path == os.path.join(tmp_path, "spiece.model") and Path(path).read_bytes() == SPM.read_bytes()
    (path,) = wp.save_vocabulary(tmp_path, filename_prefix="x")
    assert Path(path).name == "x-vocab.txt"
    assert Path(path).read_text(encoding="utf-8").splitlines() == small_vocab()
    with pytest.raises(FileNotFoundError, match="not an existing directory"):
        bg.save_vocabulary(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="not an existing directory"):
        wp.save_vocabulary(tmp_path / "missing")

    cased = BertTokenizer(wp.vocab_file, do_lower_case=False, model_max_length=7)
    cased.save_pretrained(tmp_path / "cased")
    again = BertTokenizer.from_pretrained(tmp_path / "cased")
    assert not again.do_lower_case and again.model_max_length == 7
    assert again.tokenize("Hello World") == ["Hello", "World"]
    assert len(again(["a " * 20], truncation=True)["input_ids"][0]) == 7  # model_max_length is the default
    bg.save_pretrained(tmp_path / "bg")
    assert BertGenerationTokenizer.from_pretrained(tmp_path / "bg").encode(FALSE_TEXT) == FALSE_IDS


def test_tokenizer_config_is_checked(wp, tmp_path):
    wp.save_pretrained(tmp_path)
    config_path = tmp_path / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "tokenizer_class": "XLMRobertaTokenizer"}))
    with pytest.raises(ValueError, match="XLMRobertaTokenizer"):
        BertTokenizer.from_pretrained(tmp_path)
    extra = {"added_tokens_decoder": {str(len(wp)): {"content": "<new>", "special": False}}}
    config_path.write_text(json.dumps({**config, **extra}))
    with pytest.raises(ValueError, match="'<new>'.*not supported"):
        BertTokenizer.from_pretrained(tmp_path)
    config_path.write_text(json.dumps({**config, "additional_special_tokens": ["<extra>"]}))
    with pytest.raises(ValueError, match="additional_special_tokens.*not supported"):
        BertTokenizer.from_pretrained(tmp_path)
    config_path.write_text(json.dumps({**config, "do_lower_case": "yes"}))
    with pytest.raises(ValueError, match="do_lower_case.*'yes'"):
        BertTokenizer.from_pretrained(tmp_path)
    config_path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        BertTokenizer.from_pretrained(tmp_path)


# ================================================================ live oracle: transformers 4.57.6 (slow)

# Tokenizer settings drawn for the WordPiece comparison (transformers' names and meanings).
WP_SETTINGS = [
    {},
    {"do_lower_case": False},
    {"do_lower_case": True, "strip_accents": False},
    {"do_lower_case": False, "strip_accents": True},
    {"tokenize_chinese_chars": False},
    {"do_basic_tokenize": False},
    {"never_split": ["hello.world", "Hello", "x"]},
    {"do_lower_case": False, "never_split": ["Hello", "don't"], "clean_up_tokenization_spaces": False},
]


@pytest.fixture(scope="module")
def pairs_bg(spm_file):
    """(ours, theirs) for the sentencepiece fixture."""
    _, transformers = require_oracle()
    return BertGenerationTokenizer(spm_file), transformers.BertGenerationTokenizer(spm_file)


@pytest.fixture(scope="module")
def pairs_wp(vocab_file):
    """[(ours, theirs)] on the small vocabulary, one pair per entry of WP_SETTINGS."""
    _, transformers = require_oracle()
    return [(BertTokenizer(vocab_file, **s), transformers.BertTokenizer(vocab_file, **s)) for s in WP_SETTINGS]


def compare_text(ours, theirs, text, pair):
    assert ours.tokenize(text) == theirs.tokenize(text), "tokenize"
    ids = ours.encode(text)
    assert ids == theirs.encode(text), "encode"
    assert ours.encode(text, pair) == theirs.encode(text, pair), "encode pair"
    for skip in (False, True):
        assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip), "decode"


def compare_ids(ours, theirs, ids):
    assert ours.convert_ids_to_tokens(ids) == theirs.convert_ids_to_tokens(ids)
    for skip in (False, True):
        assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
        for one in ids[:2]:  # a single int, not a list
            assert ours.decode(one, skip_special_tokens=skip) == theirs.decode(one, skip_special_tokens=skip)
            assert ours.convert_ids_to_tokens(one) == theirs.convert_ids_to_tokens(one)


@st.composite
def batch_options(draw):
    padding = draw(st.sampled_from([False, True, "max_length"]))
    truncation = draw(st.booleans())
    uses_max = truncation or padding == "max_length"
    return dict(padding=padding, truncation=truncation, max_length=draw(st.integers(1, 12)) if uses_max else None)


def compare_batch(ours, theirs, batch, pairs, options):
    hf = dict(theirs(batch, text_pair=pairs, **options))
    try:
        got = ours(batch, text_pair=pairs, **options)
    except ValueError as exc:
        # We refuse exactly when max_length cannot be honoured; the reference then logs an error and
        # returns a row longer than max_length.
        assert "max_length" in str(exc)
        assert options["truncation"] and max(len(row) for row in hf["input_ids"]) > options["max_length"]
        return
    assert got == hf


@pytest.mark.oracle
@settings(max_examples=300)
@given(text=texts, pair=texts)
def test_sentencepiece_matches_transformers(pairs_bg, text, pair):
    compare_text(*pairs_bg, text, pair)


@pytest.mark.oracle
@settings(max_examples=100)
@given(data=st.data())
def test_sentencepiece_ids_and_batches_match_transformers(pairs_bg, data):
    ours, theirs = pairs_bg
    compare_ids(ours, theirs, data.draw(st.lists(st.integers(0, len(ours) - 1), max_size=12), label="ids"))
    batch = data.draw(st.lists(texts, min_size=1, max_size=4), label="batch")  # transformers refuses []
    pairs = data.draw(st.none() | st.lists(texts, min_size=len(batch), max_size=len(batch)), label="pairs")
    compare_batch(ours, theirs, batch, pairs, data.draw(batch_options(), label="options"))


@pytest.mark.oracle
@settings(max_examples=400)
@given(setting=st.integers(0, len(WP_SETTINGS) - 1), text=texts, pair=texts)
def test_wordpiece_matches_transformers(pairs_wp, setting, text, pair):
    compare_text(*pairs_wp[setting], text, pair)


@pytest.mark.oracle
@settings(max_examples=100)
@given(data=st.data())
def test_wordpiece_ids_and_batches_match_transformers(pairs_wp, data):
    ours, theirs = pairs_wp[data.draw(st.integers(0, len(WP_SETTINGS) - 1), label="setting")]
    compare_ids(ours, theirs, data.draw(st.lists(st.integers(0, len(ours) - 1), max_size=12), label="ids"))
    batch = data.draw(st.lists(texts, min_size=1, max_size=4), label="batch")  # transformers refuses []
    pairs = data.draw(st.none() | st.lists(texts, min_size=len(batch), max_size=len(batch)), label="pairs")
    compare_batch(ours, theirs, batch, pairs, data.draw(batch_options(), label="options"))


@pytest.mark.oracle
def test_wordpiece_fixed_cases_match_transformers(pairs_wp):
    # Cases hypothesis might take long to find: final sigma, a special assembled by cleaning, long words.
    cases = ["ΑΣ ΣΑΣ Σ", "ΑΣ[SEP]ΑΣ", "[CL\x00S] x[CLS]y", "a" * 101 + " " + "b" * 100, "İstanbul ß ﬁ",
             "don't stop, he said . ok ?", "\u0301\u0301 e\u0301", "中国人の한국어", "hello.world Hello x.y"]  # fmt: skip
    for ours, theirs in pairs_wp:
        for text in cases:
            compare_text(ours, theirs, text, text)


@pytest.mark.oracle
@pytest.mark.parametrize(
    "kind, specials, cases",
    [
        ("wp", {"mask_token": "[SEP]X"}, ["a[SEP]Xb", "[SEP]X[SEP]", "x[SEP]x"]),
        ("wp", {"mask_token": "a[SEP"}, ["a[SEP]Xb", "S[SEP]P]"]),
        ("wp", {"mask_token": "<x>", "pad_token": "x>y"}, ["<x>y x>y <x>>y"]),
        ("bg", {"sep_token": "<s>x"}, ["a<s>xb", "<s><s>x", "</s><s>"]),
        ("bg", {"pad_token": "</s"}, ["</s></s", "a</sb"]),
    ],
)
def test_overlapping_custom_specials_match_transformers(kind, specials, cases, spm_file, vocab_file):
    # Where special tokens overlap, the split takes the longest at the leftmost position, but the
    # BertTokenizer lower-casing pass the first one in role order: "[SEP]X" loses to "[SEP]" there.
    _, transformers = require_oracle()
    if kind == "wp":
        ours, theirs = BertTokenizer(vocab_file, **specials), transformers.BertTokenizer(vocab_file, **specials)
    else:
        ours = BertGenerationTokenizer(spm_file, **specials)
        theirs = transformers.BertGenerationTokenizer(spm_file, **specials)
    assert ours.get_vocab() == theirs.get_vocab()
    for text in cases:
        compare_text(ours, theirs, text, text)


@pytest.mark.oracle
def test_special_tokens_missing_from_vocab_match_transformers(tmp_path):
    _, transformers = require_oracle()
    path = tmp_path / "vocab.txt"
    path.write_text("[UNK]\n[CLS]\na\nb\n##b\n", encoding="utf-8")
    ours, theirs = BertTokenizer(str(path)), transformers.BertTokenizer(str(path))
    assert (len(ours), ours.vocab_size) == (len(theirs), theirs.vocab_size)
    assert ours.get_vocab() == theirs.get_vocab()
    assert ours.all_special_ids == theirs.all_special_ids
    compare_text(ours, theirs, "A[MASK]b [PAD]ab [SEP]", "b[UNK]")


@pytest.mark.oracle
def test_saved_folders_load_in_transformers(tmp_path, spm_file, vocab_file):
    _, transformers = require_oracle()
    cased = BertTokenizer(vocab_file, do_lower_case=False, strip_accents=True, model_max_length=9)
    cased.save_pretrained(tmp_path / "wp")
    theirs = transformers.BertTokenizer.from_pretrained(tmp_path / "wp")
    assert theirs.model_max_length == 9 and theirs.get_vocab() == cased.get_vocab()
    compare_text(cased, theirs, "Hello Résumé WORLD", "The dog")
    BertGenerationTokenizer(spm_file).save_pretrained(tmp_path / "bg")
    theirs = transformers.BertGenerationTokenizer.from_pretrained(tmp_path / "bg")
    assert theirs.encode(FALSE_TEXT) == FALSE_IDS and len(theirs) == 1002


@pytest.mark.oracle
def test_folders_saved_by_transformers_load_here(tmp_path, spm_file, vocab_file):
    _, transformers = require_oracle()
    theirs = transformers.BertTokenizer(vocab_file, do_lower_case=False, tokenize_chinese_chars=False,
                                        model_max_length=11)  # fmt: skip
    theirs.save_pretrained(tmp_path / "wp")
    ours = BertTokenizer.from_pretrained(tmp_path / "wp")
    assert (ours.do_lower_case, ours.tokenize_chinese_chars, ours.model_max_length) == (False, False, 11)
    compare_text(ours, theirs, "Hello 中国人 WORLD", "The dog")
    theirs = transformers.BertGenerationTokenizer(spm_file)
    theirs.save_pretrained(tmp_path / "bg")
    ours = BertGenerationTokenizer.from_pretrained(tmp_path / "bg")
    assert ours.get_vocab() == theirs.get_vocab() and ours.model_max_length is None
    compare_text(ours, theirs, FALSE_TEXT, "Hello <s> world</s>")


@pytest.mark.oracle
@settings(max_examples=100)
@given(text=texts, pair=texts)
def test_minilm_vocab_matches_transformers(minilm_pair, text, pair):
    compare_text(*minilm_pair, text, pair)


@pytest.fixture(scope="module")
def minilm_pair(minilm_dir):
    _, transformers = require_oracle()
    return BertTokenizer.from_pretrained(minilm_dir), transformers.BertTokenizer.from_pretrained(minilm_dir)


@pytest.mark.oracle
def test_minilm_vocab_on_a_varied_corpus_matches_transformers(minilm_pair):
    corpus = ["", " ", "Hello, my dog is cute.", "Café naïve résumé Ångström façade", "北京是中国的首都。",
              "I ❤️ emoji 😀🚀 and flags 🇫🇷", "zero\u200bwidth\u200djoin\ufeffbom", "ctrl\x01\x02chars\x7f",
              "supercalifragilisticexpialidocious" * 4, "tab\tnew\nline\r\nend", "[CLS] already [SEP] there",
              "don't won't can't y'all", "3.14159 1,000,000 $42 50% #hash @user", "ÀÉÎÕÜ ß Œ œ æ", "a" * 150]  # fmt: skip
    for text in corpus:
        compare_text(*minilm_pair, text, text[::-1] or None)
