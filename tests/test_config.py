"""Configs: transformers' fields and defaults, JSON both ways, and clear errors for bad values."""

from __future__ import annotations

import dataclasses
import json

import pytest

import minibertgen as mbg
from minibertgen.config import ACTIVATIONS

from .conftest import require_oracle

# Published in the reference notes (§1): BertGenerationConfig's defaults in transformers 4.57.6.
DOCUMENTED_DEFAULTS = dict(
    vocab_size=50358, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=512,
    initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0, bos_token_id=2, eos_token_id=1,
    position_embedding_type="absolute", use_cache=True, is_decoder=False, add_cross_attention=False,
    tie_word_embeddings=True, tie_encoder_decoder=False, chunk_size_feed_forward=0, cross_attention_hidden_size=None,
)  # fmt: skip


def test_defaults_are_the_documented_ones():
    cfg = mbg.BertGenerationConfig()
    assert {k: getattr(cfg, k) for k in DOCUMENTED_DEFAULTS} == DOCUMENTED_DEFAULTS


@pytest.mark.oracle
def test_defaults_and_fields_equal_transformers():
    _, transformers = require_oracle()
    theirs = transformers.BertGenerationConfig()
    ours = mbg.BertGenerationConfig()
    for f in dataclasses.fields(ours):
        if f.name not in ("extra",):
            assert getattr(ours, f.name) == getattr(theirs, f.name), f.name


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (dict(hidden_size=30, num_attention_heads=4), "hidden_size"),
        (dict(hidden_act="gelu_fancy"), "hidden_act"),
        (dict(hidden_act="prelu"), "hidden_act"),
        (dict(position_embedding_type="rotary"), "position_embedding_type"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(num_hidden_layers=-1), "num_hidden_layers"),
        (dict(intermediate_size=2.5), "intermediate_size"),
        (dict(max_position_embeddings=True), "max_position_embeddings"),
        (dict(hidden_dropout_prob=1.0), "hidden_dropout_prob"),
        (dict(layer_norm_eps=0.0), "layer_norm_eps"),
        (dict(pad_token_id=50358), "pad_token_id"),
    ],
)
def test_invalid_values_name_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        mbg.BertGenerationConfig(**changes)


def test_every_activation_is_accepted():
    for name in ACTIVATIONS:
        assert mbg.BertGenerationConfig(hidden_act=name).hidden_act == name


def test_json_round_trip_keeps_unknown_fields(tmp_path):
    cfg = mbg.BertGenerationConfig(hidden_size=12, num_attention_heads=3, extra={"type_vocab_size": 2})
    cfg.to_json_file(tmp_path / "config.json")
    again = mbg.BertGenerationConfig.from_json_file(tmp_path / "config.json")
    assert again == cfg and again.extra == {"type_vocab_size": 2}


def test_a_bert_config_json_reads_with_bertgeneration_defaults_for_missing_ids(tmp_path):
    # the fields of all-MiniLM-L6-v2's config.json (reference §13)
    bert = dict(model_type="bert", architectures=["BertModel"], vocab_size=30522, hidden_size=384,
                num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536, hidden_act="gelu",
                max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
                position_embedding_type="absolute", gradient_checkpointing=False)  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(bert))
    cfg = mbg.BertGenerationConfig.from_json_file(tmp_path / "config.json")
    assert (cfg.hidden_size, cfg.head_dim, cfg.bos_token_id, cfg.eos_token_id) == (384, 32, 2, 1)
    assert cfg.extra["type_vocab_size"] == 2 and cfg.model_type == "bert"


def test_not_json_and_missing_file_are_named(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        mbg.BertGenerationConfig.from_json_file(tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        mbg.BertGenerationConfig.from_json_file(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="gpt2"):
        mbg.BertGenerationConfig.from_json_file(tmp_path / "other.json")


def test_encoder_decoder_config_makes_the_decoder_a_decoder():
    part = mbg.BertGenerationConfig(hidden_size=8, num_attention_heads=2)
    config = mbg.EncoderDecoderConfig(part, part)
    assert config.decoder.is_decoder and config.decoder.add_cross_attention
    assert not config.encoder.is_decoder
    assert config.decoder_start_token_id is None and config.pad_token_id is None  # as the reference (§8)


def test_tie_encoder_decoder_needs_matching_shapes():
    enc = mbg.BertGenerationConfig(hidden_size=8, num_attention_heads=2, num_hidden_layers=2)
    with pytest.raises(ValueError, match="num_hidden_layers"):
        mbg.EncoderDecoderConfig(enc, enc.replace(num_hidden_layers=3), tie_encoder_decoder=True)


@pytest.mark.oracle
def test_encoder_decoder_config_json_is_read_by_transformers_and_back(tmp_path):
    _, transformers = require_oracle()
    enc = mbg.BertGenerationConfig(hidden_size=8, num_attention_heads=2, position_embedding_type="relative_key")
    dec = enc.replace(hidden_act="relu", tie_word_embeddings=False)
    ours = mbg.EncoderDecoderConfig(enc, dec, decoder_start_token_id=5, pad_token_id=0, tie_encoder_decoder=True)
    ours.to_json_file(tmp_path / "config.json")
    theirs = transformers.EncoderDecoderConfig.from_pretrained(tmp_path)
    assert theirs.decoder_start_token_id == 5 and theirs.tie_encoder_decoder
    assert theirs.decoder.hidden_act == "relu" and not theirs.decoder.tie_word_embeddings
    assert theirs.decoder.is_decoder and theirs.decoder.add_cross_attention
    assert theirs.encoder.position_embedding_type == "relative_key"
    theirs.save_pretrained(tmp_path / "back")
    again = mbg.EncoderDecoderConfig.from_json_file(tmp_path / "back" / "config.json")
    assert again.encoder == ours.encoder and again.decoder == ours.decoder
    assert (again.decoder_start_token_id, again.pad_token_id, again.tie_encoder_decoder) == (5, 0, True)
