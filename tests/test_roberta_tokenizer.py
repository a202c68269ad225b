"""RobertaTokenizer (byte-level BPE) against published outputs and live transformers 4.57.6.

- tests/fixtures/bpe/: a 1000-token vocabulary trained by scripts/make_bpe_vocab.py (rerun here:
  it must give the committed files byte for byte);
- the tiny vocabulary and merges of transformers' own RoBERTa tokenizer tests, with the tokens and
  ids those tests publish;
- live transformers.RobertaTokenizer (the slow one) on the same files: tokens, ids, pairs,
  padding, truncation, special-tokens masks, decode, add_prefix_space, <mask>, and hypothesis text
  with emoji, accents and odd whitespace;
- strict loading: malformed vocab.json / merges.txt raise errors that name the file.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibertgen import AutoTokenizer, RobertaTokenizer
from minibertgen.tokenization_roberta import BYTE_TO_CHAR, bytes_to_unicode

from .conftest import FIXTURES, require_oracle

BPE = FIXTURES / "bpe"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_bpe_vocab.py"

# Published: transformers' tests/models/roberta/test_tokenization_roberta.py (RobertaTokenizationTest.setUp
# and test_full_tokenizer), "Adapted from Sennrich et al. 2015": its vocabulary, merges and expected output.
PUBLISHED_VOCAB = ["l", "o", "w", "e", "r", "s", "t", "i", "d", "n", "\u0120", "\u0120l", "\u0120n", "\u0120lo",
                   "\u0120low", "er", "\u0120lowest", "\u0120newer", "\u0120wider", "<unk>"]  # fmt: skip
PUBLISHED_MERGES = ["#version: 0.2", "\u0120 l", "\u0120l o", "\u0120lo w", "e r", ""]
PUBLISHED_TOKENS = ["l", "o", "w", "er", "\u0120", "n", "e", "w", "er"]  # tokenize("lower newer")
PUBLISHED_IDS = [0, 1, 2, 15, 10, 9, 3, 2, 15, 19]  # convert_tokens_to_ids(tokens + ["<unk>"])

# Text pieces that exercise the pre-tokenizer, the byte map and the special tokens.
PIECES = ["The", " lower", " newer", "café", " crêpes", "Zoë", " weren't", "I'd", " 2.50", "1998", "-", "!?",
          " ", "  ", "\n", "\t", "\r\n", "\u00a0", "\u3000", "😀", "👩‍👩‍👧", "日本語", " Ελλάδα", "<s>", "</s>",
          "<mask>", " <mask>", "<pad>", "<unk>", "<s", "mask>"]  # fmt: skip
texts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), max_size=8).map("".join)
SMALL = settings(max_examples=50, derandomize=True)  # a fixed, quick sample: the file stays under 30 s


@pytest.fixture(scope="module")
def published_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("published")
    (folder / "vocab.json").write_text(json.dumps(dict(zip(PUBLISHED_VOCAB, range(len(PUBLISHED_VOCAB))))) + "\n")
    (folder / "merges.txt").write_text("\n".join(PUBLISHED_MERGES), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def ours() -> RobertaTokenizer:
    return RobertaTokenizer.from_pretrained(BPE)


def _hf(folder: Path, **kwargs):
    _, transformers = require_oracle()
    return transformers.RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), **kwargs)


@pytest.fixture(scope="module")
def pairs():
    """(ours, theirs) on the fixture vocabulary and on the published one, with and without add_prefix_space."""
    return [(RobertaTokenizer(folder / "vocab.json", folder / "merges.txt", add_prefix_space=aps),
             _hf(folder, add_prefix_space=aps))
            for folder in (BPE,) for aps in (False, True)]  # fmt: skip


@pytest.fixture(scope="module")
def published_pair(published_dir):
    return RobertaTokenizer(published_dir / "vocab.json", published_dir / "merges.txt"), _hf(published_dir)


# ================================================================ the fixture vocabulary


def test_the_committed_vocabulary_is_what_the_script_makes(tmp_path):
    spec = importlib.util.spec_from_file_location("make_bpe_vocab", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    vocab_path, merges_path = script.write(tmp_path)
    assert vocab_path.read_bytes() == (BPE / "vocab.json").read_bytes()
    assert merges_path.read_bytes() == (BPE / "merges.txt").read_bytes()


def test_the_fixture_has_robertas_id_order(ours):
    # The layout the script promises: specials as in RoBERTa's vocabulary, then the 256 bytes, <mask> last.
    assert len(ours) == ours.vocab_size == 1000
    assert [ours.bos_token_id, ours.pad_token_id, ours.eos_token_id, ours.unk_token_id] == [0, 1, 2, 3]
    assert ours.cls_token_id == 0 and ours.sep_token_id == 2 and ours.mask_token_id == 999
    assert [ours.convert_ids_to_tokens(4 + b) for b in range(256)] == [BYTE_TO_CHAR[b] for b in range(256)]


def test_byte_map_is_a_bijection_onto_printable_characters():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert table[ord(" ")] == "\u0120"  # "Ġ": the space of the published vocabulary ("\u0120low")


def test_byte_map_equals_transformers():
    _, transformers = require_oracle()
    from transformers.models.roberta.tokenization_roberta import bytes_to_unicode as hf_bytes_to_unicode

    assert bytes_to_unicode() == hf_bytes_to_unicode()


# ================================================================ published outputs


def test_published_tokens_and_ids(published_dir):
    tok = RobertaTokenizer(published_dir / "vocab.json", published_dir / "merges.txt", unk_token="<unk>")
    tokens = tok.tokenize("lower newer")
    assert tokens == PUBLISHED_TOKENS
    assert tok.convert_tokens_to_ids(tokens + [tok.unk_token]) == PUBLISHED_IDS


def test_published_space_behaviour(ours):
    # transformers' test_space_encoding: add_prefix_space makes the first token start with "Ġ", and
    # <mask> (lstrip) keeps the space after it for the next word, but takes the one before it.
    space = BYTE_TO_CHAR[ord(" ")]
    with_prefix = RobertaTokenizer.from_pretrained(BPE, add_prefix_space=True)
    assert ours.tokenize("Encode this sequence.")[0][0] != space
    assert with_prefix.tokenize("Encode this sequence.")[0][0] == space
    ids = ours.encode("Encode this sequence.")
    assert ids[0] == ours.bos_token_id and ours.convert_ids_to_tokens(ids[1])[0] != space
    for text, after in (("Encode <mask> sequence", True), ("Encode <mask>sequence", False)):
        ids = ours.encode(text)
        following = ours.convert_ids_to_tokens(ids[ids.index(ours.mask_token_id) + 1])
        assert (following[0] == space) is after
    assert ours.tokenize("Encode <mask>") == ours.tokenize("Encode") + ["<mask>"]


# ================================================================ live transformers


@pytest.mark.oracle
def test_vocabularies_equal_transformers(pairs, published_pair):
    for mine, theirs in [*pairs, published_pair]:
        assert mine.get_vocab() == theirs.get_vocab() and len(mine) == len(theirs)
        assert mine.all_special_tokens == theirs.all_special_tokens
        assert mine.all_special_ids == theirs.all_special_ids


def compare_text(mine, theirs, text, pair):
    assert mine.tokenize(text) == theirs.tokenize(text)
    ids = theirs(text, pair, return_token_type_ids=True, return_special_tokens_mask=True)
    assert mine(text, pair, return_token_type_ids=True, return_special_tokens_mask=True) == dict(ids)
    assert mine.encode(text, add_special_tokens=False) == theirs.encode(text, add_special_tokens=False)
    for skip in (False, True):
        for clean in (None, True):
            assert mine.decode(ids["input_ids"], skip_special_tokens=skip, clean_up_tokenization_spaces=clean) == (
                theirs.decode(ids["input_ids"], skip_special_tokens=skip, clean_up_tokenization_spaces=clean))


@pytest.mark.oracle
@pytest.mark.parametrize("text", ["lower newer", "Hello world! cécé herlolip 418", "A, <mask> AllenNLP sentence.",
                                  "sequence builders", "multi-sequence build", "", " ", "<s></s>", " <mask> ",
                                  "I can't remember; they weren't there.\n\n  Done."])  # fmt: skip
def test_examples_equal_transformers(pairs, published_pair, text):
    for mine, theirs in [*pairs, published_pair]:
        compare_text(mine, theirs, text, None)
        compare_text(mine, theirs, text, "multi-sequence build")


@pytest.mark.oracle
@SMALL
@given(text=texts, pair=st.none() | texts, which=st.integers(0, 2))
def test_hypothesis_text_equals_transformers(pairs, published_pair, text, pair, which):
    compare_text(*[*pairs, published_pair][which], text, pair)


@pytest.mark.oracle
@SMALL
@given(ids=st.lists(st.integers(0, 999), max_size=12))
def test_decoding_any_ids_equals_transformers(pairs, ids):
    # Arbitrary ids make broken UTF-8 (half an emoji): both decode it with errors="replace".
    mine, theirs = pairs[0]
    for skip in (False, True):
        assert mine.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
    assert mine.convert_ids_to_tokens(ids) == theirs.convert_ids_to_tokens(ids)


BATCH = ["The lower deck was quieter.", "I can't remember where I put my keys, they weren't there.", "Zoë 😀", ""]
PAIRS = ["A short one.", "x", "The bakery on the corner sells bread, cakes and coffee every day.", "<mask> here"]


@pytest.mark.oracle
@pytest.mark.parametrize("options", [
    dict(padding=True),
    dict(padding="max_length", max_length=24),
    dict(padding=True, pad_to_multiple_of=8),
    dict(padding=True, padding_side="left"),
    dict(padding=True, return_tensors="np"),
    dict(padding=True, add_special_tokens=False, return_special_tokens_mask=True),
    dict(padding=True, return_token_type_ids=True, return_attention_mask=False),
    dict(truncation=True, max_length=9, padding=True),
    dict(truncation="longest_first", max_length=12),
    dict(truncation="only_first", max_length=14, padding="max_length"),
    dict(truncation="only_second", max_length=16, return_special_tokens_mask=True),
])  # fmt: skip
@pytest.mark.parametrize("with_pairs", [False, True])
def test_batches_equal_transformers(pairs, options, with_pairs):
    mine, theirs = pairs[0]
    if options.get("truncation") == "only_second" and not with_pairs:
        with pytest.raises(ValueError, match="needs a pair"):  # the reference silently leaves it whole
            mine(BATCH, **options)
        return
    text_pair = PAIRS if with_pairs else None
    expected = theirs(BATCH, text_pair=text_pair, **options)
    try:
        got = mine(BATCH, text_pair=text_pair, **options)
    except ValueError as exc:
        # We refuse exactly when max_length cannot be honoured; the reference logs an error and
        # returns a row longer than max_length.
        assert "max_length" in str(exc)
        assert max(len(row) for row in expected["input_ids"]) > options["max_length"]
        return
    assert sorted(got) == sorted(expected)  # (the same keys; their order in the dict does not matter)
    for name in expected:
        if options.get("return_tensors") == "np":
            assert isinstance(got[name], np.ndarray) and got[name].dtype == np.int64
            np.testing.assert_array_equal(got[name], expected[name])
        else:
            assert got[name] == expected[name], name


@pytest.mark.oracle
def test_truncation_strategies_differ_where_they_should(pairs):
    # Guard against the comparisons above passing vacuously: the three strategies give three answers.
    mine, _ = pairs[0]
    rows = {s: mine(BATCH[1], PAIRS[2], truncation=s, max_length=30).input_ids for s in
            ("longest_first", "only_first", "only_second")}  # fmt: skip
    assert len({tuple(r) for r in rows.values()}) == 3 and all(len(r) == 30 for r in rows.values())


@pytest.mark.oracle
def test_special_tokens_mask_equals_transformers(pairs):
    mine, theirs = pairs[0]
    a, b = mine.encode("lower newer", add_special_tokens=False), mine.encode("<mask> x", add_special_tokens=False)
    assert mine.get_special_tokens_mask(a) == theirs.get_special_tokens_mask(a)
    assert mine.get_special_tokens_mask(a, b) == theirs.get_special_tokens_mask(a, b)
    full = mine.encode("lower <mask> newer", "x")
    assert mine.get_special_tokens_mask(full, already_has_special_tokens=True) == (
        theirs.get_special_tokens_mask(full, already_has_special_tokens=True))
    cls, sep = mine.cls_token_id, mine.sep_token_id
    assert mine.encode("lower newer", "<mask> x") == [cls, *a, sep, sep, *b, sep]  # <s> A </s></s> B </s>


@pytest.mark.oracle
@pytest.mark.parametrize("which", ["fixture, add_prefix_space", "published"])
def test_saved_folders_load_both_ways(tmp_path, pairs, published_pair, which):
    _, transformers = require_oracle()
    # add_prefix_space=True: the setting must travel too; the published vocabulary lacks 4 of the
    # special tokens, so they are appended after it (ids 20..23) and must come back with the same ids.
    mine, theirs = published_pair if which == "published" else pairs[1]
    text = "Encode <mask> sequence, café 😀 lower newer"
    mine.save_pretrained(tmp_path / "ours")
    reloaded = transformers.RobertaTokenizer.from_pretrained(tmp_path / "ours")
    assert reloaded(text, "x").input_ids == theirs(text, "x").input_ids
    assert reloaded.get_vocab() == theirs.get_vocab()
    theirs.save_pretrained(tmp_path / "theirs")
    for loaded in (RobertaTokenizer.from_pretrained(tmp_path / "theirs"), AutoTokenizer.from_pretrained(tmp_path / "theirs")):
        assert type(loaded) is RobertaTokenizer and loaded.add_prefix_space == theirs.add_prefix_space
        assert loaded.get_vocab() == theirs.get_vocab()
        assert loaded(text, "x").input_ids == theirs(text, "x").input_ids
        assert loaded.tokenize(" <mask>") == theirs.tokenize(" <mask>")


def test_auto_tokenizer_picks_roberta_by_files_and_by_class(tmp_path, ours):
    assert type(AutoTokenizer.from_pretrained(BPE)) is RobertaTokenizer  # vocab.json + merges.txt only
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "RobertaTokenizer"
    for name in ("RobertaTokenizer", "RobertaTokenizerFast"):
        config = json.loads((tmp_path / "tokenizer_config.json").read_text())
        (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": name}))
        loaded = AutoTokenizer.from_pretrained(tmp_path)
        assert type(loaded) is RobertaTokenizer and loaded.get_vocab() == ours.get_vocab()


# ================================================================ strict loading


def _folder(tmp_path, vocab: str | None = None, merges: str | None = None) -> Path:
    (tmp_path / "vocab.json").write_text(vocab if vocab is not None else (BPE / "vocab.json").read_text("utf-8"), "utf-8")
    (tmp_path / "merges.txt").write_text(merges if merges is not None else (BPE / "merges.txt").read_text("utf-8"), "utf-8")
    return tmp_path


@pytest.mark.parametrize("vocab, message", [
    ('{"a": 0, ', "not valid JSON"),
    ('["a", "b"]', "holds an array, expected a JSON object"),
    ("{}", "is empty"),
    ('{"a": 0, "b": "1"}', "the id of 'b' must be an int"),
    ('{"a": 0, "b": 0}', "gives id 0 to both 'a' and 'b'"),
    ('{"a": 0, "b": 2}', r"ids must be 0..1, got 0..2"),
])  # fmt: skip
def test_bad_vocab_json_names_the_file(tmp_path, vocab, message):
    folder = _folder(tmp_path, vocab=vocab, merges="#version: 0.2\n")
    with pytest.raises(ValueError, match=message) as info:
        RobertaTokenizer.from_pretrained(folder)
    assert str(folder / "vocab.json") in str(info.value)


@pytest.mark.parametrize("merges, message", [
    ("a b\nc d\n", "line 1: expected a '#version"),
    ("#version: 0.2\na b\nc d", "does not end with a newline"),
    ("#version: 0.2\na b\nc d e\n", "line 3: expected two tokens"),
    ("#version: 0.2\na b\n\n", "line 3: expected two tokens"),
    ("#version: 0.2\na b\nc d\na b\n", r"repeats the merge 'a b' \(lines 2 and 4\)"),
])  # fmt: skip
def test_bad_merges_txt_names_the_file_and_line(tmp_path, merges, message):
    folder = _folder(tmp_path, merges=merges)
    with pytest.raises(ValueError, match=message) as info:
        RobertaTokenizer.from_pretrained(folder)
    assert str(folder / "merges.txt") in str(info.value)


def test_missing_files_are_named(tmp_path):
    _folder(tmp_path)
    (tmp_path / "merges.txt").unlink()
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        RobertaTokenizer.from_pretrained(tmp_path)


def test_special_token_flags_other_than_robertas_are_refused(tmp_path, ours):
    ours.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"] = {"999": {"content": "<mask>", "lstrip": False, "rstrip": False, "special": True}}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="'<mask>' lstrip=False"):
        RobertaTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("kwargs, message", [
    (dict(add_prefix_space="yes"), "add_prefix_space must be True or False"),
    (dict(errors="no-such-handler"), "errors must name a bytes.decode error handler"),
])  # fmt: skip
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RobertaTokenizer(BPE / "vocab.json", BPE / "merges.txt", **kwargs)


def test_bpe_merges_the_earliest_pair_first_without_overlap(tmp_path):
    # Hand-made merges: ("a", "a") first, so "aaa" is "aa a" (left to right, no overlap), and
    # ("a", "b") before ("b", "c"), so "abc" is "ab c" (not "a bc").
    folder = _folder(tmp_path, vocab=json.dumps({t: i for i, t in enumerate(["<unk>", "a", "b", "c", "aa", "ab", "bc"])}),
                     merges="#version: 0.2\na a\na b\nb c\n")  # fmt: skip
    tok = RobertaTokenizer.from_pretrained(folder)
    assert tok.bpe("aaa") == ("aa", "a") and tok.bpe("abc") == ("ab", "c") and tok.bpe("cb") == ("c", "b")
    assert tok.tokenize("aaa abc") == ["aa", "a", "\u0120", "ab", "c"]  # " abc" is "Ġabc": Ġ has no merge
    assert tok.encode("aaa abc", add_special_tokens=False) == [4, 1, 0, 5, 3]  # "Ġ" is not in this vocabulary: <unk>
