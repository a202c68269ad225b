"""Tokenizers: text <-> token ids, equal to transformers 4.57.6's slow (pure Python) tokenizers.

A model only sees integers. A tokenizer cuts text into *pieces* that are in a fixed vocabulary and
gives each piece its row number in the embedding matrix. Two algorithms live here:

**BertGenerationTokenizer: sentencepiece (unigram).** The vocabulary is a ``.model`` file trained by
Google's sentencepiece library, which does the work: it normalizes the text (NFKC, runs of spaces
collapsed), marks every word start with "▁" (U+2581) instead of a space, and picks the split of each
word into vocabulary pieces with the highest total probability under a unigram language model
(Viterbi search). So "This is a test" becomes ``▁This ▁is ▁a ▁t est``. Decoding joins the pieces and
turns "▁" back into spaces. Five special tokens (``<s> </s> <unk> <pad> <::::>``) are appended
after the sentencepiece vocabulary when the model does not already have them. BertGeneration adds
*no* special tokens around a sequence: ``encode(a, b) == ids(a) + ids(b)``.

**BertTokenizer: WordPiece** (from ``vocab.txt``, one piece per line, the line number is the id).
Two stages:

1. *Basic tokenization* turns text into words: drop control characters and turn every kind of
   whitespace into a space; put spaces around CJK ideographs (Chinese has no spaces between
   words, so each character is a word); Unicode NFC; split on whitespace; for uncased
   vocabularies lower-case and strip accents (NFD, then drop the combining marks, so "é" -> "e");
   finally make every punctuation character a word of its own.
2. *WordPiece* splits each word greedily, longest match first: take the longest prefix that is in
   the vocabulary, then the longest continuation that is in the vocabulary *with a "##" prefix*
   (the "##" says "glued to the previous piece"), and so on. With the vocabulary of transformers'
   BERT tests, "unaffable" -> ``un ##aff ##able`` (a real vocabulary may cut it elsewhere). If
   some position has no match, or the word is longer than 100 characters, the whole word becomes
   ``[UNK]``. Decoding joins the pieces with spaces and deletes " ##".

Both tokenizers, and RobertaTokenizer (byte-level BPE, in tokenization_roberta.py), share the outer
steps (transformers' ``PreTrainedTokenizer``):

1. special-token strings inside the text (``[CLS]``, ``<s>``, ...) are cut out first and kept whole;
2. every other stretch of text goes through the algorithm above, giving pieces;
3. pieces -> ids by vocabulary lookup (an unknown piece gets the unknown token's id);
4. the tokenizer's special tokens go around the ids (BERT: ``[CLS] A [SEP]`` and
   ``[CLS] A [SEP] B [SEP]``; BertGeneration: nothing);
5. in a batch: truncation to ``max_length``, then padding on the right with the pad id, and an
   ``attention_mask`` that is 1 on real tokens and 0 on padding.

Differences from the reference, on purpose (DESIGN.md §1, §9: clear errors, never silent):

- token ids outside ``[0, len(tokenizer))`` raise ValueError in ``decode`` / ``convert_ids_to_tokens``
  (the reference's BertTokenizer turns them into "[UNK]"; its sentencepiece tokenizer raises IndexError);
- text that is not a ``str`` raises ``TokenizerInputError`` (a TypeError and a ValueError);
- ``truncation=True`` or ``padding="max_length"`` with no ``max_length`` (and no ``model_max_length``)
  raises; the reference warns and does nothing. ``max_length`` given while neither uses it raises;
  the reference then truncates anyway, with a warning. ``truncation`` defaults to False here;
- truncation that would have to delete the whole text (``max_length`` too small for the special
  tokens) raises; the reference logs an error and returns the sequence untruncated, longer than
  ``max_length``;
- a ``vocab.txt`` that repeats a token raises (the reference keeps the last line's id and leaves a
  hole in the id range);
- the truncation strategies are "longest_first" (``truncation=True``), "only_first" and "only_second"
  (cutting from the right); "only_second" on a single text raises (the reference silently leaves it
  whole); ``max_length`` must be at least 1 (the reference ignores ``max_length=0``);
- an empty batch (``tok([])``) gives empty lists; the reference raises;
- ``from_pretrained`` refuses tokenizer_config.json settings it does not implement (sp_model_kwargs,
  additional special tokens, added tokens beyond the vocabulary) instead of ignoring them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import unicodedata

import numpy as np
import sentencepiece as spm

from .backend import to_numpy
from .config import read_json, read_text

# The order in which transformers lists special tokens (SpecialTokensMixin). It matters: special
# tokens missing from the vocabulary get new ids in this order (fixture: <::::> 1000, <pad> 1001).
SPECIAL_TOKEN_ROLES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# WordPiece gives up on longer words (a greedy search over a 100-char word is already 5,000 lookups).
MAX_INPUT_CHARS_PER_WORD = 100
# A "model_max_length" this large is transformers' placeholder for "no limit" (int(1e30)).
NO_LIMIT = int(1e30)
# What BertTokenizer.decode does to spaces by default (clean_up_tokenization_spaces=True), in order.
CLEANUP_REPLACEMENTS = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
    (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)  # fmt: skip
PADDING = {True: "longest", "longest": "longest", False: None, "do_not_pad": None, "max_length": "max_length"}
# truncation argument -> strategy name (None: do not truncate).
TRUNCATION = {True: "longest_first", "longest_first": "longest_first", "only_first": "only_first",
              "only_second": "only_second", False: None, "do_not_truncate": None}  # fmt: skip


class TokenizerInputError(TypeError, ValueError):
    """Text or ids of the wrong type (e.g. bytes instead of str). Both a TypeError and a ValueError."""


# ================================================================ shared helpers


def _check_text(text, name: str = "text") -> str:
    if not isinstance(text, str):
        raise TokenizerInputError(f"{name} must be a str, got {type(text).__name__}: {text!r:.80}")
    return text


def _as_id_list(ids, size: int) -> list[int]:
    """Token ids (a list/tuple of ints or a 1-D integer array of either backend) -> list[int] in [0, size)."""
    if hasattr(ids, "shape"):  # numpy or cupy array: one host transfer, not one per element
        arr = np.asarray(to_numpy(ids))
        if arr.ndim != 1:
            raise TokenizerInputError(
                f"expected a 1-D sequence of token ids, got an array of shape {arr.shape} (use batch_decode for 2-D)"
            )
        if arr.dtype.kind not in "iu":
            raise TokenizerInputError(f"token ids must be integers, got an array of dtype {arr.dtype}")
        ids = arr.tolist()
    elif not isinstance(ids, (list, tuple)):
        raise TokenizerInputError(
            f"token ids must be a list of ints or a 1-D array, got {type(ids).__name__}: {ids!r:.80}"
        )
    out = []
    for i in ids:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TokenizerInputError(f"token ids must be integers, got {type(i).__name__}: {i!r:.80}")
        if not 0 <= i < size:
            raise ValueError(f"token id {int(i)} is outside the vocabulary [0, {size})")
        out.append(int(i))
    return out


def _is_int_id(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _write_atomic(path: str, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _token_content(value, name: str):
    """A special token as saved by transformers: a string, or {"content": string, ...}."""
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{name} must be a string, got {value!r:.80}")


def _check_dir(save_directory) -> str:
    folder = os.fspath(save_directory)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save_directory {folder!r} is not an existing directory")
    return folder


def _special_token_properties(role: str):
    """(token property, id property) for one special-token role: e.g. ``pad_token`` and ``pad_token_id``."""

    def token(self):
        return self._specials.get(role)

    def token_id(self):
        value = self._specials.get(role)
        return None if value is None else self._token_to_id(value)

    return (property(token, doc=f"The {role} string (None if this tokenizer has none)."),
            property(token_id, doc=f"The id of the {role} (None if this tokenizer has none)."))  # fmt: skip


# ================================================================ what a tokenizer call returns

TENSOR_TYPES = (None, "np", "pt")


class BatchEncoding(dict):
    """A tokenizer call's result: a dict {"input_ids": ..., "attention_mask": ...} whose keys are
    also attributes (``enc.input_ids``), as transformers' BatchEncoding. ``model(**enc)`` passes it on."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"this BatchEncoding has no {name!r}; it holds {sorted(self)}") from None

    def __dir__(self):
        return [*super().__dir__(), *self]


