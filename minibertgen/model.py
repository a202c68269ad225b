"""The model classes: BertGenerationEncoder, BertGenerationDecoder and EncoderDecoderModel (bert2bert).

Each holds a ``config`` and a parameter tree ``params``, checks its inputs, and calls the pure
functions of stack.py (``bert_forward``, ``decoder_forward``, ``encoder_decoder_forward`` and their
backwards). This module also owns the parameter layout (the ``*_param_spec`` functions: every
name, shape and initializer), loading and saving, and the warm start's cross-attention options.

Parameters are a nested dict mirroring transformers' state-dict names (layers are a list):
``params["encoder"]["layer"][0]["attention"]["self"]["query"]["weight"]`` is
``encoder.layer.0.attention.self.query.weight``. ``flatten(params)`` gives those names.

Shapes: B batch, S source length, T target length, D hidden, V vocabulary, P max positions.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .attention import uses_query_positions
from .backend import as_ids, as_mask, backend_of, get_xp, to_device, to_numpy
from .config import BertGenerationConfig, EncoderDecoderConfig, check_tieable, read_json
from .generate import generate
from .generation_config import GenerationConfig, read_generation_config
from .ops import cross_entropy_backward, cross_entropy_forward
from .stack import (
    bert_backward,
    bert_forward,
    complete_grads,
    decoder_backward,
    decoder_forward,
    encoder_decoder_backward,
    encoder_decoder_forward,
    encoder_params,
    shift_tokens_right,
)
from .weights import (
    LoadReport,
    ParamSpec,
    differing_tied_copies,
    flatten,
    init_params,
    load_checkpoint,
    read_checkpoint_tensors,
    save_checkpoint,
    unflatten,
)

DTYPES = ("float32", "float64")

# ================================================================ parameter layout and init


def bert_param_spec(cfg: BertGenerationConfig, *, cross_attention: bool) -> dict[str, ParamSpec]:
    """Names, shapes and init of one BertGeneration stack (BertGenerationEncoder's keys, reference §9)."""
    D, F, P, V = cfg.hidden_size, cfg.intermediate_size, cfg.max_position_embeddings, cfg.vocab_size
    std = cfg.initializer_range

    def linear(name, n_out, n_in):
        return {f"{name}.weight": ParamSpec((n_out, n_in), "normal", std), f"{name}.bias": ParamSpec((n_out,), "zeros")}

    def layernorm(name):
        return {f"{name}.weight": ParamSpec((D,), "ones"), f"{name}.bias": ParamSpec((D,), "zeros")}

    spec = {
        "embeddings.word_embeddings.weight": ParamSpec((V, D), "normal", std, pad_row=cfg.pad_token_id),
        "embeddings.position_embeddings.weight": ParamSpec((P, D), "normal", std),
        **layernorm("embeddings.LayerNorm"),
    }
    for i in range(cfg.num_hidden_layers):
        layer = f"encoder.layer.{i}"
        for part in ("query", "key", "value"):
            spec.update(linear(f"{layer}.attention.self.{part}", D, D))
        if uses_query_positions(cfg.position_embedding_type):  # the relative types: a distance table
            spec[f"{layer}.attention.self.distance_embedding.weight"] = ParamSpec((2 * P - 1, cfg.head_dim), "normal", std)
        spec.update(linear(f"{layer}.attention.output.dense", D, D))
        spec.update(layernorm(f"{layer}.attention.output.LayerNorm"))
        if cross_attention:
            for part in ("query", "key", "value"):
                spec.update(linear(f"{layer}.crossattention.self.{part}", D, D))
            spec.update(linear(f"{layer}.crossattention.output.dense", D, D))
            spec.update(layernorm(f"{layer}.crossattention.output.LayerNorm"))
        spec.update(linear(f"{layer}.intermediate.dense", F, D))
        spec.update(linear(f"{layer}.output.dense", D, F))
        spec.update(layernorm(f"{layer}.output.LayerNorm"))
    return spec


def encoder_param_spec(cfg: BertGenerationConfig) -> dict[str, ParamSpec]:
    """BertGenerationEncoder: one stack, no prefix."""
    return bert_param_spec(cfg, cross_attention=False)


def decoder_param_spec(cfg: BertGenerationConfig) -> dict[str, ParamSpec]:
    """BertGenerationDecoder: the stack under ``bert.`` plus the LM head.

    Tied (the default), the LM head's weight is the word-embedding table and is not a separate
    parameter; ``lm_head.bias`` is the one bias (transformers' lm_head.decoder.bias is the same tensor).
    """
    spec = {f"bert.{k}": v for k, v in bert_param_spec(cfg, cross_attention=cfg.add_cross_attention).items()}
    if not cfg.tie_word_embeddings:
        spec["lm_head.decoder.weight"] = ParamSpec((cfg.vocab_size, cfg.hidden_size), "normal", cfg.initializer_range)
    spec["lm_head.bias"] = ParamSpec((cfg.vocab_size,), "zeros")
    return spec


def encoder_decoder_param_spec(cfg: EncoderDecoderConfig) -> dict[str, ParamSpec]:
    """EncoderDecoderModel: ``encoder.*`` and ``decoder.*``.

    With tie_encoder_decoder the encoder has no weights of its own: it runs on ``decoder.bert.*``
    (every encoder weight is tied, reference §8), so each shared weight appears once here.
    """
    spec = {}
    if not cfg.tie_encoder_decoder:
        spec.update({f"encoder.{k}": v for k, v in encoder_param_spec(cfg.encoder).items()})
    spec.update({f"decoder.{k}": v for k, v in decoder_param_spec(cfg.decoder).items()})
    if cfg.encoder.hidden_size != cfg.decoder.hidden_size:
        d_in, d_out = cfg.encoder.hidden_size, cfg.decoder.hidden_size
        spec["enc_to_dec_proj.weight"] = ParamSpec((d_out, d_in), "normal", cfg.decoder.initializer_range)
        spec["enc_to_dec_proj.bias"] = ParamSpec((d_out,), "zeros")
    return spec


CROSS_ATTENTION_INITS = ("random", "self_attention")


def copy_self_to_cross_attention(stack):
    """A stack's parameter tree (``decoder.params["bert"]``) whose every layer's cross-attention is
    a copy of the same layer's self-attention: query, key, value, output dense and LayerNorm.

    Self-attention may carry a ``distance_embedding`` (relative positions); cross-attention never
    does (it is always absolute, reference §4), so that table is not copied. The input tree is left
    as it was; the copies are new arrays (the two attentions train apart).
    """
    layers = []
    for layer in stack["encoder"]["layer"]:
        if "crossattention" not in layer:
            raise ValueError("copy_self_to_cross_attention needs a decoder stack with cross-attention")
        self_part = {k: {name: v.copy() for name, v in w.items()} for k, w in layer["attention"]["self"].items()
                     if k != "distance_embedding"}  # fmt: skip
        output = {k: {name: v.copy() for name, v in w.items()} for k, w in layer["attention"]["output"].items()}
        layers.append({**layer, "crossattention": {"self": self_part, "output": output}})
    return {**stack, "encoder": {**stack["encoder"], "layer": layers}}


# ================================================================ outputs


@dataclass
class EncoderOutput:
    last_hidden_state: Any  # (B, S, D)
    hidden_states: list  # num_layers + 1 arrays (B, S, D), the embedding output first
    cache: dict = field(repr=False, default_factory=dict)


@dataclass
class DecoderOutput:
    logits: Any  # (B, T, V)
    loss: Any = None  # scalar, when labels were given
    hidden_states: list = field(default_factory=list)  # num_layers + 1 arrays (B, T, D)
    cache: dict = field(repr=False, default_factory=dict)


@dataclass
class Seq2SeqOutput:
    logits: Any  # (B, T, V)
    loss: Any = None  # scalar, when labels were given
    encoder_last_hidden_state: Any = None  # (B, S, D_enc)
    encoder_hidden_states: list = field(default_factory=list)
    decoder_hidden_states: list = field(default_factory=list)
    decoder_input_ids: Any = None  # (B, T): given, or shifted from labels
    cache: dict = field(repr=False, default_factory=dict)


# ================================================================ classes


class _Module:
    """What the three model classes share: config, params tree, backend and dtype moves, files."""

    config: Any
    params: dict
    load_report: Any = None
    ROLE: str  # the checkpoint layout: "encoder", "decoder" or "encoder-decoder"

    def _param_spec(self) -> dict[str, ParamSpec]:
        raise NotImplementedError

    @classmethod
    def _from_checkpoint(cls, path, config, *, seed=0, backend=None, dtype="float32", strict=True,
                         fold_token_type=False, new_distance_tables=False, tensors=None, allow_nonfinite=False):  # fmt: skip
        """A model of ``config`` with the weights of the checkpoint folder (see weights.load_checkpoint).
        ``dtype`` is one of DTYPES (from_pretrained's ``_loading_options`` has checked it)."""
        model = cls.__new__(cls)
        model.config = config
        flat, model.load_report = load_checkpoint(path, model._param_spec(), role=cls.ROLE, dtype=dtype,
                                                  strict=strict, fold_token_type=fold_token_type, seed=seed,
                                                  new_distance_tables=new_distance_tables, tensors=tensors,
                                                  allow_nonfinite=allow_nonfinite)  # fmt: skip
        model._init(unflatten(flat), 0, dtype, backend)
        return model

    @classmethod
    def _load_part(cls, path, *, seed, backend, dtype, strict, fold_token_type, output_loading_info, kwargs,
                   allow_nonfinite=False, forced=None):  # fmt: skip
        """Encoder and decoder from_pretrained: keyword checks, config overrides (``forced`` last), load."""
        dtype, overrides = _loading_options(path, dtype, kwargs, BertGenerationConfig)
        config = _read_part_config(path, {**overrides, **(forced or {})})
        relative_override = overrides.get("position_embedding_type", "absolute") != "absolute"
        model = cls._from_checkpoint(path, config, seed=seed, backend=backend, dtype=dtype, strict=strict,
                                     fold_token_type=fold_token_type, new_distance_tables=relative_override,
                                     allow_nonfinite=allow_nonfinite)  # fmt: skip
        return (model, loading_info(model.load_report)) if output_loading_info else model

    def save_pretrained(self, path) -> None:
        """config.json, model.safetensors (and generation_config.json for decoders), atomically, in the
        layout transformers 4.57.6 and 5.x both load (reference §9)."""
        save_checkpoint(path, flatten(self.params), self.config.to_dict(), role=self.ROLE, config=self.config)

    def _init(self, params, seed, dtype, backend):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if params is None:
            params = unflatten(init_params(self._param_spec(), seed, dtype))
        self.params = to_device(params, backend)

    @property
    def backend(self) -> str:
        return backend_of(self._first_param())

    @property
    def dtype(self):
        return self._first_param().dtype

    def _first_param(self):
        return next(iter(flatten(self.params).values()))

    def to(self, backend: str | None = None, dtype: str | None = None):
        """Move the parameters to a backend ("numpy"/"cupy") and/or cast them (float32/float64). Returns self."""
        params = self.params
        if dtype is not None:
            if dtype not in DTYPES:
                raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
            params = unflatten({k: v.astype(dtype) for k, v in flatten(params).items()})
        self.params = to_device(params, backend or self.backend)
        return self

    def num_parameters(self) -> int:
        return int(sum(v.size for v in flatten(self.params).values()))

    def state_dict(self) -> dict:
        """{transformers key: array}, including the derived keys a transformers file carries."""
        return flatten(self.params)


class BertGenerationEncoder(_Module):
    """transformers' BertGenerationEncoder: a bidirectional BERT stack with no pooler and no token types.

    ``enc(input_ids, attention_mask=None)`` returns the last hidden state (B, S, D);
    ``enc.forward(...)`` returns an EncoderOutput with every hidden state and the cache.
    """

    ROLE = "encoder"

    def __init__(self, config: BertGenerationConfig, params=None, *, seed=0, dtype="float32", backend=None):
        if config.add_cross_attention:
            raise ValueError("an encoder has no cross-attention: set add_cross_attention=False")
        self.config = config
        self._init(params, seed, dtype, backend)

    def _param_spec(self):
        return encoder_param_spec(self.config)

    def forward(self, input_ids, attention_mask=None, *, token_type_ids=None, train=False, rng=None) -> EncoderOutput:
        cfg, be = self.config, self.backend
        ids = as_ids(input_ids, "input_ids", cfg.vocab_size, be)
        _check_token_types(token_type_ids, ids.shape)
        mask = as_mask(attention_mask, "attention_mask", ids.shape, self.dtype, be)
        hidden, hidden_states, _, cache = bert_forward(self.params, cfg, ids, mask, rng=rng, train=train)
        return EncoderOutput(hidden, hidden_states, cache)

    def __call__(self, input_ids, attention_mask=None, *, token_type_ids=None, train=False, rng=None):
        """(B, S) ids -> (B, S, D) last hidden state. token_type_ids, if given, must be all 0 (see _check_token_types)."""
        return self.forward(input_ids, attention_mask, token_type_ids=token_type_ids, train=train, rng=rng).last_hidden_state

    def backward(self, out: EncoderOutput, dhidden):
        """Gradients of sum(last_hidden_state * dhidden) for every parameter, a tree like ``params``.

        dhidden: (B, S, D). Consumes ``out.cache`` (each layer's cache is released once used).
        """
        grads, _ = bert_backward(dhidden, out.cache, self.config.pad_token_id)
        return complete_grads(grads, self.params)

    @classmethod
    def from_pretrained(cls, path, *, seed=0, backend=None, dtype=None, strict=True, fold_token_type=False,
                        output_loading_info=False, allow_nonfinite=False, **kwargs):  # fmt: skip
        """Load a BERT or BertGeneration checkpoint folder (config.json + model.safetensors).

        A BERT file's token-type embeddings and pooler are dropped (listed in ``load_report``);
        ``fold_token_type=True`` adds token_type_embeddings[0] into every position row instead,
        so the encoder reproduces BertModel for single-segment input.
        Keywords as transformers' (see ``_loading_options``): config fields override config.json;
        ``dtype``/``torch_dtype`` ("float32", "float64", torch or NumPy dtypes, "auto");
        ``output_loading_info=True`` returns ``(model, info)``. A tensor holding NaN or inf is refused
        (CheckpointError naming it) unless ``allow_nonfinite=True``, for inspecting a diverged run.
        """
        return cls._load_part(path, seed=seed, backend=backend, dtype=dtype, strict=strict,
                              fold_token_type=fold_token_type, output_loading_info=output_loading_info,
                              allow_nonfinite=allow_nonfinite, kwargs=kwargs, forced=dict(is_decoder=False, add_cross_attention=False))  # fmt: skip


class BertGenerationDecoder(_Module):
    """transformers' BertGenerationDecoder: a BERT stack (causal when is_decoder) plus an LM head.

    ``dec(input_ids, ..., labels=None)`` returns a DecoderOutput; with labels, the loss is the
    reference's causal-LM loss (logits[t] predicts labels[t+1]).
    """

    ROLE = "decoder"

    def __init__(self, config: BertGenerationConfig, params=None, *, seed=0, dtype="float32", backend=None):
        if config.add_cross_attention and not config.is_decoder:
            raise ValueError("add_cross_attention=True needs is_decoder=True (as in transformers)")
        self.config = config
        self._init(params, seed, dtype, backend)

    def _param_spec(self):
        return decoder_param_spec(self.config)

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        labels=None,
        *,
        token_type_ids=None,
        train=False,
        rng=None,
    ) -> DecoderOutput:
        cfg, be = self.config, self.backend
        ids = as_ids(input_ids, "input_ids", cfg.vocab_size, be)
        _check_token_types(token_type_ids, ids.shape)
        mask = as_mask(attention_mask, "attention_mask", ids.shape, self.dtype, be)
        memory, memory_mask = None, None
        if encoder_hidden_states is not None:
            memory = to_device(encoder_hidden_states, be)
            _check_memory(memory, ids.shape[0], cfg.hidden_size)
            memory_mask = as_mask(encoder_attention_mask, "encoder_attention_mask", memory.shape[:2], self.dtype, be)
        logits, hidden_states, _, cache = decoder_forward(
            self.params, cfg, ids, mask, memory=memory, memory_mask=memory_mask, rng=rng, train=train
        )
        loss = None
        if labels is not None:
            lab = as_ids(labels, "labels", cfg.vocab_size, be)
            _check_same_shape(lab, ids, "labels", "input_ids")
            V = logits.shape[-1]
            # causal-LM loss: the prediction at t is scored against the label at t + 1
            loss, cache["loss"] = cross_entropy_forward(logits[:, :-1].reshape(-1, V), lab[:, 1:].reshape(-1))
        return DecoderOutput(logits, loss, hidden_states, cache)

    def backward(self, out: DecoderOutput, dlogits=None):
        """Gradients for every parameter, a tree like ``params``.

        Of the loss when ``dlogits`` is None (the forward had labels), else of sum(logits * dlogits),
        dlogits (B, T, V). Consumes ``out.cache``.
        """
        if dlogits is None:
            if out.loss is None:
                raise ValueError("backward needs dlogits, or a forward run with labels")
            xp = get_xp(out.logits)
            B, T, V = out.logits.shape
            dlogits = xp.zeros_like(out.logits)  # the last position predicts nothing
            dlogits[:, :-1] = cross_entropy_backward(1.0, out.cache["loss"]).reshape(B, T - 1, V)
        grads, _ = decoder_backward(dlogits, out.cache, self.config)
        return complete_grads(grads, self.params)

    @classmethod
    def from_pretrained(cls, path, *, seed=0, backend=None, dtype=None, strict=True, fold_token_type=False,
                        output_loading_info=False, allow_nonfinite=False, **kwargs):  # fmt: skip
        """Load a decoder (or warm-start one from a BERT/encoder checkpoint).

        ``add_cross_attention=True, is_decoder=True`` (passed as overrides) make a bert2bert
        decoder; cross-attention weights and the LM head bias absent from the file start fresh
        and are listed in ``load_report.new``. Other keywords as BertGenerationEncoder.from_pretrained.
        """
        return cls._load_part(path, seed=seed, backend=backend, dtype=dtype, strict=strict,
                              fold_token_type=fold_token_type, output_loading_info=output_loading_info,
                              allow_nonfinite=allow_nonfinite, kwargs=kwargs)  # fmt: skip


