"""RobertaTokenizer: byte-level BPE (GPT-2's algorithm, RoBERTa's special tokens), equal to
transformers 4.57.6's slow RobertaTokenizer.

A byte-level BPE tokenizer never meets an unknown character: it works on the UTF-8 *bytes* of the
text, and all 256 byte values are in the vocabulary. Four steps turn text into tokens:

1. *Pre-tokenization* cuts the text into words with one regular expression (GPT-2's): English
   contractions (``'s 't 're 've 'm 'll 'd``), runs of letters, runs of digits, runs of other
   symbols (each of these three may carry the one space before it), and runs of whitespace. A
   word keeps its leading space, so "Hello world" is ``Hello`` and `` world``; merges never
   cross a word boundary.
2. *Bytes to characters.* Each word's UTF-8 bytes become printable characters through a fixed
   table (``bytes_to_unicode``): the 188 printable Latin-1 bytes stand for themselves, the other
   68 (space, control bytes, ...) are moved to U+0100 and up. The space byte becomes "Ġ" (U+0120),
   so `` world`` is ``Ġworld``; vocabulary files stay readable and no token holds a real space.
3. *BPE.* The word starts as single characters. ``merges.txt`` lists pairs in the order they were
   learned; repeatedly, the adjacent pair learned earliest is joined everywhere in the word (left
   to right, without overlap), until no adjacent pair is in the list. What is left are the tokens.
4. *Lookup* in ``vocab.json`` ({token: id}); a token missing from it gets ``<unk>``'s id.

Special tokens: ``<s>`` (bos and cls), ``</s>`` (eos and sep), ``<unk>``, ``<pad>``, ``<mask>``;
``encode`` gives ``<s> A </s>`` and ``<s> A </s></s> B </s>``, token_type_ids all 0. Special-token
strings in the text are kept whole; ``<mask>`` also swallows the whitespace before it (so
"a <mask>" is ``a <mask>``, the mask standing for a whole word with its space), as in the
reference. ``add_prefix_space=True`` puts a space before text that does not start with one, so the
first word is tokenized like any later word (``Ġhello``, not ``hello``).

Decoding joins the tokens, maps each character back to its byte, and decodes UTF-8 (``errors``:
"replace" turns a broken byte sequence, e.g. half of an emoji, into U+FFFD). Like 4.57.6's slow
RobertaTokenizer, ``clean_up_tokenization_spaces`` defaults to False: decode gives the text back
as it was.

Differences from the reference, on purpose (besides those of the shared base, tokenization.py):

- ``vocab.json`` and ``merges.txt`` are read strictly: a repeated id or merge, ids that are not
  exactly 0..n-1, a merges line that is not two tokens, a missing ``#version`` header or final
  newline raise ValueError naming the file and line (the reference silently skips the first line,
  drops the last one, and keeps the last of repeated entries);
- tokenizer_config.json special tokens whose lstrip / rstrip / single_word flags differ from
  RoBERTa's raise instead of changing the splitting;
- ``add_prefix_space`` is a tokenizer setting (and a ``tokenize`` argument), not a keyword of
  ``__call__`` / ``encode``.
"""

from __future__ import annotations

import codecs
import json
import os

import regex

from .config import read_json, read_text
from .tokenization import (
    TOKENIZER_CONFIG,
    TokenizerInputError,
    _check_dir,
    _check_model_max_length,
    _check_text,
    _Tokenizer,
    _write_atomic,
    _write_tokenizer_config,
)

VOCAB_JSON = "vocab.json"
MERGES_TXT = "merges.txt"
MERGES_HEADER = "#version: 0.2"  # what transformers and the tokenizers library write as line 1

