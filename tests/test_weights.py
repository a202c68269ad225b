"""Checkpoints: round trips both ways with transformers 4.57.6, warm start, and strict loading."""

from __future__ import annotations

import json

import numpy as np
import pytest

import minibertgen as mbg
from minibertgen import reference
from minibertgen.testing import assert_close
from minibertgen.weights import CheckpointError, read_safetensors, unflatten, write_safetensors

from .conftest import perturb, require_oracle

# float64 models on both sides: differences are rounding order only (~1e-15); see test_oracle.py.
TOL = dict(atol=1e-9, rtol=1e-9)


def tiny(**kw) -> mbg.BertGenerationConfig:
    base = dict(vocab_size=40, hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=20,
                max_position_embeddings=16)  # fmt: skip
    return mbg.BertGenerationConfig(**{**base, **kw})


def ed_config(pos="absolute", tied_head=True, tie_encoder_decoder=False, enc_hidden=12):
    enc = tiny(position_embedding_type=pos, hidden_size=enc_hidden)
    dec = tiny(position_embedding_type=pos, tie_word_embeddings=tied_head)
    return mbg.EncoderDecoderConfig(enc, dec, decoder_start_token_id=2, pad_token_id=0,
                                    tie_encoder_decoder=tie_encoder_decoder)  # fmt: skip