class EncoderDecoderModel(_Module):
    """bert2bert: transformers' EncoderDecoderModel over a BertGenerationEncoder and Decoder.

    ``model(input_ids, ..., labels=...)`` returns a Seq2SeqOutput whose loss is the reference's:
    mean cross-entropy of logits[t] against labels[t] (no shift), -100 ignored; decoder_input_ids
    default to the labels shifted right behind ``decoder_start_token_id``.

    ``model.encoder`` and ``model.decoder`` are views on the same parameters.
    """

    ROLE = "encoder-decoder"

    def __init__(self, config: EncoderDecoderConfig | None = None, params=None, *, encoder=None, decoder=None,
                 seed=0, dtype="float32", backend=None):  # fmt: skip
        """``EncoderDecoderModel(config)``: random weights (or ``params``); ``EncoderDecoderModel(encoder=...,
        decoder=...)``: the two models' weights, as transformers builds it (the config from both parts'
        configs; ``config=`` as well supplies the top-level fields, e.g. tie_encoder_decoder)."""
        if encoder is not None or decoder is not None:
            if encoder is None or decoder is None:
                raise ValueError("give both encoder= and decoder= (or neither, with config=)")
            if params is not None:
                raise ValueError("params= builds a model from a config; with encoder= and decoder= their weights are used")
            top = {}
            if config is not None:
                if not isinstance(config, EncoderDecoderConfig):
                    raise ValueError(f"config must be an EncoderDecoderConfig, got {type(config).__name__}")
                top = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                       if f.name not in ("encoder", "decoder", "extra")}  # fmt: skip
            built = self.from_encoder_decoder(encoder, decoder, seed=seed, **top)
            self.__dict__.update(built.__dict__)
            if backend is not None or dtype != "float32":
                self.to(backend=backend, dtype=dtype if dtype != "float32" else None)
            return
        if not isinstance(config, EncoderDecoderConfig):
            raise ValueError(
                f"config must be an EncoderDecoderConfig, got {type(config).__name__} "
                "(or build the model from parts: EncoderDecoderModel(encoder=..., decoder=...))"
            )
        self.config = config
        self._init(params, seed, dtype, backend)

    def _param_spec(self):
        return encoder_decoder_param_spec(self.config)

    @property
    def encoder(self) -> BertGenerationEncoder:
        """The encoder, sharing this model's arrays (with tie_encoder_decoder: the decoder's stack)."""
        enc = BertGenerationEncoder.__new__(BertGenerationEncoder)
        enc.config = self.config.encoder
        enc.params = encoder_params(self.params, self.config)
        return enc

    @property
    def decoder(self) -> BertGenerationDecoder:
        """The decoder, sharing this model's arrays."""
        dec = BertGenerationDecoder.__new__(BertGenerationDecoder)
        dec.config = self.config.decoder
        dec.params = self.params["decoder"]
        return dec

    @classmethod
    def from_encoder_decoder(
        cls, encoder: BertGenerationEncoder, decoder: BertGenerationDecoder, *, seed=0, **config_kwargs
    ):
        """Pair two models (as transformers' ``EncoderDecoderModel(encoder=..., decoder=...)``).

        The decoder needs is_decoder and add_cross_attention (transformers sets them in the config
        only, so a decoder built without cross-attention weights would run without them: raised here).
        With ``tie_encoder_decoder=True`` the decoder's weights are kept and the encoder's dropped.
        """
        for name, part, kind in (("encoder", encoder, BertGenerationEncoder), ("decoder", decoder, BertGenerationDecoder)):
            if not isinstance(part, kind):
                raise ValueError(f"{name} must be a minibertgen {kind.__name__}, got {type(part).__name__}")
        if not (decoder.config.is_decoder and decoder.config.add_cross_attention):
            raise ValueError(
                "the decoder must be built with is_decoder=True and add_cross_attention=True "
                "(e.g. BertGenerationDecoder.from_pretrained(path, is_decoder=True, add_cross_attention=True))"
            )
        if encoder.backend != decoder.backend:
            raise ValueError("encoder and decoder are on different backends; move one with .to(...)")
        config = EncoderDecoderConfig(encoder=encoder.config, decoder=decoder.config, **config_kwargs)
        flat = {f"decoder.{k}": v for k, v in flatten(decoder.params).items()}
        if config.tie_encoder_decoder:
            check_tieable(encoder.config, decoder.config)
        else:
            flat.update({f"encoder.{k}": v for k, v in flatten(encoder.params).items()})
        model = cls.__new__(cls)
        model.config = config
        proj_spec = {k: v for k, v in encoder_decoder_param_spec(config).items() if k.startswith("enc_to_dec")}
        if proj_spec:  # the hidden sizes differ: a fresh projection of the encoder output
            flat.update(init_params(proj_spec, seed, str(decoder.dtype)))
        model.params = to_device(unflatten(flat), decoder.backend)
        reports = (encoder.load_report, decoder.load_report)
        if any(r is not None for r in reports):
            model.load_report = (reports[0] or LoadReport()).merged("encoder", reports[1] or LoadReport(), "decoder")
        return model

    @classmethod
    def from_encoder_decoder_pretrained(
        cls,
        encoder_path,
        decoder_path,
        *,
        seed=0,
        backend=None,
        dtype="float32",
        fold_token_type=False,
        tie_encoder_decoder=False,
        cross_attention_init="random",
        decoder_start_token_id=None,
        pad_token_id=None,
        bos_token_id=None,
        eos_token_id=None,
    ):
        """Warm start (Rothe et al.): encoder and decoder from BERT or BertGeneration checkpoints.

        The decoder gains cross-attention, which BERT does not have, and a zero LM-head bias;
        ``load_report`` lists them, and what was dropped. ``cross_attention_init`` says how the
        cross-attention starts (see ``CROSS_ATTENTION_INITS``):

        - ``"random"`` (the paper, and transformers): N(0, initializer_range), seeded by ``seed``;
        - ``"self_attention"``: each layer's cross-attention is a copy of that layer's pre-trained
          self-attention (query, key, value, output dense and LayerNorm). A warm-started decoder is
          already a good language model, so with random cross-attention it can lower the loss a
          long way while ignoring the source (it learns the targets' templates); starting from
          weights that already make useful queries and keys, it reads the source from step one.
          ``minibertgen demo`` measures both (README, "The main job").

        Unlike transformers' ``from_encoder_decoder_pretrained``, a plain "bert" checkpoint gives
        BertGeneration parts here (as the BertGeneration bert2bert recipe builds them by hand),
        not BertModel + BertLMHeadModel.
        """
        if cross_attention_init not in CROSS_ATTENTION_INITS:
            raise ValueError(f"cross_attention_init must be one of {CROSS_ATTENTION_INITS}, got {cross_attention_init!r}")
        encoder = BertGenerationEncoder.from_pretrained(
            encoder_path, backend=backend, dtype=dtype, fold_token_type=fold_token_type
        )
        decoder = BertGenerationDecoder.from_pretrained(
            decoder_path, backend=backend, dtype=dtype, fold_token_type=fold_token_type,
            is_decoder=True, add_cross_attention=True, seed=seed,
        )  # fmt: skip
        if cross_attention_init == "self_attention":
            decoder.params = {**decoder.params, "bert": copy_self_to_cross_attention(decoder.params["bert"])}
            report = decoder.load_report
            report.copied = [(k, k.replace("crossattention.", "attention.")) for k in report.new if ".crossattention." in k]
            report.new = [k for k in report.new if ".crossattention." not in k]
        model = cls.from_encoder_decoder(
            encoder, decoder, seed=seed, tie_encoder_decoder=tie_encoder_decoder,
            decoder_start_token_id=decoder_start_token_id, pad_token_id=pad_token_id,
            bos_token_id=bos_token_id, eos_token_id=eos_token_id,
        )  # fmt: skip
        model.load_report = encoder.load_report.merged("encoder", decoder.load_report, "decoder")
        return model

    @classmethod
    def from_pretrained(cls, path, *, backend=None, dtype=None, strict=True, output_loading_info=False,
                        allow_nonfinite=False, **kwargs):  # fmt: skip
        """Load a transformers EncoderDecoderModel folder (or one saved here), with its
        generation_config.json when there is one.

        Keywords: the top-level config fields (decoder_start_token_id, pad_token_id, ...) override
        config.json; ``dtype``/``torch_dtype``, ``output_loading_info`` and ``allow_nonfinite`` as in
        BertGenerationEncoder.from_pretrained.

        A file whose config says tie_encoder_decoder but whose ``encoder.*`` tensors differ from the
        decoder's (transformers >= 5 saves such files: it no longer ties) loads *untied*, as 5.x runs
        it, with a warning; a file with equal copies (saved here) or none (4.57.6) stays tied.
        """
        dtype, overrides = _loading_options(path, dtype, kwargs, EncoderDecoderConfig)
        config = EncoderDecoderConfig.from_dict(read_json(os.path.join(os.fspath(path), "config.json")))
        if overrides:
            config = dataclasses.replace(config, **overrides)
        tensors, untied = None, []
        if config.tie_encoder_decoder:
            tensors = read_checkpoint_tensors(path)
            untied = differing_tied_copies(tensors)
            if untied:
                config = dataclasses.replace(config, tie_encoder_decoder=False)
                warnings.warn(
                    f"{path}: config.json says tie_encoder_decoder=true, but {len(untied)} encoder.* tensors differ "
                    "from their decoder.bert.* twins (transformers >= 5 saves separate copies): loaded untied, as "
                    "transformers 5.x runs it; model.config.tie_encoder_decoder is now False",
                    UserWarning, stacklevel=2,
                )  # fmt: skip
        model = cls._from_checkpoint(path, config, backend=backend, dtype=dtype, strict=strict, tensors=tensors,
                                     allow_nonfinite=allow_nonfinite)
        if untied:
            model.load_report.notes.append(
                f"tie_encoder_decoder=true in config.json, but {len(untied)} encoder.* tensors differ from the "
                "decoder's: loaded untied (as transformers 5.x runs it)"
            )
        model.generation_config = read_generation_config(path) or GenerationConfig()
        return (model, loading_info(model.load_report)) if output_loading_info else model

    @property
    def generation_config(self) -> GenerationConfig:
        """generate()'s defaults (transformers' field names); keyword arguments override them."""
        if "_generation_config" not in self.__dict__:  # models are also built without __init__
            self._generation_config = GenerationConfig()
        return self._generation_config

    @generation_config.setter
    def generation_config(self, value: GenerationConfig) -> None:
        if not isinstance(value, GenerationConfig):
            raise ValueError(f"generation_config must be a minibertgen.GenerationConfig, got {type(value).__name__}")
        self._generation_config = value

    def save_pretrained(self, path) -> None:
        """config.json, model.safetensors and generation_config.json (the token ids, and every
        non-default field of ``generation_config``), atomically, as transformers lays them out."""
        save_checkpoint(path, flatten(self.params), self.config.to_dict(), role=self.ROLE, config=self.config,
                        generation_fields=self.generation_config.to_dict())  # fmt: skip

    def generate(self, input_ids, attention_mask=None, **kwargs):
        """Greedy, sampling or beam search with a KV cache, as transformers' generate(); see
        minibertgen.generate.generate for the arguments and docs/generate.md for the full list.
        Returns the sequences array, or a GenerateOutput with return_dict_in_generate=True."""
        return generate(self, input_ids, attention_mask, **kwargs)

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        labels=None,
        *,
        token_type_ids=None,
        train=False,
        rng=None,
    ) -> Seq2SeqOutput:
        """input_ids: (B, S); decoder_input_ids or labels: (B, T); masks 0/1 of the same shapes.
        token_type_ids (B, S), as a tokenizer returns them, must be all 0 (see _check_token_types).

        Returns logits (B, T, V) and, with labels, the loss.
        """
        cfg, be = self.config, self.backend
        ids = as_ids(input_ids, "input_ids", cfg.encoder.vocab_size, be)
        _check_token_types(token_type_ids, ids.shape)
        mask = as_mask(attention_mask, "attention_mask", ids.shape, self.dtype, be)
        lab = as_ids(labels, "labels", cfg.decoder.vocab_size, be)
        dec_ids = as_ids(decoder_input_ids, "decoder_input_ids", cfg.decoder.vocab_size, be)
        if dec_ids is None:
            if lab is None:
                raise ValueError("give decoder_input_ids or labels (from which decoder_input_ids are made)")
            if cfg.decoder_start_token_id is None or cfg.pad_token_id is None:
                missing = "decoder_start_token_id" if cfg.decoder_start_token_id is None else "pad_token_id"
                raise ValueError(
                    f"config.{missing} is None: set it (model.config.{missing} = ...) to make "
                    "decoder_input_ids from labels"
                )
            dec_ids = shift_tokens_right(lab, cfg.pad_token_id, cfg.decoder_start_token_id)  # (B, T)
            if decoder_attention_mask is None:  # as the reference: inferred only for shifted labels
                decoder_attention_mask = (dec_ids != cfg.pad_token_id).astype(self.dtype)
        if lab is not None:
            _check_same_shape(lab, dec_ids, "labels", "decoder_input_ids")
        dec_mask = as_mask(decoder_attention_mask, "decoder_attention_mask", dec_ids.shape, self.dtype, be)
        _check_same_batch(ids, dec_ids)

        out, cache = encoder_decoder_forward(self.params, cfg, ids, mask, dec_ids, dec_mask, lab, rng=rng, train=train)
        return Seq2SeqOutput(out["logits"], out["loss"], out["encoder_last_hidden_state"], out["encoder_hidden_states"],
                             out["decoder_hidden_states"], dec_ids, cache)  # fmt: skip

    def backward(self, out: Seq2SeqOutput, dlogits=None):
        """Gradients of the loss (or of sum(logits * dlogits)) for every parameter, a tree like ``params``.

        The gradient into the encoder output is the sum over every decoder layer's cross-attention;
        with tie_encoder_decoder the encoder's gradients are added into the decoder's shared
        weights. Consumes ``out.cache``: to backpropagate twice, run the forward twice.
        """
        if dlogits is None and out.loss is None:
            raise ValueError("backward needs dlogits, or a forward run with labels")
        return complete_grads(encoder_decoder_backward(dlogits, out.cache, self.config), self.params)