def _as_tensor(rows: list[list[int]], name: str, kind: str):
    """Equal-length rows -> a (B, L) int64 array ("np") or torch tensor ("pt")."""
    lengths = sorted({len(r) for r in rows})
    if len(lengths) > 1:
        raise ValueError(
            f"return_tensors={kind!r} needs rows of one length, but {name} has lengths {lengths[0]}..{lengths[-1]}:"
            " pass padding=True (or truncation=True with max_length)"
        )
    array = np.array(rows, dtype=np.int64).reshape(len(rows), lengths[0] if lengths else 0)
    if kind == "np":
        return array
    try:
        import torch
    except ImportError:
        raise ValueError("return_tensors='pt' needs torch, which is not installed; use return_tensors='np'") from None
    return torch.from_numpy(array)


# ================================================================ the shared outer steps


class _Tokenizer:
    """What both tokenizers do around their own algorithm: specials, ids, truncation, padding.

    A subclass sets ``self._specials`` ({role: token string}), ``self._added`` ({token: id} for the
    specials that the base vocabulary lacks) and defines ``vocab_size``, ``_tokenize_chunk``,
    ``_base_token_to_id``, ``_base_id_to_token``, ``_tokens_to_string``, ``_add_special_tokens`` and
    ``model_input_names``.
    """

    model_input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    clean_up_tokenization_spaces = False
    model_max_length: int | None = None
    padding_side = "right"  # where __call__ pads; "left" as decoder-only generation wants
    bos_token, bos_token_id = _special_token_properties("bos_token")
    eos_token, eos_token_id = _special_token_properties("eos_token")
    unk_token, unk_token_id = _special_token_properties("unk_token")
    sep_token, sep_token_id = _special_token_properties("sep_token")
    pad_token, pad_token_id = _special_token_properties("pad_token")
    cls_token, cls_token_id = _special_token_properties("cls_token")
    mask_token, mask_token_id = _special_token_properties("mask_token")

    @classmethod
    def _from_folder(cls, folder, vocab_name: str | tuple, class_names: tuple, keys: tuple, overrides: dict):
        """``folder/vocab_name`` (one name, or a tuple of the files the constructor takes first) with the
        settings ``keys`` of ``folder/tokenizer_config.json`` (``overrides`` win), then a check of its
        added tokens: every tokenizer's from_pretrained."""
        folder = os.fspath(folder)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"tokenizer folder not found (not a directory): {folder!r}")
        kwargs = _read_tokenizer_config(folder, class_names, keys)
        kwargs.update(overrides)
        padding_side = kwargs.pop("padding_side", "right")  # an attribute, not a constructor argument
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r} (in {folder})")
        names = (vocab_name,) if isinstance(vocab_name, str) else vocab_name
        tokenizer = cls(*(os.path.join(folder, name) for name in names), **kwargs)
        tokenizer.padding_side = padding_side
        _check_added_tokens(folder, tokenizer)
        return tokenizer

    def _init_specials(self, specials: dict, base_has) -> None:
        """Record the special tokens; append those missing from the base vocabulary (in role order)."""
        self._specials = {}
        for role in SPECIAL_TOKEN_ROLES:
            token = specials.get(role)
            if token is None:
                continue
            if not isinstance(token, str) or not token:
                raise ValueError(f"{role} must be a non-empty str, got {token!r}")
            self._specials[role] = token
        self._added: dict[str, int] = {}
        for token in self.all_special_tokens:
            if not base_has(token):
                self._added[token] = self.vocab_size + len(self._added)
        self._added_by_id = {i: t for t, i in self._added.items()}
        # Leftmost match; at one position the longest special wins (alternatives sorted longest first).
        by_length = sorted(self.all_special_tokens, key=len, reverse=True)
        self._special_pattern = re.compile("|".join(re.escape(t) for t in by_length))

    # ----- vocabulary -----
    @property
    def all_special_tokens(self) -> list[str]:
        """The special-token strings, in transformers' order (bos, eos, unk, sep, pad, cls, mask), no repeats."""
        return list(dict.fromkeys(self._specials.values()))

    @property
    def all_special_ids(self) -> list[int]:
        """The ids of ``all_special_tokens``, in the same order."""
        return [self._token_to_id(t) for t in self.all_special_tokens]

    def __len__(self) -> int:
        """Size of the whole vocabulary: the base vocabulary plus the appended special tokens."""
        return self.vocab_size + len(self._added)

    def get_vocab(self) -> dict[str, int]:
        """{token: id} for every id in ``[0, len(self))``."""
        vocab = {self._base_id_to_token(i): i for i in range(self.vocab_size)}
        vocab.update(self._added)
        return vocab

    def _token_to_id(self, token: str) -> int:
        return self._added[token] if token in self._added else self._base_token_to_id(token)

    def _id_to_token(self, index: int) -> str:
        return self._added_by_id[index] if index in self._added_by_id else self._base_id_to_token(index)

    def convert_tokens_to_ids(self, tokens):
        """One token (str) -> its id, or a list of tokens -> a list of ids. Unknown tokens get the unknown id."""
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        if not isinstance(tokens, (list, tuple)):
            raise TokenizerInputError(f"tokens must be a str or a list of str, got {type(tokens).__name__}")
        return [self._token_to_id(_check_text(t, "each token")) for t in tokens]

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        """One id -> its token (str), or a sequence of ids -> a list of tokens.

        ids: an int, a list/tuple of ints or a 1-D integer array, each in ``[0, len(self))`` (else ValueError).
        skip_special_tokens: drop the special tokens (``all_special_ids``) from a sequence.
        """
        if _is_int_id(ids):
            return self._id_to_token(_as_id_list([ids], len(self))[0])
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._id_to_token(i) for i in _as_id_list(ids, len(self)) if i not in special]

    # ----- text -> tokens -> ids -----
    def _split_on_specials(self, text: str) -> list[tuple[str, bool]]:
        """[(chunk, is_special)]: the text cut around every special-token string, empty chunks dropped."""
        parts, start = [], 0
        for m in self._special_pattern.finditer(text):
            if m.start() > start:
                parts.append((text[start : m.start()], False))
            parts.append((m.group(), True))
            start = m.end()
        if start < len(text):
            parts.append((text[start:], False))
        return parts

    def tokenize(self, text: str) -> list[str]:
        """Text -> tokens (vocabulary pieces). Special-token strings in the text stay whole. "" -> []."""
        tokens = []
        for chunk, is_special in self._split_on_specials(_check_text(text)):
            tokens.extend([chunk] if is_special else self._tokenize_chunk(chunk))
        return tokens

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """How many special tokens ``encode`` puts around one sequence (pair=False) or two (pair=True)."""
        return len(self._add_special_tokens([], [] if pair else None)[0])

    def _check_options(self, padding, truncation, max_length):
        """Normalize (padding, truncation, max_length); raise ValueError naming any value that cannot work."""
        if not isinstance(padding, (bool, str)) or padding not in PADDING:
            raise ValueError(
                f"padding must be one of True, False, 'longest', 'max_length', 'do_not_pad'; got {padding!r}"
            )
        if not isinstance(truncation, (bool, str)) or truncation not in TRUNCATION:
            raise ValueError(
                "truncation must be True, False, 'longest_first', 'only_first', 'only_second' or 'do_not_truncate';"
                f" got {truncation!r}"
            )
        padding, truncation = PADDING[padding], TRUNCATION[truncation]
        # (0 is refused: the reference reads max_length=0 as "no limit" and does not truncate.)
        if max_length is not None and (not _is_int_id(max_length) or max_length < 1):
            raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
        if max_length is None and (truncation or padding == "max_length"):
            max_length = self.model_max_length
            if max_length is None:
                what = "truncation=True" if truncation else "padding='max_length'"
                raise ValueError(f"{what} needs max_length (this tokenizer has no model_max_length)")
        elif max_length is not None and not truncation and padding != "max_length":
            raise ValueError(
                f"max_length={max_length} has no effect without truncation=True or padding='max_length'"
            )
        return padding, truncation, max_length

    def _truncate(self, a: list[int], b: list[int] | None, n_special: int, max_length: int,
                  strategy: str = "longest_first"):  # fmt: skip
        """Cut ids from the right so that len(a) + len(b) + n_special <= max_length.

        strategy: "longest_first" (from the longer of a pair first, see below), "only_first" (all
        from ``a``) or "only_second" (all from ``b``, which must exist).
        """
        excess = len(a) + len(b or []) + n_special - max_length
        if strategy == "only_second" and b is None:
            raise ValueError("truncation='only_second' needs a pair of texts (text_pair); this is a single text")
        if excess <= 0:
            return a, b
        if strategy == "only_second":
            if excess >= len(b):
                raise ValueError(
                    f"max_length={max_length} leaves no room for the second text: its {len(b)} tokens would need"
                    f" {excess} removed (try truncation='longest_first' or 'only_first')"
                )
            return a, b[:-excess]
        if b is None or strategy == "only_first":
            if excess >= len(a):
                raise ValueError(
                    f"max_length={max_length} leaves no room for the text: its {len(a)} tokens plus {n_special}"
                    f" special tokens would need {excess} tokens removed"
                )
            return a[:-excess], b
        if strategy != "longest_first":
            raise ValueError(f"unknown truncation strategy {strategy!r}")
        if b is None:
            if excess >= len(a):
                raise ValueError(
                    f"max_length={max_length} leaves no room for the text: its {len(a)} tokens plus {n_special}"
                    f" special tokens would need {excess} tokens removed"
                )
            return a[:-excess], None
        if excess > len(a) + len(b):
            raise ValueError(f"max_length={max_length} is shorter than the {n_special} special tokens of a pair")
        # longest_first: first shorten the longer one down to the other's length, then take the rest
        # from both, half each (the odd one from the second sequence), as the reference does.
        first = min(abs(len(a) - len(b)), excess)
        rest = excess - first
        if len(a) > len(b):
            cut_a, cut_b = first + rest // 2, rest - rest // 2
        else:
            cut_a, cut_b = rest // 2, first + rest - rest // 2
        return a[: len(a) - cut_a], b[: len(b) - cut_b]

    def _encode_one(self, text, text_pair, add_special_tokens, truncation, max_length):
        """(ids, token_type_ids, special_tokens_mask) of one text or pair, truncated, with special tokens."""
        a = self.convert_tokens_to_ids(self.tokenize(_check_text(text)))
        b = None
        if text_pair is not None:
            b = self.convert_tokens_to_ids(self.tokenize(_check_text(text_pair, "text_pair")))
        if truncation:  # None, or the strategy's name
            n_special = self.num_special_tokens_to_add(pair=b is not None) if add_special_tokens else 0
            a, b = self._truncate(a, b, n_special, max_length, truncation)
        if not add_special_tokens:
            n = len(a) + len(b or [])
            return a + (b or []), [0] * n, [0] * n
        ids, types = self._add_special_tokens(a, b)
        return ids, types, self.get_special_tokens_mask(a, b)

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True,
               truncation=False, max_length: int | None = None) -> list[int]:  # fmt: skip
        """Text (and optionally a second text) -> token ids, with this tokenizer's special tokens.

        truncation=True (or "longest_first") cuts tokens from the right (from the longer text of a pair
        first) so that the result has at most ``max_length`` ids; "only_first" / "only_second" cut only
        from the first / the second text. "" -> [] plus any special tokens.
        """
        _, truncation, max_length = self._check_options(False, truncation, max_length)
        return self._encode_one(text, text_pair, add_special_tokens, truncation, max_length)[0]

    def __call__(self, text, text_pair=None, add_special_tokens: bool = True, padding=False, truncation=False,
                 max_length: int | None = None, *, return_tensors: str | None = None,
                 return_attention_mask: bool | None = None, return_token_type_ids: bool | None = None,
                 return_special_tokens_mask: bool = False, padding_side: str | None = None,
                 pad_to_multiple_of: int | None = None) -> BatchEncoding:  # fmt: skip
        """Encode a batch (a list of str; ``text_pair`` a list of the same length) or one str.

        padding: False (none), True / "longest" (to the longest in the batch), "max_length";
        ``pad_to_multiple_of`` rounds the padded length up; ``padding_side`` "right" (default: the
        tokenizer's ``padding_side``) or "left" (as decoder-only generation wants).
        truncation: False, True / "longest_first" (cut from the right to ``max_length``, from the longer
        text of a pair first), "only_first" or "only_second" (cut only from that text of a pair).
        Returns a BatchEncoding (a dict with attribute access: ``enc.input_ids``) holding "input_ids",
        ["token_type_ids",] "attention_mask" as ``model_input_names`` says (``return_attention_mask`` /
        ``return_token_type_ids`` force them on or off; ``return_special_tokens_mask`` adds
        "special_tokens_mask", 1 on the special tokens added around the text). Values are lists of id
        lists (for one str, one flat list), or with ``return_tensors="np"`` (B, L) int64 arrays
        (one str gives B = 1), with ``"pt"`` torch tensors. attention_mask is 1 on tokens, 0 on padding.
        """
        padding, truncation, max_length = self._check_options(padding, truncation, max_length)
        side = self.padding_side if padding_side is None else padding_side
        if side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {side!r}")
        if pad_to_multiple_of is not None:
            if not _is_int_id(pad_to_multiple_of) or pad_to_multiple_of < 1:
                raise ValueError(f"pad_to_multiple_of must be a positive int or None, got {pad_to_multiple_of!r}")
            if padding is None:
                raise ValueError(f"pad_to_multiple_of={pad_to_multiple_of} has no effect without padding")
        if return_tensors not in TENSOR_TYPES:
            raise ValueError(f"return_tensors must be None, 'np' or 'pt', got {return_tensors!r}")
        single = isinstance(text, str)
        texts = [text] if single else text
        if not isinstance(texts, (list, tuple)):
            raise TokenizerInputError(f"text must be a str or a list of str, got {type(text).__name__}: {text!r:.80}")
        if text_pair is None:
            pairs = [None] * len(texts)
        else:
            pairs = [text_pair] if single else text_pair
            if not isinstance(pairs, (list, tuple)) or len(pairs) != len(texts):
                raise TokenizerInputError(
                    f"text_pair must match text: a str for a str, a list of {len(texts)} str for a list;"
                    f" got {text_pair!r:.80}"
                )
        encoded = [self._encode_one(t, p, add_special_tokens, truncation, max_length) for t, p in zip(texts, pairs)]
        width = 0
        if padding == "longest":
            width = max((len(ids) for ids, _, _ in encoded), default=0)
        elif padding == "max_length":
            width = max_length  # longer (untruncated) rows stay longer, as in the reference
        if pad_to_multiple_of is not None:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of  # round up
        if self.pad_token_id is None and any(len(ids) < width for ids, _, _ in encoded):
            raise ValueError("padding needs a pad token, and this tokenizer has none (set pad_token)")
        # None: as model_input_names says; True / False: on or off whatever it says.
        asked = {"token_type_ids": return_token_type_ids, "attention_mask": return_attention_mask,
                 "special_tokens_mask": return_special_tokens_mask or None}  # fmt: skip
        names = [n for n in self.model_input_names if asked.get(n) is not False]
        names += [n for n, on in asked.items() if on and n not in names]
        columns = {name: [] for name in names}
        for ids, types, special in encoded:
            fill = max(0, width - len(ids))
            row = {"input_ids": (ids, self.pad_token_id), "token_type_ids": (types, 0),
                   "attention_mask": ([1] * len(ids), 0), "special_tokens_mask": (special, 1)}  # fmt: skip
            for name in names:
                values, pad = row[name]
                columns[name].append(values + [pad] * fill if side == "right" else [pad] * fill + values)
        if return_tensors is not None:
            return BatchEncoding({name: _as_tensor(rows, name, return_tensors) for name, rows in columns.items()})
        return BatchEncoding({name: rows[0] if single else rows for name, rows in columns.items()})

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens: bool = False):
        """1 where ``encode`` puts a special token around ``token_ids_0`` (and ``token_ids_1``), 0 on the text.

        already_has_special_tokens=True: the ids already carry them; mark every id that is a special
        token's id (``token_ids_1`` must then be None).
        """
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError("already_has_special_tokens=True takes one sequence of ids (token_ids_1=None)")
            special = set(self.all_special_ids)
            return [1 if i in special else 0 for i in _as_id_list(token_ids_0, len(self))]
        a = _as_id_list(token_ids_0, len(self))
        b = None if token_ids_1 is None else _as_id_list(token_ids_1, len(self))
        # The same layout over placeholder ids (-1, never a real id) shows where the special tokens go.
        placeholders, _ = self._add_special_tokens([-1] * len(a), None if b is None else [-1] * len(b))
        return [0 if i == -1 else 1 for i in placeholders]

    # ----- ids -> text -----
    def decode(self, ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None) -> str:
        """Token ids -> text. ids: an int, a list of ints or a 1-D integer array, each in ``[0, len(self))``.

        skip_special_tokens drops every special token first. clean_up_tokenization_spaces (default: the
        tokenizer's setting) removes spaces before punctuation and contractions (" ." -> ".", " n't" -> "n't").
        """
        if _is_int_id(ids):
            ids = [ids]  # one id decodes like a list of one (so skip_special_tokens applies to it too)
        text = self._tokens_to_string(self.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens))
        if self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces:
            for old, new in CLEANUP_REPLACEMENTS:
                text = text.replace(old, new)
        return text

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None) -> list[str]:  # fmt: skip
        """``decode`` each row of a list of id lists or of a 2-D integer array (e.g. generate's sequences)."""
        if hasattr(sequences, "shape"):
            sequences = np.asarray(to_numpy(sequences))
            if sequences.ndim != 2:
                raise TokenizerInputError(f"batch_decode expects a 2-D array of ids, got shape {sequences.shape}")
        return [self.decode(s, skip_special_tokens, clean_up_tokenization_spaces) for s in sequences]


