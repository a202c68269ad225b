"""Files as transformers 5.x writes them (reference §9 and Appendix), built by hand, and what loading
them here does: every decision is visible in ``load_report`` or a warning, never silent.

- a tie_encoder_decoder file whose encoder copies differ (5.x no longer ties) loads untied;
- an untied head whose lm_head.bias differs from lm_head.decoder.bias reports the ignored one;
- saving a relative-position model warns that transformers >= 5 runs it as absolute;
- a 5.x "relative" config without distance tables is refused with the way to load it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import minibertgen as mbg
from minibertgen.weights import read_safetensors, write_safetensors

CFG = mbg.BertGenerationConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=37)  # fmt: skip
IDS = np.array([[5, 6, 7, 8], [9, 10, 11, 0]])
MASK = (IDS != 0).astype(np.int64)
DEC = np.array([[2, 12, 13], [2, 14, 0]])


def edit_config(folder, **changes):
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_a_tie_file_with_differing_copies_loads_untied_as_5x_runs_it(tmp_path):
    untied = mbg.EncoderDecoderModel(mbg.EncoderDecoderConfig(CFG, CFG), seed=0)
    untied.save_pretrained(tmp_path)
    edit_config(tmp_path, tie_encoder_decoder=True)  # what 5.x writes: config true, two different stacks
    with pytest.warns(UserWarning, match="differ"):
        loaded = mbg.EncoderDecoderModel.from_pretrained(tmp_path)
    assert loaded.config.tie_encoder_decoder is False and "tie_encoder_decoder" in str(loaded.load_report)
    want = untied(IDS, MASK, decoder_input_ids=DEC).logits
    np.testing.assert_array_equal(loaded(IDS, MASK, decoder_input_ids=DEC).logits, want)


def test_a_tie_file_with_equal_copies_stays_tied_silently(tmp_path, recwarn):
    tied = mbg.EncoderDecoderModel(mbg.EncoderDecoderConfig(CFG, CFG, tie_encoder_decoder=True), seed=0)
    tied.save_pretrained(tmp_path)  # writes equal encoder.* copies for 5.x
    loaded = mbg.EncoderDecoderModel.from_pretrained(tmp_path)
    assert loaded.config.tie_encoder_decoder is True and not recwarn.list
    reasons = {why for key, why in loaded.load_report.dropped if key.startswith("encoder.")}
    assert reasons == {"tie_encoder_decoder: an equal copy of decoder.bert.*"}


def test_a_differing_lm_head_bias_is_reported_and_the_decoder_bias_used(tmp_path):
    decoder = mbg.BertGenerationDecoder(CFG.replace(is_decoder=True, tie_word_embeddings=False), seed=0)
    decoder.save_pretrained(tmp_path)
    tensors = read_safetensors(tmp_path / "model.safetensors")
    tensors["lm_head.bias"] = tensors["lm_head.bias"] + 1.0  # 5.x's untied head ignores this one
    write_safetensors(tmp_path / "model.safetensors", tensors)
    loaded = mbg.BertGenerationDecoder.from_pretrained(tmp_path)
    reasons = dict(loaded.load_report.dropped)
    assert reasons["lm_head.bias"].startswith("differs from lm_head.decoder.bias")
    np.testing.assert_array_equal(loaded.params["lm_head"]["bias"], tensors["lm_head.decoder.bias"])


@pytest.mark.parametrize("kind", ["relative_key", "relative_key_query"])
def test_saving_relative_positions_warns_about_transformers_5(tmp_path, kind):
    model = mbg.BertGenerationEncoder(CFG.replace(position_embedding_type=kind), seed=0)
    with pytest.warns(UserWarning, match="transformers >= 5"):
        model.save_pretrained(tmp_path)
    # A warning, not a refusal: the file is written, and loads here with its distance tables.
    loaded = mbg.BertGenerationEncoder.from_pretrained(tmp_path)
    assert loaded.load_report.new == [] and loaded.config.position_embedding_type == kind


def test_a_5x_relative_config_without_tables_is_refused_with_the_way_out(tmp_path):
    absolute = mbg.BertGenerationEncoder(CFG, seed=0)
    absolute.save_pretrained(tmp_path)
    edit_config(tmp_path, position_embedding_type="relative_key")  # 5.x stores the type, writes no tables
    with pytest.raises(mbg.CheckpointError, match="position_embedding_type='absolute'"):
        mbg.BertGenerationEncoder.from_pretrained(tmp_path)
    as_5x_ran_it = mbg.BertGenerationEncoder.from_pretrained(tmp_path, position_embedding_type="absolute")
    np.testing.assert_array_equal(as_5x_ran_it(IDS, MASK), absolute(IDS, MASK))