# ================================================================ helpers


# transformers' from_pretrained options that concern torch, the Hub or quantization. None applies to
# NumPy arrays read from a local folder, so each is refused with its reason rather than ignored.
_LOCAL = "checkpoints are local folders here: minibertgen never downloads (see `minibertgen fetch`)"
TORCH_ONLY_OPTIONS = {
    "attn_implementation": "there is one attention implementation here, transformers' eager one (sdpa differs "
                           "from it only on fully-masked rows)",
    "device_map": "choose the device with backend='numpy' or backend='cupy' (or model.to(backend=...))",
    "max_memory": "the whole model is loaded onto one backend (backend='numpy' or 'cupy')",
    "offload_folder": "the whole model is loaded onto one backend (backend='numpy' or 'cupy')",
    "low_cpu_mem_usage": "the tensors are read once from a memory map; there is no torch module to build",
    "quantization_config": "quantized weights are not supported (float32 or float64 only)",
    "load_in_8bit": "quantized weights are not supported (float32 or float64 only)",
    "load_in_4bit": "quantized weights are not supported (float32 or float64 only)",
    "trust_remote_code": "no code is ever loaded from a checkpoint",
    "from_tf": "only safetensors files are read", "from_flax": "only safetensors files are read",
    "variant": "only model.safetensors (or its shards) is read",
    "tp_plan": "there is no tensor parallelism here", "key_mapping": "keys are mapped by weights.load_checkpoint",
    **{name: _LOCAL for name in ("revision", "cache_dir", "force_download", "proxies", "token", "use_auth_token",
                                 "subfolder", "resume_download", "mirror", "_commit_hash")},
}  # fmt: skip
# Options whose only meaningful value is what minibertgen always does: accepted with that value.
ALWAYS = {"use_safetensors": True, "local_files_only": True}
# torch dtype names (str(torch.float32) == "torch.float32") and NumPy names -> the dtypes computed in here.
SUPPORTED_DTYPE_NAMES = {"float32": "float32", "float": "float32", "float64": "float64", "double": "float64"}