IDS = np.array([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
LABELS = np.array([[13, 14, 15, 1], [16, 17, 1, -100]])

ED_VARIANTS = {
    "absolute_tied": dict(),
    "absolute_untied": dict(tied_head=False),
    "relative_key": dict(pos="relative_key"),
    "relative_key_query_untied": dict(pos="relative_key_query", tied_head=False),
    "tie_encoder_decoder": dict(tie_encoder_decoder=True),
    "enc_to_dec_proj": dict(enc_hidden=9),
}


# ---------------------------------------------------------------- trees


def test_flatten_and_unflatten_are_inverse():
    model = mbg.EncoderDecoderModel(ed_config(), seed=0)
    flat = mbg.flatten(model.params)
    assert "decoder.bert.encoder.layer.1.crossattention.self.key.weight" in flat
    assert isinstance(model.params["encoder"]["encoder"]["layer"], list)
    again = mbg.flatten(unflatten(flat))
    assert list(again) == list(flat)
    assert all(again[k] is flat[k] for k in flat)


# ---------------------------------------------------------------- round trips here


@pytest.mark.parametrize("variant", sorted(ED_VARIANTS))
def test_save_and_load_here_is_exact(tmp_path, variant):
    model = perturb(mbg.EncoderDecoderModel(ed_config(**ED_VARIANTS[variant]), seed=1, dtype="float64"))
    model.save_pretrained(tmp_path)
    again = mbg.EncoderDecoderModel.from_pretrained(tmp_path, dtype="float64")
    assert again.config.to_dict() == model.config.to_dict()
    a, b = mbg.flatten(model.params), mbg.flatten(again.params)
    assert list(a) == list(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert not again.load_report.new


def test_generation_config_carries_the_decoder_start_token(tmp_path):
    mbg.EncoderDecoderModel(ed_config(), seed=0).save_pretrained(tmp_path)
    gen = json.loads((tmp_path / "generation_config.json").read_text())
    assert gen["decoder_start_token_id"] == 2 and gen["pad_token_id"] == 0


# ---------------------------------------------------------------- round trips with transformers


@pytest.mark.oracle
@pytest.mark.parametrize("variant", sorted(ED_VARIANTS))
def test_saved_here_loads_in_transformers_with_the_same_logits(tmp_path, variant):
    _, transformers = require_oracle()
    model = perturb(mbg.EncoderDecoderModel(ed_config(**ED_VARIANTS[variant]), seed=2, dtype="float64"))
    model.save_pretrained(tmp_path)
    # dtype="auto": transformers reads the dtype our config.json records (float64)
    hf, info = transformers.EncoderDecoderModel.from_pretrained(tmp_path, output_loading_info=True, dtype="auto")
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    assert hf.dtype.__str__() == "torch.float64"
    theirs = reference.run_encoder_decoder(hf.eval(), IDS, MASK, labels=LABELS)
    ours = model(IDS, MASK, labels=LABELS)
    assert_close(ours.logits, theirs["logits"], **TOL, name="logits")
    assert_close(ours.loss, theirs["loss"], **TOL, name="loss")


@pytest.mark.oracle
@pytest.mark.parametrize("part", ["encoder", "decoder_tied", "decoder_untied"])
def test_saved_parts_load_in_transformers(tmp_path, part):
    _, transformers = require_oracle()
    if part == "encoder":
        model = perturb(mbg.BertGenerationEncoder(tiny(position_embedding_type="relative_key"), dtype="float64"))
        cls = transformers.BertGenerationEncoder
    else:
        cfg = tiny(is_decoder=True, add_cross_attention=True, tie_word_embeddings=part == "decoder_tied")
        model = perturb(mbg.BertGenerationDecoder(cfg, dtype="float64"))
        cls = transformers.BertGenerationDecoder
    model.save_pretrained(tmp_path)
    hf, info = cls.from_pretrained(tmp_path, output_loading_info=True, dtype="auto")
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    if part == "encoder":
        assert_close(model(IDS, MASK), reference.run_encoder(hf.eval(), IDS, MASK)["last_hidden_state"], **TOL)
    else:
        memory = np.random.default_rng(0).normal(size=(2, 3, 12))
        theirs = reference.run_decoder(hf.eval(), IDS, MASK, memory)
        assert_close(model(IDS, MASK, encoder_hidden_states=memory).logits, theirs["logits"], **TOL)


@pytest.mark.oracle
@pytest.mark.parametrize("variant", sorted(ED_VARIANTS))
def test_saved_by_transformers_loads_here(tmp_path, variant):
    torch, _ = require_oracle()
    config = ed_config(**ED_VARIANTS[variant])
    source = perturb(mbg.EncoderDecoderModel(config, seed=3, dtype="float64"))
    hf = reference.hf_model(config, mbg.flatten(source.params))
    hf.save_pretrained(tmp_path)
    ours = mbg.EncoderDecoderModel.from_pretrained(tmp_path, dtype="float64")
    assert not ours.load_report.new
    theirs = reference.run_encoder_decoder(hf, IDS, MASK, labels=LABELS)
    assert_close(ours(IDS, MASK, labels=LABELS).logits, theirs["logits"], **TOL, name="logits")


# ---------------------------------------------------------------- BERT checkpoints and warm start


def bert_checkpoint(tmp_path, transformers, torch, cls_name="BertModel"):
    """A tiny BERT checkpoint written by transformers (token types, pooler, maybe cls.* heads)."""
    config = transformers.BertConfig(vocab_size=40, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                                     intermediate_size=20, max_position_embeddings=16)  # fmt: skip
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(config).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    return model


@pytest.mark.oracle
def test_bert_checkpoint_with_folded_token_types_reproduces_bertmodel(tmp_path):
    torch, transformers = require_oracle()
    bert = bert_checkpoint(tmp_path, transformers, torch)
    plain = mbg.BertGenerationEncoder.from_pretrained(tmp_path, dtype="float64")
    dropped = {k for k, _ in plain.load_report.dropped}
    assert {"embeddings.token_type_embeddings.weight", "pooler.dense.weight", "pooler.dense.bias"} <= dropped
    folded = mbg.BertGenerationEncoder.from_pretrained(tmp_path, dtype="float64", fold_token_type=True)
    with torch.no_grad():
        want = bert(torch.from_numpy(IDS), attention_mask=torch.from_numpy(MASK)).last_hidden_state.numpy()
    assert_close(folded(IDS, MASK), want, **TOL, name="BertModel last_hidden_state")
    assert np.abs(plain(IDS, MASK) - want).max() > 1e-3  # without folding, BertGeneration differs


@pytest.mark.oracle
def test_warm_start_from_bert_pretraining_checkpoint(tmp_path):
    torch, transformers = require_oracle()
    bert_checkpoint(tmp_path, transformers, torch, "BertForPreTraining")  # keys under bert., plus cls.*
    model = mbg.EncoderDecoderModel.from_encoder_decoder_pretrained(
        tmp_path, tmp_path, seed=5, decoder_start_token_id=2, pad_token_id=0
    )
    new = set(model.load_report.new)
    assert sum(".crossattention." in k for k in new) == 2 * 10  # 10 tensors per layer, 2 layers
    assert "decoder.lm_head.bias" in new and len(new) == 21
    assert np.all(model.params["decoder"]["lm_head"]["bias"] == 0)
    assert any(k.startswith("decoder.cls.") for k, _ in model.load_report.dropped)
    assert "crossattention" in str(model.load_report)
    enc = mbg.flatten(model.params["encoder"])
    dec = mbg.flatten(model.params["decoder"]["bert"])
    assert np.array_equal(enc["encoder.layer.1.output.dense.weight"], dec["encoder.layer.1.output.dense.weight"])
    assert np.isfinite(float(model(IDS, MASK, labels=LABELS).loss))


# ---------------------------------------------------------------- strict loading and bad files


@pytest.fixture
def saved_encoder(tmp_path):
    mbg.BertGenerationEncoder(tiny(), seed=0).save_pretrained(tmp_path)
    return tmp_path


def rewrite_tensors(folder, edit):
    tensors = read_safetensors(folder / "model.safetensors")
    edit(tensors)
    write_safetensors(folder / "model.safetensors", tensors)


def test_missing_tensor_is_named(saved_encoder):
    rewrite_tensors(saved_encoder, lambda t: t.pop("encoder.layer.1.intermediate.dense.bias"))
    with pytest.raises(CheckpointError, match=r"missing tensors \['encoder.layer.1.intermediate.dense.bias'\]"):
        mbg.BertGenerationEncoder.from_pretrained(saved_encoder)


def test_unexpected_tensor_is_named_unless_not_strict(saved_encoder):
    rewrite_tensors(saved_encoder, lambda t: t.update({"encoder.layer.0.extra.weight": np.zeros(3, np.float32)}))
    with pytest.raises(CheckpointError, match="encoder.layer.0.extra.weight"):
        mbg.BertGenerationEncoder.from_pretrained(saved_encoder)
    model = mbg.BertGenerationEncoder.from_pretrained(saved_encoder, strict=False)
    assert ("encoder.layer.0.extra.weight", "unexpected") in model.load_report.dropped


def test_shape_mismatch_names_tensor_and_both_shapes(saved_encoder):
    with pytest.raises(CheckpointError, match=r"word_embeddings.weight has shape \(40, 12\).*\(41, 12\)"):
        mbg.BertGenerationEncoder.from_pretrained(saved_encoder, vocab_size=41)


def test_legacy_layernorm_gamma_beta_names_load(saved_encoder):
    def edit(t):
        t["embeddings.LayerNorm.gamma"] = t.pop("embeddings.LayerNorm.weight")
        t["embeddings.LayerNorm.beta"] = t.pop("embeddings.LayerNorm.bias")

    rewrite_tensors(saved_encoder, edit)
    model = mbg.BertGenerationEncoder.from_pretrained(saved_encoder)
    assert "embeddings.LayerNorm.weight" in model.load_report.loaded


def test_bfloat16_is_read_as_the_top_half_of_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625], dtype=np.float32)  # exactly representable in bfloat16
    raw = (values.view(np.uint32) >> 16).astype(np.uint16)
    header = json.dumps({"x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    (tmp_path / "t.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + raw.tobytes())
    assert read_safetensors(tmp_path / "t.safetensors")["x"].tolist() == values.tolist()


def test_truncated_file_is_reported(saved_encoder):
    path = saved_encoder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        mbg.BertGenerationEncoder.from_pretrained(saved_encoder)


def test_pickle_checkpoint_is_refused_with_the_conversion(tmp_path):
    mbg.BertGenerationEncoder(tiny()).config.to_json_file(tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="never unpickles.*safe_serialization=True"):
        mbg.BertGenerationEncoder.from_pretrained(tmp_path)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        mbg.BertGenerationEncoder.from_pretrained(tmp_path / "nowhere")