# ================================================================ BertGenerationTokenizer (sentencepiece)

SPIECE_FILE = "spiece.model"  # the name transformers gives the sentencepiece file in a tokenizer folder


class BertGenerationTokenizer(_Tokenizer):
    """The sentencepiece tokenizer of BertGeneration checkpoints (transformers 4.57.6, slow).

    vocab_file: a sentencepiece ``.model`` file. Special tokens ``<s>`` (bos), ``</s>`` (eos),
    ``<unk>``, ``<pad>``, ``<::::>`` (sep) keep their ids where the model has them; the others are
    appended after its ``vocab_size`` pieces. No lower-casing. ``encode`` adds no special tokens.
    """

    model_input_names = ("input_ids", "attention_mask")

    def __init__(self, vocab_file, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                 sep_token="<::::>", model_max_length: int | None = None,
                 clean_up_tokenization_spaces: bool = False):  # fmt: skip
        if not isinstance(clean_up_tokenization_spaces, bool):
            raise ValueError(
                f"clean_up_tokenization_spaces must be True or False, got {clean_up_tokenization_spaces!r}"
            )
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        path = os.fspath(vocab_file)
        if os.path.isdir(path):
            raise FileNotFoundError(
                f"vocab_file {path!r} is a directory; pass the sentencepiece .model file itself"
                f" (BertGenerationTokenizer.from_pretrained(folder) looks for folder/{SPIECE_FILE})"
            )
        if not os.path.isfile(path):
            raise FileNotFoundError(f"sentencepiece model file not found: {path!r}")
        with open(path, "rb") as f:
            self._proto = f.read()
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self._proto)
        except RuntimeError as exc:
            raise ValueError(f"{path!r} is not a sentencepiece model file ({exc})") from exc
        self.vocab_file = path
        self.model_max_length = _check_model_max_length(model_max_length)
        pieces = {self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())}
        specials = dict(bos_token=bos_token, eos_token=eos_token, unk_token=unk_token, pad_token=pad_token,
                        sep_token=sep_token)  # fmt: skip
        self._init_specials(specials, pieces.__contains__)

    @classmethod
    def from_pretrained(cls, folder, **overrides) -> BertGenerationTokenizer:
        """Load ``folder/spiece.model`` and, if present, the special tokens and model_max_length of
        ``folder/tokenizer_config.json`` (as transformers' save_pretrained writes them). ``overrides``
        are passed to the constructor and win over the file."""
        keys = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "clean_up_tokenization_spaces")
        return cls._from_folder(folder, SPIECE_FILE, ("BertGenerationTokenizer", "BertGenerationTokenizerFast"),
                                keys, overrides)  # fmt: skip

    @property
    def vocab_size(self) -> int:
        """Number of sentencepiece pieces (without the appended special tokens; ``len(self)`` has them)."""
        return self._sp.get_piece_size()

    def _tokenize_chunk(self, text: str) -> list[str]:
        # sentencepiece normalizes (NFKC, collapses whitespace) and segments in one call.
        return self._sp.encode(text, out_type=str)

    def _base_token_to_id(self, token: str) -> int:
        return self._sp.piece_to_id(token)  # sentencepiece's own unknown id for pieces it lacks

    def _base_id_to_token(self, index: int) -> str:
        return self._sp.id_to_piece(index)

    def _add_special_tokens(self, a, b):
        # BertGeneration puts nothing around its sequences: a pair is simply concatenated.
        ids = a + (b or [])
        return ids, [0] * len(a) + [1] * len(b or [])

    def _tokens_to_string(self, tokens: list[str]) -> str:
        # sentencepiece decodes each run of ordinary pieces (it maps "▁" to a space and drops the run's
        # leading space); special tokens are pasted in between as they are, with no spaces around them.
        specials = set(self.all_special_tokens)
        out, run = [], []
        for token in tokens:
            if token in specials:
                out += [self._sp.decode(run), token]
                run = []
            else:
                run.append(token)
        out.append(self._sp.decode(run))
        return "".join(out).strip()

    def save_vocabulary(self, save_directory, filename_prefix: str | None = None) -> tuple[str]:
        """Copy the sentencepiece model into an existing directory as ``spiece.model`` (or
        ``{prefix}-spiece.model``). Returns ``(path,)``."""
        folder = _check_dir(save_directory)
        out = os.path.join(folder, (f"{filename_prefix}-" if filename_prefix else "") + SPIECE_FILE)
        if os.path.abspath(out) != os.path.abspath(self.vocab_file):
            if os.path.isfile(self.vocab_file):
                shutil.copyfile(self.vocab_file, out)
            else:  # the original file is gone: write the bytes read at load time
                _write_atomic(out, self._proto)
        return (out,)

    def save_pretrained(self, save_directory) -> tuple[str, str]:
        """Write ``spiece.model`` and ``tokenizer_config.json`` (creating the directory); transformers'
        ``BertGenerationTokenizer.from_pretrained`` and ours both load it. Returns the two paths."""
        os.makedirs(save_directory, exist_ok=True)
        (vocab_path,) = self.save_vocabulary(save_directory)
        config = {"tokenizer_class": "BertGenerationTokenizer", **self._specials,
                  "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces}  # fmt: skip
        return _write_tokenizer_config(save_directory, config, self.model_max_length, self.padding_side), vocab_path


# ================================================================ BertTokenizer (WordPiece)

VOCAB_FILE = "vocab.txt"
# CJK Unified Ideographs and their extensions. Not Hiragana, Katakana or Hangul: those scripts put
# spaces between words, so they are tokenized like any other letters.
CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)  # fmt: skip


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    # Tab, newline and carriage return are category Cc but count as whitespace, not control.
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def _is_punctuation(ch: str) -> bool:
    # Every printable ASCII character that is not a letter or digit counts ("$", "^", "`" are not
    # in Unicode's P* categories), plus every Unicode punctuation character.
    cp = ord(ch)
    ascii_symbol = 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
    return ascii_symbol or unicodedata.category(ch).startswith("P")


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def _strip_accents(word: str) -> str:
    # NFD splits "é" into "e" + U+0301 (a combining mark, category Mn), which is then dropped.
    return "".join(ch for ch in unicodedata.normalize("NFD", word) if unicodedata.category(ch) != "Mn")