def _dtype_name(dtype, path) -> str:
    """``dtype`` / ``torch_dtype`` as given to transformers -> "float32" or "float64"."""
    if dtype is None:
        return "float32"
    if isinstance(dtype, str) and dtype == "auto":  # the file's dtype where it can be computed in, else float32
        d = read_json(os.path.join(os.fspath(path), "config.json"))
        return "float64" if str(d.get("dtype") or d.get("torch_dtype")) == "float64" else "float32"
    try:
        name = np.dtype(dtype).name  # numpy dtypes and types, and their names
    except TypeError:
        name = str(dtype).removeprefix("torch.")  # torch.float32 -> "float32"
    if name not in SUPPORTED_DTYPE_NAMES:
        raise ValueError(
            f"dtype {dtype!r}: minibertgen computes in float32 or float64 (a float16/bfloat16 file is converted "
            "on load); pass dtype='float32', 'float64' or 'auto'"
        )
    return SUPPORTED_DTYPE_NAMES[name]


def _loading_options(path, dtype, kwargs: dict, config_class) -> tuple[str, dict]:
    """Sort from_pretrained's extra keywords: (the dtype to load in, config overrides).

    Raises ValueError for torch-only options (saying why they do not apply) and for names that are
    neither options nor fields of ``config_class`` (suggesting the closest).
    """
    kwargs = dict(kwargs)
    torch_dtype = kwargs.pop("torch_dtype", None)
    if dtype is not None and torch_dtype is not None and _dtype_name(dtype, path) != _dtype_name(torch_dtype, path):
        raise ValueError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; give one")
    dtype = _dtype_name(dtype if dtype is not None else torch_dtype, path)
    fields = {f.name for f in dataclasses.fields(config_class)} - {"extra", "encoder", "decoder"}
    overrides = {}
    for name, value in kwargs.items():
        if name in TORCH_ONLY_OPTIONS:
            raise ValueError(f"from_pretrained({name}={value!r}) is a torch/Hub option of transformers that does "
                             f"not apply here: {TORCH_ONLY_OPTIONS[name]}")  # fmt: skip
        if name in ALWAYS:
            if value != ALWAYS[name]:
                raise ValueError(f"{name}={value!r} is not possible: minibertgen always loads with {name}={ALWAYS[name]}")
            continue
        if name not in fields:
            close = difflib.get_close_matches(name, sorted(fields | set(TORCH_ONLY_OPTIONS)), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"from_pretrained got an unknown keyword {name!r}: it is neither a loading option nor a field of "
                f"{config_class.__name__}{hint}"
            )
        overrides[name] = value
    return dtype, overrides


