"""The oracle: the same model in transformers 4.57.6 + torch, built from our config and weights.

Used by the live differential tests, the script that writes the reference dumps, ``minibertgen
verify`` and the tutorials. torch and transformers are imported only when a function here runs:
``pip install "minibertgen[oracle]"`` installs them (``torch==2.13.0``, ``transformers==4.57.6``).

Every model is built with ``attn_implementation="eager"`` (BertGeneration's only implementation in
4.57.6) and put in eval mode. Relative-position decoders are run with ``use_cache=False``: that is
the reference setting in which each query uses its own position, as minibertgen does (DESIGN.md §1).
"""

from __future__ import annotations

import warnings

import numpy as np

from .backend import to_numpy
from .config import BertGenerationConfig, EncoderDecoderConfig

REFERENCE_VERSIONS = {"torch": "2.13.0", "transformers": "4.57.6"}


class OracleUnavailable(ImportError):
    """torch or transformers is missing, or not the reference version."""


def load_oracle():
    """Import (torch, transformers), or raise OracleUnavailable saying how to install them."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise OracleUnavailable(
            f"the oracle needs torch and transformers ({exc}); install with: pip install \"minibertgen[oracle]\""
        ) from exc
    if transformers.__version__ != REFERENCE_VERSIONS["transformers"]:
        raise OracleUnavailable(
            f"the oracle is transformers {REFERENCE_VERSIONS['transformers']}, found {transformers.__version__}"
        )
    transformers.logging.set_verbosity_error()  # its deprecation notices are about its API, not ours
    warnings.filterwarnings("ignore", module=r"transformers\..*")
    return torch, transformers


def oracle_available() -> bool:
    try:
        load_oracle()
    except OracleUnavailable:
        return False
    return True


def hf_config(cfg: BertGenerationConfig):
    """transformers.BertGenerationConfig with the same fields (eval: dropout does not matter)."""
    _, transformers = load_oracle()
    d = {k: v for k, v in cfg.to_dict().items() if k not in ("model_type", "architectures", "dtype")}
    d["attn_implementation"] = "eager"
    return transformers.BertGenerationConfig(**d)


def _load_state(model, flat: dict, torch_dtype) -> None:
    """Copy {name: array} into a torch model; everything but the tied aliases must be covered."""
    torch, _ = load_oracle()
    state = {k: torch.from_numpy(np.ascontiguousarray(to_numpy(v))).to(torch_dtype) for k, v in flat.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    aliases = ("lm_head.decoder.weight", "lm_head.decoder.bias")
    missing = [k for k in missing if not k.endswith(aliases) and not k.startswith("encoder.")]
    if missing or unexpected:
        raise RuntimeError(f"oracle state mismatch: missing {missing}, unexpected {unexpected}")


def hf_model(config, flat: dict, dtype="float64"):
    """A transformers BertGenerationEncoder / BertGenerationDecoder / EncoderDecoderModel holding ``flat``.

    config: a BertGenerationConfig (decoder when is_decoder or when ``flat`` has ``lm_head.*``) or an
    EncoderDecoderConfig; flat: our {name: array}.
    """
    torch, transformers = load_oracle()
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[str(np.dtype(dtype))]
    if isinstance(config, EncoderDecoderConfig):
        encoder = transformers.BertGenerationEncoder(hf_config(config.encoder))
        decoder = transformers.BertGenerationDecoder(hf_config(config.decoder))
        ed_config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
            encoder.config, decoder.config, tie_encoder_decoder=config.tie_encoder_decoder
        )
        ed_config.decoder_start_token_id = config.decoder_start_token_id
        ed_config.pad_token_id = config.pad_token_id
        model = transformers.EncoderDecoderModel(config=ed_config, encoder=encoder, decoder=decoder)
    elif any(k.startswith("lm_head.") for k in flat):
        model = transformers.BertGenerationDecoder(hf_config(config))
    else:
        model = transformers.BertGenerationEncoder(hf_config(config))
    model = model.to(torch_dtype)
    _load_state(model, flat, torch_dtype)
    return model.eval()


def to_torch(x, dtype=None):
    torch, _ = load_oracle()
    if x is None:
        return None
    t = torch.from_numpy(np.ascontiguousarray(to_numpy(x)))
    return t if dtype is None else t.to(dtype)


def run_encoder_decoder(model, input_ids, attention_mask=None, decoder_input_ids=None,
                        decoder_attention_mask=None, labels=None) -> dict:  # fmt: skip
    """Run a transformers EncoderDecoderModel (use_cache=False) and return numpy outputs."""
    torch, _ = load_oracle()
    with torch.no_grad():
        out = model(
            input_ids=to_torch(input_ids).long(),
            attention_mask=to_torch(attention_mask),
            decoder_input_ids=None if decoder_input_ids is None else to_torch(decoder_input_ids).long(),
            decoder_attention_mask=to_torch(decoder_attention_mask),
            labels=None if labels is None else to_torch(labels).long(),
            use_cache=False,
            output_hidden_states=True,
        )
    result = {
        "logits": out.logits.numpy(),
        "encoder_last_hidden_state": out.encoder_last_hidden_state.numpy(),
        "encoder_hidden_states": [h.numpy() for h in out.encoder_hidden_states],
        "decoder_hidden_states": [h.numpy() for h in out.decoder_hidden_states],
    }
    if out.loss is not None:
        result["loss"] = float(out.loss)
    return result


def run_encoder(model, input_ids, attention_mask=None) -> dict:
    torch, _ = load_oracle()
    with torch.no_grad():
        out = model(input_ids=to_torch(input_ids).long(), attention_mask=to_torch(attention_mask),
                    output_hidden_states=True)  # fmt: skip
    return {"last_hidden_state": out.last_hidden_state.numpy(), "hidden_states": [h.numpy() for h in out.hidden_states]}


def run_decoder(model, input_ids, attention_mask=None, encoder_hidden_states=None,
                encoder_attention_mask=None, labels=None) -> dict:  # fmt: skip
    torch, _ = load_oracle()
    with torch.no_grad():
        out = model(
            input_ids=to_torch(input_ids).long(),
            attention_mask=to_torch(attention_mask),
            encoder_hidden_states=to_torch(encoder_hidden_states),
            encoder_attention_mask=to_torch(encoder_attention_mask),
            labels=None if labels is None else to_torch(labels).long(),
            use_cache=False,
            output_hidden_states=True,
        )
    result = {"logits": out.logits.numpy(), "hidden_states": [h.numpy() for h in out.hidden_states]}
    if out.loss is not None:
        result["loss"] = float(out.loss)
    return result