def _split_on_punctuation(word: str) -> list[str]:
    """"don't!" -> ["don", "'", "t", "!"]: each punctuation character alone, the runs between kept."""
    out, run = [], ""
    for ch in word:
        if _is_punctuation(ch):
            out += [run, ch] if run else [ch]
            run = ""
        else:
            run += ch
    return out + [run] if run else out


def basic_tokenize(text: str, *, do_lower_case: bool = True, strip_accents: bool | None = None,
                   tokenize_chinese_chars: bool = True, never_split=frozenset()) -> list[str]:  # fmt: skip
    """BERT's basic tokenizer: text -> words (before WordPiece).

    1. clean: drop U+0000, U+FFFD and control characters; every whitespace character -> " ";
    2. spaces around CJK ideographs (tokenize_chinese_chars);
    3. Unicode NFC, split on whitespace;
    4. each word not in ``never_split``: lower-case (do_lower_case), strip accents (strip_accents, or
       None = follow do_lower_case);
    5. split punctuation off (unless the word is in ``never_split``).
    """
    cleaned = []
    for ch in _check_text(text):
        if ch in "\x00\ufffd" or _is_control(ch):
            continue
        cleaned.append(" " if _is_whitespace(ch) else ch)
    text = "".join(cleaned)
    if tokenize_chinese_chars:
        text = "".join(f" {ch} " if _is_cjk(ch) else ch for ch in text)
    words = []
    for word in unicodedata.normalize("NFC", text).split():  # str.split: every Unicode whitespace
        if word not in never_split:
            if do_lower_case:
                word = word.lower()
            if strip_accents or (strip_accents is None and do_lower_case):
                word = _strip_accents(word)
        # never_split is checked again on the lower-cased word, as the reference does.
        words.extend([word] if word in never_split else _split_on_punctuation(word))
    # Accent stripping can empty a word (one made only of combining marks): re-split drops it.
    return " ".join(words).split()