# GPT-2's pre-tokenization pattern (it needs the `regex` package for \p{L} letters and \p{N}
# digits). Tried in order at each position: contractions, letters, digits, other symbols (each of
# the last three with one optional leading space), then whitespace not followed by a non-space
# (so the last space before a word is left to that word), then any other whitespace.
PRETOKENIZE = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode() -> dict[int, str]:
    """The byte -> character table of byte-level BPE: {0: 'Ā', ..., 32: 'Ġ', 33: '!', ..., 255: 'ÿ'}.

    Bytes that are printable Latin-1 characters ("!".."~", "¡".."¬", "®".."ÿ": 188 of them) map to
    that character; the remaining 68, in increasing order, map to U+0100, U+0101, ... Every byte
    gets a distinct printable character, so a token is a readable string with no spaces in it.
    """
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    table, shifted = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def byte_encode(word: str) -> str:
    """A word's UTF-8 bytes as BPE characters: " world" -> "Ġworld", "é" -> "Ã©" (two bytes)."""
    try:
        data = word.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate (e.g. "\ud800") has no UTF-8 form
        raise TokenizerInputError(f"text is not valid Unicode: {exc}") from None
    return "".join(BYTE_TO_CHAR[b] for b in data)


def load_vocab_json(path) -> dict[str, int]:
    """``vocab.json``: a JSON object {token: id} whose ids are exactly 0..n-1, each once.

    Raises FileNotFoundError if the file is missing, ValueError (naming the file) otherwise.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"BPE vocabulary file not found: {path!r}")
    vocab = read_json(path)  # an object, UTF-8: errors name the file
    if not vocab:
        raise ValueError(f"BPE vocabulary file {path} is empty")
    seen: dict[int, str] = {}
    for token, index in vocab.items():
        if not token:
            raise ValueError(f"BPE vocabulary file {path} has an empty token (id {index!r})")
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(f"BPE vocabulary file {path}: the id of {token!r} must be an int, got {index!r}")
        if index in seen:
            raise ValueError(f"BPE vocabulary file {path} gives id {index} to both {seen[index]!r} and {token!r}")
        seen[index] = token
    if min(seen) != 0 or max(seen) != len(seen) - 1:
        # (A gap would make len(tokenizer) disagree with the largest id, and ids >= n mean nothing.)
        raise ValueError(f"BPE vocabulary file {path}: ids must be 0..{len(seen) - 1}, got {min(seen)}..{max(seen)}")
    return vocab


def load_merges_txt(path) -> list[tuple[str, str]]:
    """``merges.txt``: a ``#version`` header line, then one merge per line ("Ġ t": join "Ġ" and "t"),
    earliest-learned first, the file ending with a newline. Returns the pairs in rank order.

    Raises FileNotFoundError if the file is missing, ValueError naming the file and line otherwise.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"BPE merges file not found: {path!r}")
    text = read_text(path)  # "\r\n" is read as "\n"; not UTF-8: an error naming the file
    lines = text.split("\n")
    if not lines[0].startswith("#version"):
        # The reference always skips line 1: a file without the header would silently lose a merge.
        raise ValueError(f"BPE merges file {path}, line 1: expected a '#version: ...' header, got {lines[0]!r:.80}")
    if len(lines) > 1 and lines[-1] != "":
        # The reference always drops the text after the last newline: the last merge would be lost.
        raise ValueError(f"BPE merges file {path} does not end with a newline (line {len(lines)}: {lines[-1]!r:.80})")
    merges, seen = [], {}
    for number, line in enumerate(lines[1:-1], start=2):
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"BPE merges file {path}, line {number}: expected two tokens, got {line!r:.80}")
        pair = (parts[0], parts[1])
        if pair in seen:
            raise ValueError(f"BPE merges file {path} repeats the merge {line!r} (lines {seen[pair]} and {number})")
        seen[pair] = number
        merges.append(pair)
    return merges


