"""Rung 2 of the verification ladder: the committed reference dumps (transformers 4.57.6, float64).

Each case folder in tests/fixtures/reference/ was written by scripts/make_reference_dumps.py with
transformers' own save_pretrained, so these tests also prove that transformers' files load here.
No torch needed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import minibertgen as mbg
from minibertgen.testing import assert_close

from .conftest import REFERENCE_DUMPS

CASES = sorted(p.name for p in REFERENCE_DUMPS.iterdir() if (p / "case.json").exists())

# float64 throughout, activations O(1-10), two layers: ours and torch differ only by rounding order
# (~1e-15 relative); 1e-9 leaves room for that and still catches any real error, which is >= 1e-4.
ATOL64 = 1e-9
# Our float32 model against the float64 reference: float32 eps 6e-8 times logits of size ~10 and a
# few dozen accumulated terms gives ~1e-5; 1e-4 bounds that with margin.
ATOL32 = 1e-4
# BertGenerationDecoder's reference loss casts float64 logits to float32 first (ForCausalLMLoss,
# reference §7): float32 log-softmax of ~60 logits of size ~10 rounds to ~1e-6 of the loss.
ATOL_DECODER_LOSS = 5e-6


def run_case(folder, dtype):
    case = json.loads((folder / "case.json").read_text())
    io = load_file(str(folder / "io.safetensors"))
    if "loss" in io:
        io["loss"] = io["loss"].reshape(())  # safetensors stores a scalar as shape (1,)
    kind = case["kind"]
    if kind == "encoder":
        model = mbg.BertGenerationEncoder.from_pretrained(folder, dtype=dtype)
        out = model.forward(io["input_ids"], io["attention_mask"])
        ours = {f"hidden_states.{i}": h for i, h in enumerate(out.hidden_states)}
    elif kind == "decoder":
        model = mbg.BertGenerationDecoder.from_pretrained(folder, dtype=dtype)
        cross = model.config.add_cross_attention
        out = model(
            io["input_ids"], io["attention_mask"],
            encoder_hidden_states=io["encoder_hidden_states"].astype(dtype) if cross else None,
            encoder_attention_mask=io["encoder_attention_mask"] if cross else None,
            labels=io["labels"],
        )  # fmt: skip
        ours = {"logits": out.logits, "loss": out.loss}
        ours.update({f"hidden_states.{i}": h for i, h in enumerate(out.hidden_states)})
    else:
        model = mbg.EncoderDecoderModel.from_pretrained(folder, dtype=dtype)
        out = model(io["input_ids"], io["attention_mask"], labels=io["labels"])
        ours = {"logits": out.logits, "loss": out.loss, "encoder_last_hidden_state": out.encoder_last_hidden_state}
        ours.update({f"decoder_hidden_states.{i}": h for i, h in enumerate(out.decoder_hidden_states)})
    return model, ours, io


@pytest.mark.parametrize("case", CASES)
def test_float64_matches_reference(case):
    model, ours, io = run_case(REFERENCE_DUMPS / case, "float64")
    assert not model.load_report.new, f"nothing should be initialised when loading a full checkpoint: {model.load_report}"
    compared = 0
    for name, value in ours.items():
        assert name in io, f"the dump lacks {name}"
        atol = ATOL_DECODER_LOSS if (name == "loss" and case.startswith("decoder")) else ATOL64
        assert_close(value, io[name], atol=atol, name=f"{case}: {name}")
        compared += 1
    assert compared >= 3


@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("encoder")])
def test_float32_logits_match_reference(case):
    _, ours, io = run_case(REFERENCE_DUMPS / case, "float32")
    assert ours["logits"].dtype == np.float32
    assert_close(ours["logits"], io["logits"], atol=ATOL32, name=f"{case}: float32 logits")
    assert_close(ours["loss"], io["loss"], atol=ATOL32, name=f"{case}: float32 loss")


def test_every_position_type_and_part_is_covered():
    kinds = {json.loads((REFERENCE_DUMPS / c / "case.json").read_text())["kind"] for c in CASES}
    assert kinds == {"encoder", "decoder", "encoder-decoder"}
    for pos in ("absolute", "relative_key", "relative_key_query"):
        assert any(pos in c for c in CASES if c.startswith("bert2bert")), pos