# Dropped tensors that carry nothing the model lacks (transformers does not call them unexpected).
REDUNDANT = ("an equal copy", "a buffer", "tied to the word embeddings", "tie_encoder_decoder: an equal copy")


def loading_info(report: LoadReport) -> dict:
    """transformers' ``output_loading_info`` dict, from a LoadReport (which has the reasons too).

    Names are in the model's layout (a decoder's keys start with ``bert.``; transformers lists a
    file's unexpected keys as the file spells them). ``lm_head.decoder.bias`` is listed beside a
    missing ``lm_head.bias``: transformers counts the one shared bias under both names."""
    missing = list(report.new)
    missing += [k.replace("lm_head.bias", "lm_head.decoder.bias") for k in report.new if k.endswith("lm_head.bias")]
    return {
        "missing_keys": missing,
        "unexpected_keys": [key for key, why in report.dropped if not why.startswith(REDUNDANT)],
        "mismatched_keys": [],  # a shape mismatch raises CheckpointError here
        "error_msgs": [],
        "report": report,
    }


def _read_part_config(path, overrides) -> BertGenerationConfig:
    d = read_json(os.path.join(os.fspath(path), "config.json"))
    if d.get("model_type") == "encoder-decoder":
        raise ValueError(f"{path} holds an EncoderDecoderModel; load it with EncoderDecoderModel.from_pretrained")
    config = BertGenerationConfig.from_dict(d)
    return config.replace(**overrides) if overrides else config