def wordpiece_tokenize(word: str, vocab, unk_token: str = "[UNK]",
                       max_input_chars_per_word: int = MAX_INPUT_CHARS_PER_WORD) -> list[str]:  # fmt: skip
    """Greedy longest-match-first WordPiece of one word: with the vocabulary of transformers' BERT
    tests, "unaffable" -> ["un", "##aff", "##able"] (notebook 01 shows how MiniLM's cuts it).

    Pieces after the first are looked up with a "##" prefix. If no piece fits at some position,
    or the word has more than ``max_input_chars_per_word`` characters, the whole word is [unk_token].
    """
    if len(word) > max_input_chars_per_word:
        return [unk_token]
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):  # longest candidate first
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return [unk_token]  # nothing fits here: the word as a whole is unknown
        pieces.append(piece)
        start = end
    return pieces


def load_vocab_txt(path) -> list[str]:
    """The tokens of a WordPiece ``vocab.txt``, one per line; the line number (from 0) is the id.

    Raises FileNotFoundError if the file is missing, ValueError if it is empty or repeats a token.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"WordPiece vocabulary file not found: {path!r}")
    # Text mode turns "\r\n" into "\n"; only the newline is removed, any other spaces are kept.
    tokens = read_text(path).split("\n")
    if tokens and tokens[-1] == "":  # the final newline ends the last line; it starts no empty token
        tokens.pop()
    if not tokens:
        raise ValueError(f"vocabulary file {path!r} is empty")
    seen: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token in seen:
            raise ValueError(
                f"vocabulary file {path!r} repeats the token {token!r} (lines {seen[token] + 1} and {i + 1})"
            )
        seen[token] = i
    return tokens


class BertTokenizer(_Tokenizer):
    """BERT's WordPiece tokenizer, equal to transformers 4.57.6's slow BertTokenizer.

    vocab_file: ``vocab.txt``. do_lower_case (True for uncased vocabularies) also strips accents
    unless strip_accents=False; strip_accents=True strips them without lower-casing.
    do_basic_tokenize=False skips the basic tokenizer: WordPiece runs on whitespace-separated words
    as they are (no lower-casing even with do_lower_case, as in the reference).
    never_split: extra words kept whole (no lower-casing, punctuation splitting or WordPiece).
    ``encode`` gives ``[CLS] A [SEP]`` and ``[CLS] A [SEP] B [SEP]`` (token_type_ids 0..0 1..1).
    decode removes the spaces before punctuation unless clean_up_tokenization_spaces=False.
    """

    model_input_names = ("input_ids", "token_type_ids", "attention_mask")

    def __init__(self, vocab_file, do_lower_case: bool = True, do_basic_tokenize: bool = True, never_split=None,
                 unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                 tokenize_chinese_chars: bool = True, strip_accents: bool | None = None,
                 clean_up_tokenization_spaces: bool = True, model_max_length: int | None = None):  # fmt: skip
        for name, value in (("do_lower_case", do_lower_case), ("do_basic_tokenize", do_basic_tokenize),
                            ("tokenize_chinese_chars", tokenize_chinese_chars),
                            ("clean_up_tokenization_spaces", clean_up_tokenization_spaces)):  # fmt: skip
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        if strip_accents is not None and not isinstance(strip_accents, bool):
            raise ValueError(f"strip_accents must be None, True or False, got {strip_accents!r}")
        if never_split is None:
            never_split = ()
        if isinstance(never_split, str) or not all(isinstance(w, str) for w in never_split):
            raise ValueError(f"never_split must be a list of str, got {never_split!r:.80}")
        self.vocab_file = os.fspath(vocab_file)
        self._tokens = load_vocab_txt(self.vocab_file)
        self.vocab = {token: i for i, token in enumerate(self._tokens)}
        self.do_lower_case = do_lower_case
        self.do_basic_tokenize = do_basic_tokenize
        self.never_split = frozenset(never_split)
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.strip_accents = strip_accents
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.model_max_length = _check_model_max_length(model_max_length)
        specials = dict(unk_token=unk_token, sep_token=sep_token, pad_token=pad_token, cls_token=cls_token,
                        mask_token=mask_token)  # fmt: skip
        self._init_specials(specials, self.vocab.__contains__)
        # The lower-casing pass below finds specials with the first matching one in role order, not the
        # longest (the two differ only for specials that overlap, e.g. "[SEP]" and "[SEP]X").
        self._lowercase_skip = re.compile("|".join(re.escape(t) for t in self.all_special_tokens))
        # The basic tokenizer keeps the special tokens whole too (they can appear there only when
        # cleaning assembles one, e.g. "[CL\x00S]"); unlike never_split words they still go through WordPiece.
        self._basic_never_split = self.never_split | set(self.all_special_tokens)

    @classmethod
    def from_pretrained(cls, folder, **overrides) -> BertTokenizer:
        """Load ``folder/vocab.txt`` and the settings of ``folder/tokenizer_config.json`` if present
        (do_lower_case, strip_accents, tokenize_chinese_chars, never_split, special tokens,
        model_max_length, ...). ``overrides`` are passed to the constructor and win over the file."""
        keys = ("do_lower_case", "do_basic_tokenize", "never_split", "tokenize_chinese_chars", "strip_accents",
                "clean_up_tokenization_spaces", "unk_token", "sep_token", "pad_token", "cls_token",
                "mask_token")  # fmt: skip
        return cls._from_folder(folder, VOCAB_FILE, ("BertTokenizer", "BertTokenizerFast"), keys, overrides)

    @property
    def vocab_size(self) -> int:
        """Number of lines of vocab.txt (without appended special tokens; ``len(self)`` has them)."""
        return len(self._tokens)

    def tokenize(self, text: str) -> list[str]:
        """Text -> WordPiece tokens. Special-token strings ([CLS], [SEP], ...) stay whole. "" -> []."""
        _check_text(text)
        # (Without the basic tokenizer the reference does not lower-case at all, whatever do_lower_case says.)
        if self.do_lower_case and self.do_basic_tokenize:
            # The reference lower-cases the text once more before anything else, one character at a
            # time and skipping special tokens. One character at a time matters: "ΑΣ".lower() is "ας"
            # (a final sigma), but lower-casing each letter alone gives "ασ".
            parts, start = [], 0
            for m in self._lowercase_skip.finditer(text):
                parts += ["".join(ch.lower() for ch in text[start : m.start()]), m.group()]
                start = m.end()
            text = "".join(parts) + "".join(ch.lower() for ch in text[start:])
        return super().tokenize(text)

    def _tokenize_chunk(self, text: str) -> list[str]:
        if not self.do_basic_tokenize:
            words = text.split()
        else:
            words = basic_tokenize(text, do_lower_case=self.do_lower_case, strip_accents=self.strip_accents,
                                   tokenize_chinese_chars=self.tokenize_chinese_chars,
                                   never_split=self._basic_never_split)  # fmt: skip
        pieces = []
        for word in words:
            if self.do_basic_tokenize and word in self.never_split:
                pieces.append(word)  # user-chosen words skip WordPiece too (special tokens do not)
            else:
                pieces.extend(wordpiece_tokenize(word, self.vocab, self.unk_token))
        return pieces

    def _base_token_to_id(self, token: str) -> int:
        return self.vocab[token] if token in self.vocab else self.unk_token_id

    def _base_id_to_token(self, index: int) -> str:
        return self._tokens[index]

    def _add_special_tokens(self, a, b):
        cls, sep = [self.cls_token_id], [self.sep_token_id]
        if b is None:
            return cls + a + sep, [0] * (len(a) + 2)
        return cls + a + sep + b + sep, [0] * (len(a) + 2) + [1] * (len(b) + 1)

    def _tokens_to_string(self, tokens: list[str]) -> str:
        # "##" marks a piece glued to the one before: join everything with spaces, then un-glue.
        return " ".join(tokens).replace(" ##", "").strip()

    def save_vocabulary(self, save_directory, filename_prefix: str | None = None) -> tuple[str]:
        """Write the vocabulary, one token per line in id order, to ``vocab.txt`` (or
        ``{prefix}-vocab.txt``) in an existing directory. Returns ``(path,)``."""
        folder = _check_dir(save_directory)
        out = os.path.join(folder, (f"{filename_prefix}-" if filename_prefix else "") + VOCAB_FILE)
        _write_atomic(out, "".join(f"{t}\n" for t in self._tokens).encode("utf-8"))
        return (out,)

    def save_pretrained(self, save_directory) -> tuple[str, str]:
        """Write ``vocab.txt`` and ``tokenizer_config.json`` (creating the directory); transformers'
        ``BertTokenizer.from_pretrained`` and ours both load it. Returns the two paths."""
        os.makedirs(save_directory, exist_ok=True)
        (vocab_path,) = self.save_vocabulary(save_directory)
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.do_lower_case,
            "do_basic_tokenize": self.do_basic_tokenize,
            "never_split": sorted(self.never_split) or None,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "strip_accents": self.strip_accents,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            **self._specials,
        }
        return _write_tokenizer_config(save_directory, config, self.model_max_length, self.padding_side), vocab_path


# ================================================================ tokenizer folders

TOKENIZER_CONFIG = "tokenizer_config.json"


def _check_model_max_length(value):
    if value is None:
        return None
    if not _is_int_id(value) or value <= 0:
        raise ValueError(f"model_max_length must be a positive int or None, got {value!r}")
    return None if value >= NO_LIMIT else int(value)  # transformers writes int(1e30) for "no limit"


def _read_tokenizer_config(folder: str, classes: tuple[str, ...], keys: tuple[str, ...]) -> dict:
    """Constructor arguments from ``tokenizer_config.json`` (and special_tokens_map.json) if present.

    Keys this tokenizer has no use for (truncation_side, added_tokens_decoder, ...) are ignored;
    a tokenizer_class other than ``classes`` raises, since its algorithm may differ.
    """
    kwargs: dict = {}
    path = os.path.join(folder, TOKENIZER_CONFIG)
    config = read_json(path) if os.path.isfile(path) else {}
    special_map = os.path.join(folder, "special_tokens_map.json")
    if os.path.isfile(special_map):  # transformers lets this file name the special tokens too
        config = {**config, **{k: v for k, v in read_json(special_map).items() if k in SPECIAL_TOKEN_ROLES}}
    cls = config.get("tokenizer_class")
    if cls is not None and cls not in classes:
        raise ValueError(f"{path} is for a {cls}, not one of {', '.join(classes)}")
    # Settings that would make a different tokenizer: refuse them rather than ignore them.
    for key in ("sp_model_kwargs", "additional_special_tokens"):  # subword sampling; extra special tokens
        if config.get(key):
            raise ValueError(f"{path} sets {key}={config[key]!r:.80}, which is not supported")
    for key in keys:
        if key in config:
            kwargs[key] = _token_content(config[key], key) if key in SPECIAL_TOKEN_ROLES else config[key]
    if config.get("model_max_length") is not None:
        kwargs["model_max_length"] = config["model_max_length"]
    if config.get("padding_side") is not None:
        kwargs["padding_side"] = config["padding_side"]
    return kwargs


def _check_added_tokens(folder: str, tokenizer: _Tokenizer) -> None:
    """Extra tokens in tokenizer_config.json's added_tokens_decoder are not supported: raise, never ignore."""
    path = os.path.join(folder, TOKENIZER_CONFIG)
    if not os.path.isfile(path):
        return
    vocab = tokenizer.get_vocab()
    for key, entry in (read_json(path).get("added_tokens_decoder") or {}).items():
        content = _token_content(entry, f"added_tokens_decoder[{key}]")
        if str(vocab.get(content)) != str(key):
            raise ValueError(
                f"{path} adds the token {content!r} with id {key}; tokens beyond the vocabulary and the standard"
                " special tokens are not supported"
            )


def _write_tokenizer_config(folder, config: dict, model_max_length: int | None, padding_side: str = "right") -> str:
    if model_max_length is not None:
        config["model_max_length"] = model_max_length
    if padding_side != "right":  # the default is not written, so files stay as they were
        config["padding_side"] = padding_side
    path = os.path.join(os.fspath(folder), TOKENIZER_CONFIG)
    _write_atomic(path, (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return path
