"""AutoTokenizer: pick the tokenizer class a folder was saved for, as transformers' AutoTokenizer.

The choice, in order:

1. ``tokenizer_config.json``'s ``tokenizer_class`` (a "...Fast" name means the same algorithm:
   the fast and slow tokenizers of a checkpoint give the same ids);
2. the vocabulary files present: ``spiece.model`` (sentencepiece, BertGenerationTokenizer),
   ``vocab.json`` + ``merges.txt`` (byte-level BPE, RobertaTokenizer), ``vocab.txt`` (WordPiece,
   BertTokenizer);
3. nothing fits: a ValueError saying what the folder holds and what is supported.
"""

from __future__ import annotations

import os

from .config import read_json
from .tokenization import TOKENIZER_CONFIG, BertGenerationTokenizer, BertTokenizer
from .tokenization_roberta import RobertaTokenizer

# tokenizer_class (without "Fast") -> the class here.
CLASSES = {
    "BertGenerationTokenizer": lambda: BertGenerationTokenizer,
    "BertTokenizer": lambda: BertTokenizer,
    "RobertaTokenizer": lambda: RobertaTokenizer,
}
# Files that identify an algorithm, in the order they are tried.
FILES = (
    (("spiece.model",), "BertGenerationTokenizer"),
    (("vocab.json", "merges.txt"), "RobertaTokenizer"),
    (("vocab.txt",), "BertTokenizer"),
)


class AutoTokenizer:
    """``AutoTokenizer.from_pretrained(folder, **overrides)`` -> the folder's tokenizer (see module doc)."""

    def __init__(self):
        raise TypeError("AutoTokenizer is not built directly: use AutoTokenizer.from_pretrained(folder)")

    @staticmethod
    def tokenizer_class_name(folder) -> str:
        """The name of the class ``from_pretrained`` would build for ``folder``."""
        folder = os.fspath(folder)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"tokenizer folder not found (not a directory): {folder!r}")
        config_path = os.path.join(folder, TOKENIZER_CONFIG)
        if os.path.isfile(config_path):
            name = read_json(config_path).get("tokenizer_class")
            if name is not None:
                base = str(name).removesuffix("Fast")
                if base not in CLASSES:
                    raise ValueError(
                        f"{config_path} asks for a {name}, which minibertgen does not implement; "
                        f"supported: {', '.join(CLASSES)}"
                    )
                return base
        for files, name in FILES:
            if all(os.path.isfile(os.path.join(folder, f)) for f in files):
                return name
        present = sorted(os.listdir(folder))
        hint = " (tokenizer.json alone is a fast-tokenizer file: save the slow tokenizer's files too)" if (
            "tokenizer.json" in present) else ""  # fmt: skip
        raise ValueError(
            f"{folder} holds no tokenizer this package can load{hint}: expected spiece.model, vocab.json + "
            f"merges.txt, or vocab.txt; found {present[:12]}"
        )

    @classmethod
    def from_pretrained(cls, folder, **overrides):
        """The tokenizer saved in ``folder``; ``overrides`` go to that class's from_pretrained."""
        return CLASSES[cls.tokenizer_class_name(folder)]().from_pretrained(folder, **overrides)
