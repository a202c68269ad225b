"""Rung 6: GPU parity. The same computations on CuPy and NumPy agree (skipped where no GPU is usable;
benchmarks/gpu_check.sh runs them with MINIBERTGEN_REQUIRE_GPU=1 on a machine that has one).

Tolerances: float32 on both sides, but cuBLAS and OpenBLAS sum in different orders and CuPy's
exp/erf differ in the last bits, so results agree to float32 accumulation error: ~1e-6 relative
per op, growing with depth to ~1e-5 on logits of size ~10 for these 2-layer models.
"""

from __future__ import annotations

import numpy as np
import pytest

import minibertgen as mbg
from minibertgen.backend import scatter_add, to_numpy
from minibertgen.testing import assert_close
from minibertgen.train import AdamW, clip_grad_norm

from .conftest import perturb, require_gpu

F32 = dict(atol=1e-4, rtol=1e-4)  # see the module docstring


@pytest.fixture(autouse=True)
def _gpu():
    require_gpu()


def pair(pos="relative_key_query", dtype="float32"):
    part = mbg.BertGenerationConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=24, max_position_embeddings=32,
                                    position_embedding_type=pos)  # fmt: skip
    config = mbg.EncoderDecoderConfig(part, part, decoder_start_token_id=2, pad_token_id=0, eos_token_id=1)
    host = perturb(mbg.EncoderDecoderModel(config, seed=0, dtype=dtype), scale=0.3)
    device = mbg.EncoderDecoderModel(config, params=host.params, dtype=dtype)
    return host, device.to("cupy")


IDS = np.array([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
MASK = (IDS != 0).astype(int)
LABELS = np.array([[13, 14, 1, -100], [15, 16, 17, 1]])


@pytest.mark.parametrize("pos", ["absolute", "relative_key", "relative_key_query"])
def test_forward_and_every_gradient(pos):
    host, device = pair(pos)
    a, b = host(IDS, MASK, labels=LABELS), device(IDS, MASK, labels=LABELS)
    assert mbg.backend.backend_of(b.logits) == "cupy"
    assert_close(to_numpy(b.logits), a.logits, **F32, name="logits")
    assert_close(float(b.loss), float(a.loss), **F32, name="loss")
    ga, gb = mbg.flatten(host.backward(a)), mbg.flatten(device.backward(b))
    for name in ga:
        assert_close(to_numpy(gb[name]), ga[name], **F32, name=name)


def test_training_steps_agree():
    host, device = pair()
    opt_a, opt_b = AdamW(lr=1e-3), AdamW(lr=1e-3)
    for _ in range(3):
        out_a, out_b = host(IDS, MASK, labels=LABELS), device(IDS, MASK, labels=LABELS)
        assert_close(float(out_b.loss), float(out_a.loss), **F32, name="loss")
        ga, _ = clip_grad_norm(host.backward(out_a), 1.0)
        gb, _ = clip_grad_norm(device.backward(out_b), 1.0)
        host.params, device.params = opt_a.step(host.params, ga), opt_b.step(device.params, gb)


def test_beam_search_agrees():
    host, device = pair(dtype="float64")  # float64 logits: both sides cast the same values to float32
    a = host.generate(IDS, MASK, num_beams=3, max_new_tokens=8, num_return_sequences=2)
    b = device.generate(IDS, MASK, num_beams=3, max_new_tokens=8, num_return_sequences=2)
    assert a.tolist() == b.tolist()
    assert_close(b.sequences_scores, a.sequences_scores, atol=1e-5, name="scores")  # float32 sums of ~8 terms


def test_scatter_add_and_token_checks_on_the_device():
    import cupy

    out = cupy.zeros((4, 2))
    scatter_add(out, cupy.asarray([1, 1, 3, 1]), cupy.ones((4, 2)))
    assert out[:, 0].get().tolist() == [0.0, 3.0, 0.0, 1.0]
    _, device = pair()
    with pytest.raises(ValueError, match="outside"):
        device(cupy.asarray([[5, 40]]), labels=[[1]])  # CuPy would wrap 40 silently


def test_real_minilm_bert2bert_on_the_device():
    from minibertgen.fetch import find_weights

    weights = find_weights("minilm-l6")
    if weights is None:
        pytest.skip("the MiniLM checkpoint is not on this machine")
    host = mbg.EncoderDecoderModel.from_encoder_decoder_pretrained(weights, weights, decoder_start_token_id=101,
                                                                   pad_token_id=0)  # fmt: skip
    device = mbg.EncoderDecoderModel(host.config, params=host.params).to("cupy")
    ids = np.array([[101, 7592, 1010, 2026, 3899, 2003, 10140, 1012, 102]])
    a, b = host(ids, labels=[[2026, 3899, 102]]), device(ids, labels=[[2026, 3899, 102]])
    # 6 layers of width 384 and a 30522-wide head: float32 accumulation over ~1500-term sums
    assert_close(to_numpy(b.logits), a.logits, atol=5e-4, rtol=1e-4, name="MiniLM logits")