class RobertaTokenizer(_Tokenizer):
    """RoBERTa's byte-level BPE tokenizer, equal to transformers 4.57.6's slow RobertaTokenizer.

    vocab_file: ``vocab.json`` ({token: id}); merges_file: ``merges.txt``. errors: how decode treats
    bytes that are not valid UTF-8 (any ``bytes.decode`` error handler; "replace" gives U+FFFD).
    add_prefix_space: tokenize text as if it followed a space. See the module docstring for the steps.
    """

    model_input_names = ("input_ids", "attention_mask")

    def __init__(self, vocab_file, merges_file, errors: str = "replace", bos_token="<s>", eos_token="</s>",
                 sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                 add_prefix_space: bool = False, clean_up_tokenization_spaces: bool = False,
                 model_max_length: int | None = None):  # fmt: skip
        for name, value in (("add_prefix_space", add_prefix_space),
                            ("clean_up_tokenization_spaces", clean_up_tokenization_spaces)):  # fmt: skip
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        try:
            codecs.lookup_error(errors)
        except (LookupError, TypeError):
            raise ValueError(f"errors must name a bytes.decode error handler ('replace', 'strict', ...), got {errors!r}") from None
        self.vocab_file, self.merges_file = os.fspath(vocab_file), os.fspath(merges_file)
        self.encoder = load_vocab_json(self.vocab_file)
        self._tokens = sorted(self.encoder, key=self.encoder.__getitem__)  # id -> token
        self.merges = load_merges_txt(self.merges_file)
        self.bpe_ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self._cache: dict[str, tuple[str, ...]] = {}  # word -> its BPE tokens (text repeats words a lot)
        self.errors = errors
        self.add_prefix_space = add_prefix_space
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.model_max_length = _check_model_max_length(model_max_length)
        specials = dict(bos_token=bos_token, eos_token=eos_token, unk_token=unk_token, sep_token=sep_token,
                        pad_token=pad_token, cls_token=cls_token, mask_token=mask_token)  # fmt: skip
        self._init_specials(specials, self.encoder.__contains__)

    @classmethod
    def from_pretrained(cls, folder, **overrides) -> RobertaTokenizer:
        """Load ``folder/vocab.json`` and ``folder/merges.txt`` with the settings of
        ``folder/tokenizer_config.json`` if present (special tokens, add_prefix_space, errors,
        model_max_length, ...). ``overrides`` are passed to the constructor and win over the file."""
        keys = ("errors", "add_prefix_space", "clean_up_tokenization_spaces", "bos_token", "eos_token",
                "sep_token", "cls_token", "unk_token", "pad_token", "mask_token")  # fmt: skip
        tokenizer = cls._from_folder(folder, (VOCAB_JSON, MERGES_TXT), ("RobertaTokenizer", "RobertaTokenizerFast"),
                                     keys, overrides)  # fmt: skip
        tokenizer._check_token_flags(os.fspath(folder))
        return tokenizer

    def _check_token_flags(self, folder: str) -> None:
        """Saved special tokens must strip whitespace as RoBERTa's do (only <mask> on its left): raise otherwise."""
        entries = []
        config = os.path.join(folder, TOKENIZER_CONFIG)
        if os.path.isfile(config):
            entries += [(config, e) for e in (read_json(config).get("added_tokens_decoder") or {}).values()]
        special_map = os.path.join(folder, "special_tokens_map.json")
        if os.path.isfile(special_map):
            entries += [(special_map, e) for e in read_json(special_map).values()]
        for path, entry in entries:
            if not isinstance(entry, dict):
                continue
            token = entry.get("content")
            want = {"lstrip": token == self.mask_token, "rstrip": False, "single_word": False}
            for flag, value in want.items():
                if bool(entry.get(flag, value)) != value:
                    raise ValueError(
                        f"{path} gives {token!r} {flag}={entry[flag]}; minibertgen's RobertaTokenizer implements "
                        "RoBERTa's splitting only (lstrip on the mask token, nothing else)"
                    )

    # ----- vocabulary -----
    @property
    def vocab_size(self) -> int:
        """Number of entries of vocab.json (without appended special tokens; ``len(self)`` has them)."""
        return len(self.encoder)

    def _base_token_to_id(self, token: str) -> int:
        return self.encoder[token] if token in self.encoder else self.unk_token_id

    def _base_id_to_token(self, index: int) -> str:
        return self._tokens[index]

    # ----- text -> tokens -----
    def tokenize(self, text: str, add_prefix_space: bool | None = None) -> list[str]:
        """Text -> BPE tokens. Special-token strings stay whole; "<mask>" drops the whitespace before it.

        add_prefix_space (default: the tokenizer's setting) puts a space before a text that does not
        start with whitespace, before the special tokens are cut out (as the reference does).
        """
        _check_text(text)
        if add_prefix_space is None:
            add_prefix_space = self.add_prefix_space
        if add_prefix_space and text and not text[0].isspace():
            text = " " + text
        chunks = self._split_on_specials(text)
        for i, (chunk, is_special) in enumerate(chunks):
            # The mask token stands for a word *with* its leading space, so that space goes with it.
            if is_special and chunk == self.mask_token and i > 0 and not chunks[i - 1][1]:
                chunks[i - 1] = (chunks[i - 1][0].rstrip(), False)
        tokens = []
        for chunk, is_special in chunks:
            if is_special:
                tokens.append(chunk)
            elif chunk:  # (a chunk of only spaces before <mask> is now empty)
                tokens.extend(self._tokenize_chunk(chunk))
        return tokens

    def _tokenize_chunk(self, text: str) -> list[str]:
        tokens = []
        for word in PRETOKENIZE.findall(text):  # step 1: words, each with its leading space
            tokens.extend(self.bpe(byte_encode(word)))  # steps 2 and 3
        return tokens

    def bpe(self, word: str) -> tuple[str, ...]:
        """One byte-encoded word -> its BPE tokens: "Ġlower" -> ("Ġlow", "er") if those merges exist.

        Start from single characters; while some adjacent pair is in merges.txt, take the pair with
        the lowest rank (learned earliest) and join every occurrence of it, left to right.
        """
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        parts = list(word)
        while len(parts) > 1:
            ranks = [self.bpe_ranks.get(pair) for pair in zip(parts, parts[1:])]
            known = [r for r in ranks if r is not None]
            if not known:
                break  # no adjacent pair was ever merged in training: done
            first, second = self.merges[min(known)]
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)  # "a a a" with merge (a, a) -> "aa a": no overlap
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._cache[word] = result = tuple(parts)
        return result

    # ----- special tokens around ids -----
    def _add_special_tokens(self, a, b):
        cls, sep = [self.cls_token_id], [self.sep_token_id]
        if b is None:
            ids = cls + a + sep  # <s> A </s>
        else:
            ids = cls + a + sep + sep + b + sep  # <s> A </s></s> B </s>
        return ids, [0] * len(ids)  # RoBERTa has no token types: all 0, pairs too

    # ----- ids -> text -----
    def _tokens_to_string(self, tokens: list[str]) -> str:
        # Every character of a token stands for one byte; the bytes are UTF-8 text again.
        chars = "".join(tokens)
        unknown = sorted({c for c in chars if c not in CHAR_TO_BYTE})
        if unknown:
            raise ValueError(f"cannot decode: the characters {unknown[:5]} are not byte-level BPE characters")
        return bytes(CHAR_TO_BYTE[c] for c in chars).decode("utf-8", errors=self.errors)

    # ----- saving -----
    def save_vocabulary(self, save_directory, filename_prefix: str | None = None) -> tuple[str, str]:
        """Write ``vocab.json`` (in id order) and ``merges.txt`` (with its header, rank order) into an
        existing directory, or ``{prefix}-vocab.json`` / ``{prefix}-merges.txt``. Returns both paths."""
        folder = _check_dir(save_directory)
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        vocab_path, merges_path = os.path.join(folder, prefix + VOCAB_JSON), os.path.join(folder, prefix + MERGES_TXT)
        vocab = {token: self.encoder[token] for token in self._tokens}
        _write_atomic(vocab_path, (json.dumps(vocab, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        merges = "".join(f"{a} {b}\n" for a, b in self.merges)
        _write_atomic(merges_path, f"{MERGES_HEADER}\n{merges}".encode("utf-8"))
        return vocab_path, merges_path

    def save_pretrained(self, save_directory) -> tuple[str, str, str]:
        """Write ``vocab.json``, ``merges.txt`` and ``tokenizer_config.json`` (creating the directory);
        transformers' ``RobertaTokenizer.from_pretrained`` and ours both load it. Returns the three paths."""
        os.makedirs(save_directory, exist_ok=True)
        vocab_path, merges_path = self.save_vocabulary(save_directory)
        config = {
            "tokenizer_class": "RobertaTokenizer",
            "errors": self.errors,
            "add_prefix_space": self.add_prefix_space,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            **self._specials,
        }
        config_path = _write_tokenizer_config(save_directory, config, self.model_max_length, self.padding_side)
        return config_path, vocab_path, merges_path
