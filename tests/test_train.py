"""The optimizer pieces against their definitions, and the training loop: resume exactness,
checkpoints, the loss curve, and a clear stop on a non-finite loss."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

import minibertgen as mbg
from minibertgen.testing import assert_close
from minibertgen.train import (
    AdamW,
    TrainingError,
    TrainSettings,
    clip_grad_norm,
    latest_checkpoint,
    linear_schedule,
    read_pairs,
    train,
)

from .conftest import require_oracle


class CharTokenizer:
    """A test double with the tokenizer interface train() uses: one id per lowercase letter."""

    pad_token_id, cls_token_id, sep_token_id = 0, 1, 2

    def encode(self, text, add_special_tokens=True):
        ids = [3 + ord(c) - ord("a") for c in text if "a" <= c <= "z"]
        return [self.cls_token_id, *ids, self.sep_token_id] if add_special_tokens else ids


PAIRS = [("abc", "cba"), ("hello", "olleh"), ("xyz", "zyx"), ("mno", "onm"), ("qq", "qq"), ("ab", "ba")]


def tiny_model(seed=0):
    part = mbg.BertGenerationConfig(vocab_size=29, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=24, max_position_embeddings=16)  # fmt: skip
    return mbg.EncoderDecoderModel(mbg.EncoderDecoderConfig(part, part), seed=seed)


@pytest.mark.oracle
def test_adamw_schedule_and_clipping_equal_torch():
    torch, transformers = require_oracle()
    rng = np.random.default_rng(0)
    params = {"a": {"weight": rng.normal(size=(3, 4)), "bias": rng.normal(size=3)}}
    tensors = [torch.tensor(params["a"]["weight"], requires_grad=True), torch.tensor(params["a"]["bias"], requires_grad=True)]
    torch_opt = torch.optim.AdamW([{"params": [tensors[0]], "weight_decay": 0.1}, {"params": [tensors[1]], "weight_decay": 0.0}],
                                  lr=0.05, betas=(0.8, 0.95), eps=1e-6)  # fmt: skip
    schedule = transformers.get_linear_schedule_with_warmup(torch_opt, 3, 10)
    ours = AdamW(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1, no_decay=lambda n: n.endswith("bias"))
    for step in range(10):
        grads = {"a": {"weight": rng.normal(size=(3, 4)) * 3, "bias": rng.normal(size=3) * 3}}
        tensors[0].grad, tensors[1].grad = torch.tensor(grads["a"]["weight"]), torch.tensor(grads["a"]["bias"])
        torch_norm = torch.nn.utils.clip_grad_norm_(tensors, 2.0)
        grads, norm = clip_grad_norm(grads, 2.0)
        assert abs(norm - float(torch_norm)) < 1e-12  # float64: one sum of 15 squares
        assert abs(schedule.get_last_lr()[0] - 0.05 * linear_schedule(step, 3, 10)) < 1e-15  # one float64 ratio
        torch_opt.step()
        schedule.step()
        params = ours.step(params, grads, lr=0.05 * linear_schedule(step, 3, 10))
    # float64 through 10 steps of the same formulas: rounding only
    assert_close(params["a"]["weight"], tensors[0].detach().numpy(), atol=1e-12, name="weight")
    assert_close(params["a"]["bias"], tensors[1].detach().numpy(), atol=1e-12, name="bias")


def test_schedule_shape():
    assert [linear_schedule(s, 2, 6) for s in range(7)] == [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]


def test_training_lowers_the_loss_and_writes_curve_and_checkpoint(tmp_path):
    settings = TrainSettings(steps=30, batch_size=3, lr=3e-3, warmup_steps=3, eval_every=10)
    result = train(tiny_model(), CharTokenizer(), PAIRS, tmp_path, settings, eval_pairs=PAIRS[:2], progress=False)
    losses = [r["loss"] for r in result.history]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5, losses
    rows = list(csv.DictReader(open(tmp_path / "loss.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    assert rows[9]["eval_loss"] != "" and rows[10]["eval_loss"] == ""
    again = mbg.EncoderDecoderModel.from_pretrained(result.checkpoint)
    assert again.config.decoder_start_token_id == 1 and again.config.pad_token_id == 0
    assert json.loads((tmp_path / "checkpoint-000030" / "trainer_state.json").read_text())["step"] == 30


def test_resume_continues_exactly(tmp_path):
    """6 steps straight equal 3 steps, a resume from the checkpoint, and 3 more (dropout on)."""
    settings = TrainSettings(steps=6, batch_size=2, lr=1e-3, warmup_steps=2, save_every=3)

    def model_with_dropout():
        model = tiny_model(seed=3)
        model.config.encoder.hidden_dropout_prob = model.config.decoder.hidden_dropout_prob = 0.1
        return model

    straight = train(model_with_dropout(), CharTokenizer(), PAIRS, tmp_path / "a", settings, progress=False)
    train(model_with_dropout(), CharTokenizer(), PAIRS, tmp_path / "b", settings, stop_at=3, progress=False)
    assert latest_checkpoint(tmp_path / "b").endswith("checkpoint-000003")
    resumed = train(tiny_model(seed=99), CharTokenizer(), PAIRS, tmp_path / "b", settings, resume=True,
                    progress=False)  # fmt: skip
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]
    a, b = mbg.flatten(straight.model.params), mbg.flatten(resumed.model.params)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(tmp_path):
    class PoisonedAtThirdCall(mbg.EncoderDecoderModel):
        calls = 0

        def __call__(self, *args, **kwargs):
            out = super().__call__(*args, **kwargs)
            type(self).calls += 1
            if type(self).calls == 3:
                out.loss = np.float32("nan")
            return out

    model = PoisonedAtThirdCall(tiny_model().config, seed=0)
    settings = TrainSettings(steps=5, batch_size=2, save_every=1)
    with pytest.raises(TrainingError, match=r"nan at step 3.*checkpoint-000002"):
        train(model, CharTokenizer(), PAIRS, tmp_path, settings, progress=False)
    assert latest_checkpoint(tmp_path).endswith("checkpoint-000002")
    assert math.isfinite(float(mbg.EncoderDecoderModel.from_pretrained(latest_checkpoint(tmp_path))(
        [[1, 3, 2]], labels=[[3, 2]]).loss))  # fmt: skip


def test_bad_data_lines_are_named(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"source": "a", "target": "b"}\n\n{"source": "a"}\n')
    with pytest.raises(ValueError, match=r"data.jsonl:3: expected"):
        read_pairs(path)
    path.write_text('{"source": "a", "target": "b"}\nnot json\n')
    with pytest.raises(ValueError, match=r"data.jsonl:2: not a JSON object"):
        read_pairs(path)


KILL_MID_SAVE = """
import os, signal, sys
import minibertgen.train as T
import minibertgen.weights as W
from tests.test_train import CharTokenizer, PAIRS, tiny_model
out = sys.argv[1]
settings = T.TrainSettings(steps=3, batch_size=2, save_every=1)
T.train(tiny_model(), CharTokenizer(), PAIRS, out, settings, stop_at=1, progress=False)  # checkpoint 1, whole
real_write = W.write_safetensors
def write_then_die(path, tensors):
    with open(path, "wb") as f:  # half a file, then the process is killed: no cleanup runs
        f.write(b"\\x00" * 1000)
    os.kill(os.getpid(), signal.SIGKILL)
