"""generate()'s arguments: ``GenerationConfig`` (transformers' field names and defaults) and the
checked, resolved ``GenerationSettings`` one call runs with.

Where a value comes from, first match wins (as transformers 4.57.6's generate):

1. a keyword argument of ``generate(...)``;
2. ``generation_config=`` passed to generate, for each field it sets to a non-default value;
3. ``model.generation_config`` (read from ``generation_config.json`` by ``from_pretrained``);
4. for the token ids (start, bos, eos, pad) still unset: ``model.config``, then its decoder config,
   read at call time. (transformers copies the model config into the generation config when the
   model is built; here a later change to ``model.config`` still counts.)

Every argument generate() takes is listed in docs/generate.md. A name that is not one of them
raises ``ValueError`` naming it, with the closest matches; transformers arguments that minibertgen
does not implement are refused by name, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import read_json

DOCS = "docs/generate.md"


@dataclass
class GenerationConfig:
    """The generation settings a model carries, as transformers' GenerationConfig (4.57.6 defaults)."""

    # lengths (tokens counted with the decoder start token)
    max_length: int = 20
    max_new_tokens: int | None = None
    min_length: int = 0
    min_new_tokens: int | None = None
    early_stopping: bool | str = False
    # strategy
    do_sample: bool = False
    num_beams: int = 1
    use_cache: bool = True
    # sampling warpers
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    min_p: float | None = None
    typical_p: float = 1.0
    epsilon_cutoff: float = 0.0
    eta_cutoff: float = 0.0
    # processors
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    encoder_no_repeat_ngram_size: int = 0
    bad_words_ids: list | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | list | None = None
    remove_invalid_values: bool = False
    exponential_decay_length_penalty: tuple | None = None
    suppress_tokens: list | None = None
    begin_suppress_tokens: list | None = None
    renormalize_logits: bool = False
    # outputs
    num_return_sequences: int = 1
    output_scores: bool = False
    output_logits: bool = False
    return_dict_in_generate: bool = False
    # special tokens
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list | None = None
    decoder_start_token_id: int | None = None
    # fields of a generation_config.json that minibertgen does not use, kept to be written back
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def update(self, **kwargs) -> GenerationConfig:
        """Set fields in place (each name checked, as generate() checks them). Returns self."""
        check_names(kwargs)
        for name, value in kwargs.items():
            setattr(self, name, value)
        return self

    def non_default(self) -> dict[str, Any]:
        """The fields that differ from transformers' defaults."""
        default = GenerationConfig()
        return {f.name: getattr(self, f.name) for f in _fields() if getattr(self, f.name) != getattr(default, f.name)}

    def to_dict(self) -> dict[str, Any]:
        """transformers' generation_config.json content: the non-default fields (and what was read but not used)."""
        return {**self.extra, **self.non_default()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenerationConfig:
        """From a generation_config.json object. Keys minibertgen does not use are kept in ``extra``
        (written back on save); generate() refuses a non-default one it cannot honour."""
        if not isinstance(d, dict):
            raise ValueError(f"a generation config must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in _fields()}
        config = cls(**{k: v for k, v in d.items() if k in names})
        config.extra = {k: v for k, v in d.items() if k not in names}
        return config

    @classmethod
    def from_json_file(cls, path) -> GenerationConfig:
        return cls.from_dict(read_json(path))


def _fields():
    return [f for f in dataclasses.fields(GenerationConfig) if f.name != "extra"]


# What generate() takes besides GenerationConfig's fields.
CALL_ARGUMENTS = ("generation_config", "rng", "seed", "streamer")

# transformers generate() arguments (or generation_config.json fields) with no implementation here.
UNSUPPORTED = (
    "assistant_model", "assistant_early_exit", "cache_implementation", "cache_config", "constraints",
    "decoder_input_ids", "diversity_penalty", "dola_layers", "encoder_repetition_penalty", "force_words_ids",
    "forced_decoder_ids", "guidance_scale", "logits_processor", "low_memory", "max_time", "negative_prompt_ids",
    "num_assistant_tokens", "num_beam_groups", "output_attentions", "output_hidden_states", "penalty_alpha",
    "prefix_allowed_tokens_fn", "prompt_lookup_num_tokens", "sequence_bias", "stop_strings", "stopping_criteria",
    "synced_gpus", "token_healing", "tokenizer", "watermarking_config",
)  # fmt: skip

def check_names(kwargs) -> None:
    """A ValueError for the first argument generate() does not take, with the close matches."""
    names = [f.name for f in _fields()]
    for name in kwargs:
        if name in names:
            continue
        if name in UNSUPPORTED:
            raise ValueError(f"generate(): {name!r} is a transformers argument that minibertgen does not support "
                             f"(the supported ones are listed in {DOCS})")  # fmt: skip
        close = difflib.get_close_matches(name, names + list(CALL_ARGUMENTS), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ValueError(f"generate() got an unknown argument {name!r}; {hint}the supported ones are listed in {DOCS}")


# ================================================================ resolved settings


@dataclass
class GenerationSettings:
    """One call's settings, checked: GenerationConfig's fields, with the lengths and token ids resolved.

    max_length and min_length count the start token; eos_token_ids is a tuple; the sampling
    fields are those of GenerationConfig.
    """

    max_length: int
    min_length: int
    num_beams: int
    do_sample: bool
    use_cache: bool
    length_penalty: float
    early_stopping: bool | str
    num_return_sequences: int
    decoder_start_token_id: int
    eos_token_ids: tuple
    pad_token_id: int
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    encoder_no_repeat_ngram_size: int = 0
    bad_words_ids: list | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: tuple | None = None
    remove_invalid_values: bool = False
    exponential_decay_length_penalty: tuple | None = None
    suppress_tokens: tuple | None = None
    begin_suppress_tokens: tuple | None = None
    renormalize_logits: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float | None = None
    typical_p: float = 1.0
    epsilon_cutoff: float = 0.0
    eta_cutoff: float = 0.0
    output_scores: bool = False
    output_logits: bool = False
    return_dict_in_generate: bool = False


SAMPLING_OFF = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=None, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0)


def _int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _float(name, value, ok, expected):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not ok(float(value)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return float(value)


def _bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _token(name, value, vocab_size):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < vocab_size:
        raise ValueError(f"{name} {value!r} is outside the decoder vocabulary [0, {vocab_size})")
    return int(value)


def _tokens(name, value, vocab_size):
    values = value if isinstance(value, (list, tuple)) else [value]
    if len(values) == 0:
        raise ValueError(f"{name} must be a token id or a non-empty list of them, got {value!r}")
    return tuple(_token(name, v, vocab_size) for v in values)


def merge(model_config: GenerationConfig, given: GenerationConfig | None, kwargs: dict) -> GenerationConfig:
    """Steps 1-3 of the module docstring: the model's config, then ``given``'s non-default fields, then kwargs."""
    check_names(kwargs)
    merged = dataclasses.replace(model_config, extra=dict(model_config.extra))
    if given is not None:
        if not isinstance(given, GenerationConfig):
            raise ValueError(f"generation_config must be a minibertgen.GenerationConfig, got {type(given).__name__}")
        for name, value in given.non_default().items():
            setattr(merged, name, value)
        merged.extra.update(given.extra)
    return merged.update(**kwargs)


def resolve_settings(config, generation_config: GenerationConfig | None = None, **kwargs) -> GenerationSettings:
    """The checked settings of one generate() call on a model with EncoderDecoderConfig ``config``.

    ``generation_config``: the model's and the caller's configs merged (``merge``); the call's
    keyword arguments update it (a max_length given here is taken as given, where the config's
    default 20 means 21: reference §10). A ValueError names any bad value.
    """
    g = merge(generation_config or GenerationConfig(), None, kwargs)
    dec = config.decoder
    V = dec.vocab_size
    unused = {k: v for k, v in g.extra.items() if k in UNSUPPORTED}
    for name, value in unused.items():
        if value not in (None, False, 0, 1, 1.0, [], {}):
            raise ValueError(f"the generation config sets {name}={value!r}, which minibertgen does not support "
                             f"(see {DOCS}); remove it from generation_config.extra to generate without it")  # fmt: skip

    num_beams = _int("num_beams", g.num_beams, 1)
    num_return_sequences = _int("num_return_sequences", g.num_return_sequences, 1)
    do_sample = _bool("do_sample", g.do_sample)
    if num_beams > 1 and num_return_sequences > num_beams:
        raise ValueError(f"num_return_sequences ({num_return_sequences}) must be <= num_beams ({num_beams})")
    if num_beams == 1 and num_return_sequences > 1 and not do_sample:
        raise ValueError(f"num_return_sequences ({num_return_sequences}) > 1 needs num_beams > 1 or do_sample=True: "
                         "greedy decoding gives one sequence per input")  # fmt: skip

    # lengths: max_new_tokens wins over max_length; the start token counts in max_length
    if g.max_new_tokens is not None:
        max_length = _int("max_new_tokens", g.max_new_tokens, 1) + 1
    else:
        max_length = _int("max_length", g.max_length, 2)
        if "max_length" not in kwargs and max_length == GenerationConfig.max_length:
            max_length += 1  # the reference: its default 20 does not count the start token (§10)
    # The last token is never fed back in, so a decoder with P positions can produce P + 1 tokens.
    if max_length - 1 > dec.max_position_embeddings:
        raise ValueError(
            f"max_length {max_length} (max_new_tokens {max_length - 1}) exceeds what the decoder's "
            f"max_position_embeddings ({dec.max_position_embeddings}) allows: at most "
            f"max_new_tokens={dec.max_position_embeddings}"
        )
    min_len = _int("min_length", g.min_length, 0)
    if g.min_new_tokens is not None:  # the reference's MinNewTokens processor, folded into one bound
        min_len = max(min_len, _int("min_new_tokens", g.min_new_tokens, 0) + 1)

    if g.early_stopping not in (True, False, "never"):
        raise ValueError(f'early_stopping must be True, False or "never", got {g.early_stopping!r}')

    def first(*values):
        return next((v for v in values if v is not None), None)

    bos = first(g.bos_token_id, config.bos_token_id, dec.bos_token_id)
    start = first(g.decoder_start_token_id, config.decoder_start_token_id, bos)
    eos = first(g.eos_token_id, config.eos_token_id, dec.eos_token_id)
    if start is None:
        raise ValueError("decoder_start_token_id (or bos_token_id) is needed to start decoding; pass it or set it in the config")
    if eos is None:
        raise ValueError("eos_token_id is needed to end decoding; pass it or set it in the config")
    eos_ids = _tokens("eos_token_id", eos, V)
    pad = first(g.pad_token_id, config.pad_token_id, dec.pad_token_id, eos_ids[0])

    sampling = dict(
        temperature=_float("temperature", g.temperature, lambda t: t > 0 and math.isfinite(t), "a positive number"),
        top_k=0 if g.top_k is None else _int("top_k", g.top_k, 0),
        top_p=1.0 if g.top_p is None else _float("top_p", g.top_p, lambda p: 0 <= p <= 1, "in [0, 1]"),
        min_p=None if g.min_p is None else _float("min_p", g.min_p, lambda p: 0 <= p <= 1, "in [0, 1]"),
        typical_p=1.0 if g.typical_p is None else _float("typical_p", g.typical_p, lambda p: 0 < p <= 1, "in (0, 1]"),
        epsilon_cutoff=_float("epsilon_cutoff", g.epsilon_cutoff or 0.0, lambda e: 0 <= e < 1, "in [0, 1)"),
        eta_cutoff=_float("eta_cutoff", g.eta_cutoff or 0.0, lambda e: 0 <= e < 1, "in [0, 1)"),
    )
    if not do_sample:  # as the reference: a warning, since the call still works (greedily)
        set_anyway = [k for k, v in sampling.items() if v != SAMPLING_OFF[k] and not (k == "top_k" and v == 50)]
        if set_anyway:
            warnings.warn(f"do_sample is False, so {', '.join(set_anyway)} has no effect (set do_sample=True to "
                          "sample)", UserWarning, stacklevel=4)  # fmt: skip

    decay = g.exponential_decay_length_penalty
    if decay is not None:
        if not (isinstance(decay, (list, tuple)) and len(decay) == 2):
            raise ValueError(f"exponential_decay_length_penalty must be (start_index, decay_factor), got {decay!r}")
        decay = (_int("exponential_decay_length_penalty start_index", decay[0], 0),
                 _float("exponential_decay_length_penalty decay_factor", decay[1], math.isfinite, "a finite number"))  # fmt: skip

    return GenerationSettings(
        max_length=max_length,
        min_length=min_len,
        num_beams=num_beams,
        do_sample=do_sample,
        use_cache=_bool("use_cache", g.use_cache),
        length_penalty=_float("length_penalty", g.length_penalty, math.isfinite, "a finite number"),
        early_stopping=g.early_stopping,
        num_return_sequences=num_return_sequences,
        decoder_start_token_id=_token("decoder_start_token_id", start, V),
        eos_token_ids=eos_ids,
        pad_token_id=_token("pad_token_id", pad, V),
        repetition_penalty=_float("repetition_penalty", g.repetition_penalty, lambda p: p > 0 and math.isfinite(p),
                                  "a positive number"),  # fmt: skip
        no_repeat_ngram_size=_int("no_repeat_ngram_size", g.no_repeat_ngram_size or 0, 0),
        encoder_no_repeat_ngram_size=_int("encoder_no_repeat_ngram_size", g.encoder_no_repeat_ngram_size or 0, 0),
        bad_words_ids=_bad_words(g.bad_words_ids, V),
        forced_bos_token_id=None if g.forced_bos_token_id is None else _token("forced_bos_token_id", g.forced_bos_token_id, V),
        forced_eos_token_id=None if g.forced_eos_token_id is None else _tokens("forced_eos_token_id", g.forced_eos_token_id, V),
        remove_invalid_values=_bool("remove_invalid_values", g.remove_invalid_values),
        exponential_decay_length_penalty=decay,
        suppress_tokens=None if g.suppress_tokens is None else _token_list("suppress_tokens", g.suppress_tokens, V),
        begin_suppress_tokens=(None if g.begin_suppress_tokens is None
                               else _token_list("begin_suppress_tokens", g.begin_suppress_tokens, V)),  # fmt: skip
        renormalize_logits=_bool("renormalize_logits", g.renormalize_logits),
        output_scores=_bool("output_scores", g.output_scores),
        output_logits=_bool("output_logits", g.output_logits),
        return_dict_in_generate=_bool("return_dict_in_generate", g.return_dict_in_generate),
        **sampling,
    )


def _token_list(name, value, vocab_size):
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of token ids, got {value!r}")
    return tuple(_token(name, v, vocab_size) for v in value)


def _bad_words(value, vocab_size):
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(w, (list, tuple)) and w for w in value):
        raise ValueError(f"bad_words_ids must be a non-empty list of non-empty token-id lists, got {value!r}")
    return [list(_token_list("bad_words_ids", w, vocab_size)) for w in value]


# ================================================================ files


def read_generation_config(folder) -> GenerationConfig | None:
    """``folder/generation_config.json`` as a GenerationConfig, or None when the file is absent."""
    path = os.path.join(os.fspath(folder), "generation_config.json")
    return GenerationConfig.from_json_file(path) if os.path.exists(path) else None