def _check_token_types(token_type_ids, shape) -> None:
    """BertGeneration has no token-type embeddings: accept the all-zero token_type_ids a BERT
    tokenizer returns for single texts, and refuse segment ids it could not tell apart."""
    if token_type_ids is None:
        return
    types = np.asarray(to_numpy(token_type_ids))
    if types.shape != tuple(shape):
        raise ValueError(f"token_type_ids has shape {types.shape}, but input_ids has {tuple(shape)}; they must match")
    if types.size and (types.dtype.kind not in "iub" or types.any()):
        raise ValueError(
            "token_type_ids has non-zero entries (the second text of a pair): BertGeneration has no token-type "
            "embeddings, so segments cannot be told apart. Encode the pair as one sequence. (A BERT checkpoint "
            "loaded with fold_token_type=True has segment 0's embedding folded into its positions, which makes "
            "all-zero token_type_ids exact.)"
        )


def _check_memory(memory, batch, hidden):
    if memory.ndim != 3 or memory.shape[0] != batch or memory.shape[2] != hidden:
        raise ValueError(
            f"encoder_hidden_states has shape {tuple(memory.shape)}, expected ({batch}, source_length, {hidden})"
        )
    if not bool(get_xp(memory).isfinite(memory).all()):
        raise ValueError("encoder_hidden_states holds NaN or infinite values")


def _check_same_shape(a, b, name_a, name_b):
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {tuple(a.shape)} but {name_b} has {tuple(b.shape)}; they must match")


def _check_same_batch(ids, dec_ids):
    if ids.shape[0] != dec_ids.shape[0]:
        raise ValueError(
            f"input_ids has batch {ids.shape[0]} but decoder_input_ids/labels have batch {dec_ids.shape[0]}"
        )