W.write_safetensors = write_then_die
T.train(tiny_model(), CharTokenizer(), PAIRS, out, settings, resume=True, progress=False)
"""


def test_a_kill_mid_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", KILL_MID_SAVE, str(tmp_path)], cwd=root, capture_output=True, text=True)
    assert result.returncode == -9, result.stderr  # SIGKILL, mid-save
    assert latest_checkpoint(tmp_path).endswith("checkpoint-000001")
    assert any(".tmp-" in p.name for p in tmp_path.iterdir()), "the half-written save stays aside"
    mbg.EncoderDecoderModel.from_pretrained(latest_checkpoint(tmp_path))  # the old checkpoint loads
    settings = TrainSettings(steps=3, batch_size=2, save_every=1)
    resumed = train(tiny_model(), CharTokenizer(), PAIRS, tmp_path, settings, resume=True, progress=False)
    assert [r["step"] for r in resumed.history] == [1, 2, 3]
    assert not any(".tmp" in p.name for p in tmp_path.iterdir()), "the resumed run cleans the leftovers"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adamw_in_place_equals_its_formulas_exactly(dtype):
    """AdamW.step reuses buffers; the numbers must be the docstring's formulas, operation by operation."""
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(5, 4)).astype(dtype), "b": rng.normal(size=4).astype(dtype)}
    opt = AdamW(lr=1e-2, weight_decay=0.1, no_decay=lambda name: name == "b")
    lr, (beta1, beta2), eps = opt.lr, opt.betas, opt.eps
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in params.items()}
    want = dict(params)
    for t in range(1, 4):
        grads = {k: rng.normal(size=x.shape).astype(dtype) for k, x in params.items()}
        params = opt.step(params, grads)
        for k, g in grads.items():
            m[k] = beta1 * m[k] + (1.0 - beta1) * g
            v[k] = beta2 * v[k] + (1.0 - beta2) * (g * g)
            step = m[k] / (np.sqrt(v[k]) / math.sqrt(1.0 - beta2**t) + eps) * (lr / (1.0 - beta1**t))
            decayed = want[k] * (1.0 - lr * 0.1) if k == "w" else want[k]
            want[k] = decayed - step
            np.testing.assert_array_equal(params[k], want[k], err_msg=f"{k} at step {t}")
