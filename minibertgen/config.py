"""Configurations, with transformers' field names and defaults (BertGenerationConfig, 4.57.6).

``BertGenerationConfig`` describes one BertGeneration stack (encoder, or decoder with an LM head);
``EncoderDecoderConfig`` pairs two of them for bert2bert. Both read and write the ``config.json``
of transformers checkpoints (``model_type`` "bert" or "bert-generation", and "encoder-decoder").

Differences from the reference, on purpose (DESIGN.md §1, "never approximate silently"):
- an unknown ``position_embedding_type`` raises here; transformers silently runs it as "absolute";
- an unknown ``hidden_act`` raises when the config is made, not at the first forward;
- the parametric activations "prelu" and "xielu" (which carry weights of their own) are not
  supported and raise.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from .ops import ACTIVATION_FUNCTIONS

POSITION_EMBEDDING_TYPES = ("absolute", "relative_key", "relative_key_query")
# Every name transformers' ACT2FN maps, less the two with learned parameters (prelu, xielu).
ACTIVATIONS = tuple(ACTIVATION_FUNCTIONS)
MODEL_TYPES = ("bert-generation", "bert")
# Keys of a config.json that describe the file, not the model: read and not kept.
FILE_METADATA = ("architectures", "dtype", "torch_dtype", "transformers_version", "_name_or_path",
                 "_attn_implementation_autoset")  # fmt: skip


@dataclass
class BertGenerationConfig:
    """One BertGeneration stack. Defaults are transformers 4.57.6's BertGenerationConfig.

    ``extra`` keeps fields this project does not use (e.g. a BERT config's ``type_vocab_size``),
    so a config read from a file is written back with them.
    """

    vocab_size: int = 50358
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    bos_token_id: int | None = 2
    eos_token_id: int | None = 1
    position_embedding_type: str = "absolute"
    use_cache: bool = True
    # Inherited from transformers' PretrainedConfig:
    is_decoder: bool = False
    add_cross_attention: bool = False
    tie_word_embeddings: bool = True
    tie_encoder_decoder: bool = False
    decoder_start_token_id: int | None = None
    chunk_size_feed_forward: int = 0  # a memory/speed trade-off in torch; the maths is the same
    cross_attention_hidden_size: int | None = None
    model_type: str = "bert-generation"
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    # ----- validation -----
    def validate(self) -> None:
        """Raise ValueError naming the first field whose value cannot work."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads}): each head gets hidden_size / num_attention_heads dims"
            )
        if self.hidden_act not in ACTIVATIONS:
            hint = " (it has learned parameters, not supported)" if self.hidden_act in ("prelu", "xielu") else ""
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported{hint}; expected one of {ACTIVATIONS}")
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"position_embedding_type {self.position_embedding_type!r} is not one of "
                f"{POSITION_EMBEDDING_TYPES} (transformers would silently run it as 'absolute')"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
        if not isinstance(self.layer_norm_eps, (int, float)) or not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be positive, got {self.layer_norm_eps!r}")
        if not isinstance(self.initializer_range, (int, float)) or self.initializer_range < 0:
            raise ValueError(f"initializer_range must be >= 0, got {self.initializer_range!r}")
        check_token_ids_fields(self, self.vocab_size)
        for name in ("use_cache", "is_decoder", "add_cross_attention", "tie_word_embeddings", "tie_encoder_decoder"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type {self.model_type!r} is not one of {MODEL_TYPES}")

    @property
    def head_dim(self) -> int:
        """Dh = D / H: the width of one attention head."""
        return self.hidden_size // self.num_attention_heads

    def replace(self, **changes) -> BertGenerationConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, extra=dict(self.extra), **changes)

    # ----- JSON -----
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BertGenerationConfig:
        """From a transformers config dict ("bert" or "bert-generation"); unknown keys go to ``extra``."""
        if not isinstance(d, dict):
            raise ValueError(f"a config must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        model_type = d.pop("model_type", "bert-generation")
        if model_type not in MODEL_TYPES:
            raise ValueError(
                f"config model_type {model_type!r} is not a BERT-family model; expected one of {MODEL_TYPES}"
            )
        for key in FILE_METADATA:
            d.pop(key, None)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra", "model_type"}
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names}
        # A BERT config carries no bos/eos: like transformers, BertGenerationConfig's defaults apply.
        return cls(**known, model_type=model_type, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """A transformers-compatible config dict (model_type "bert-generation").

        Writes is_decoder, add_cross_attention and tie_word_embeddings explicitly, so that both
        transformers 4.57.6 and 5.x read the file the same way (reference §9).
        """
        d = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name not in ("extra", "model_type"):
                d[f.name] = getattr(self, f.name)
        d["model_type"] = "bert-generation"
        return d

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> BertGenerationConfig:
        """Read a transformers config.json of a "bert" or "bert-generation" model."""
        return cls.from_dict(read_json(path))

    def to_json_file(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_dict())


@dataclass
class EncoderDecoderConfig:
    """bert2bert: an encoder config and a decoder config, as transformers' EncoderDecoderConfig.

    The decoder config always has is_decoder=True and add_cross_attention=True (transformers'
    ``from_encoder_decoder_configs`` sets them). The top-level ids default to None as in the
    reference: set ``decoder_start_token_id`` and ``pad_token_id`` before training with labels.
    """

    encoder: BertGenerationConfig
    decoder: BertGenerationConfig
    decoder_start_token_id: int | None = None
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    tie_encoder_decoder: bool = False
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name in ("encoder", "decoder"):
            if not isinstance(getattr(self, name), BertGenerationConfig):
                raise ValueError(f"EncoderDecoderConfig.{name} must be a BertGenerationConfig")
        self.encoder = self.encoder.replace(is_decoder=False, add_cross_attention=False)
        self.decoder = self.decoder.replace(is_decoder=True, add_cross_attention=True)
        dec = self.decoder
        if dec.cross_attention_hidden_size not in (None, dec.hidden_size):
            raise ValueError(
                f"decoder.cross_attention_hidden_size ({dec.cross_attention_hidden_size}) must be None or "
                f"equal to decoder.hidden_size ({dec.hidden_size}): BertGeneration's cross-attention reads "
                "hidden_size-wide encoder states"
            )
        check_token_ids_fields(self, dec.vocab_size)
        if self.tie_encoder_decoder:
            check_tieable(self.encoder, self.decoder)

    @classmethod
    def from_encoder_decoder_configs(cls, encoder, decoder, **kwargs) -> EncoderDecoderConfig:
        """As transformers: the decoder becomes a decoder with cross-attention."""
        return cls(encoder=encoder, decoder=decoder, **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderDecoderConfig:
        if not isinstance(d, dict):
            raise ValueError(f"a config must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        model_type = d.pop("model_type", None)
        if model_type != "encoder-decoder":
            raise ValueError(f"expected an encoder-decoder config (model_type 'encoder-decoder'), got {model_type!r}")
        for part in ("encoder", "decoder"):
            if not isinstance(d.get(part), dict):
                raise ValueError(f"encoder-decoder config lacks its {part!r} config")
        encoder = BertGenerationConfig.from_dict(d.pop("encoder"))
        decoder = BertGenerationConfig.from_dict(d.pop("decoder"))
        for key in FILE_METADATA + ("is_encoder_decoder",):
            d.pop(key, None)
        names = {"decoder_start_token_id", "pad_token_id", "bos_token_id", "eos_token_id", "tie_encoder_decoder"}
        known = {k: d.pop(k) for k in list(d) if k in names}
        return cls(encoder=encoder, decoder=decoder, **known, extra=d)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.extra)
        d.update(
            model_type="encoder-decoder",
            is_encoder_decoder=True,
            encoder=self.encoder.to_dict(),
            decoder=self.decoder.to_dict(),
            decoder_start_token_id=self.decoder_start_token_id,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            tie_encoder_decoder=self.tie_encoder_decoder,
        )
        return d

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> EncoderDecoderConfig:
        return cls.from_dict(read_json(path))

    def to_json_file(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_dict())


def check_token_ids_fields(config, vocab_size: int) -> None:
    """Each special-token id field of ``config`` must be None or an id in [0, vocab_size)."""
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab_size):
            raise ValueError(f"{name} must be None or an id in [0, {vocab_size}), got {value!r}")


def check_tieable(encoder: BertGenerationConfig, decoder: BertGenerationConfig) -> None:
    """tie_encoder_decoder shares every encoder weight with the decoder: their shapes must agree."""
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "max_position_embeddings", "position_embedding_type"):  # fmt: skip
        if getattr(encoder, name) != getattr(decoder, name):
            raise ValueError(
                f"tie_encoder_decoder needs equal {name} in encoder and decoder, got "
                f"{getattr(encoder, name)!r} and {getattr(decoder, name)!r}"
            )


def read_text(path: str | os.PathLike) -> str:
    """A UTF-8 text file's contents ("\r\n" read as "\n"), with an error that names the file if it is not UTF-8."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{os.fspath(path)} is not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset "
                         f"{exc.start} cannot be decoded") from None  # fmt: skip


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0 asks without signalling). Another user's process, or an
    OS that cannot say, counts as alive: whoever asks then keeps that process's files or lock."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: exists, not ours
        return True
    return True


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON object from a file, with errors that name the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(data), "a number")
        raise ValueError(f"{path} holds {kind}, expected a JSON object ({{...}})")
    return data


def write_json_atomic(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write JSON to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
