"""Gradients of every parameter and a short AdamW trajectory against the reference dumps (torch
autograd and torch.optim.AdamW in transformers 4.57.6, float64). No torch needed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import minibertgen as mbg
from minibertgen.testing import assert_close
from minibertgen.train import AdamW, clip_grad_norm, linear_schedule
from minibertgen.verify import dump_cases, read_dump

from .conftest import REFERENCE_DUMPS

CASES = [c for c in dump_cases(REFERENCE_DUMPS) if c.startswith("bert2bert")]
# float64 on both sides; gradients are O(0.01-1) sums of a few hundred products, so rounding-order
# differences stay ~1e-15; 1e-10 absolute + 1e-8 relative still catches any wrong term.
GRAD_TOL = dict(atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("case", CASES)
def test_every_parameter_gradient_matches_torch_autograd(case):
    folder = REFERENCE_DUMPS / case
    _, io = read_dump(folder)
    model = mbg.EncoderDecoderModel.from_pretrained(folder, dtype="float64")
    grads = mbg.flatten(model.backward(model(io["input_ids"], io["attention_mask"], labels=io["labels"])))
    reference = {k.removeprefix("grad."): v for k, v in io.items() if k.startswith("grad.")}
    assert sorted(grads) == sorted(reference), "the same parameters, each once"
    for name, grad in grads.items():
        assert_close(grad, reference[name], **GRAD_TOL, name=f"{case}: d loss / d {name}")


@pytest.mark.parametrize("case", CASES)
def test_adamw_with_clipping_and_schedule_follows_torch(case):
    folder = REFERENCE_DUMPS / case
    meta = json.loads((folder / "case.json").read_text())
    settings = meta["train"]
    _, io = read_dump(folder)
    model = mbg.EncoderDecoderModel.from_pretrained(folder, dtype="float64")
    optimizer = AdamW(lr=settings["lr"], weight_decay=settings["weight_decay"])
    losses = []
    for step in range(settings["total_steps"]):
        out = model(io["input_ids"], io["attention_mask"], labels=io["labels"], train=True)
        losses.append(float(out.loss))
        grads, _ = clip_grad_norm(model.backward(out), settings["max_grad_norm"])
        lr = settings["lr"] * linear_schedule(step, settings["warmup_steps"], settings["total_steps"])
        model.params = optimizer.step(model.params, grads, lr=lr)
    # Adam divides by sqrt(v): rounding-level gradient differences (~1e-15) move weights by far less
    # than lr; losses agree to ~1e-12 in float64, 1e-9 leaves room.
    assert_close(np.array(losses), io["train_losses"], atol=1e-9, name=f"{case}: training losses")
    assert losses[-1] < losses[0] - 1e-3, "the trajectory must move, or the check proves nothing"
