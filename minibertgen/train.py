"""Training: AdamW, the linear warmup/decay schedule, global-norm clipping, and the training loop.

Each piece equals its PyTorch/transformers counterpart, step for step:

- ``AdamW``: ``torch.optim.AdamW`` (decoupled weight decay applied before the moment update, bias
  correction, eps added to the bias-corrected sqrt of the second moment).
- ``linear_schedule``: transformers' ``get_linear_schedule_with_warmup`` (a LambdaLR: the k-th
  optimizer step uses ``lr * factor(k)``, k counted from 0, so with warmup the first step has lr 0).
- ``clip_grad_norm``: ``torch.nn.utils.clip_grad_norm_`` (the 2-norm of all gradients together;
  scale by ``max_norm / (norm + 1e-6)`` when that is below 1).

Parameters, gradients and optimizer moments are trees of the same shape (see model.py); the
optimizer works leaf by leaf on ``flatten``ed views, so names are transformers' state-dict keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .backend import get_xp
from .weights import flatten, unflatten

# ---------------------------------------------------------------- clipping


def global_norm(grads) -> float:
    """sqrt(sum of every squared gradient entry), as one float (the one host round trip)."""
    flat = flatten(grads)
    total = sum((g.astype("float64", copy=False) ** 2).sum() for g in flat.values())
    return math.sqrt(float(total))


def clip_grad_norm(grads, max_norm: float):
    """Scale all gradients together so their global 2-norm is at most ``max_norm``.

    Returns (clipped grads, the norm before clipping), like torch.nn.utils.clip_grad_norm_, which
    multiplies by min(1, max_norm / (norm + 1e-6)).
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    norm = global_norm(grads)
    scale = min(1.0, max_norm / (norm + 1e-6))
    return unflatten({k: g * scale for k, g in flatten(grads).items()}), norm


# ---------------------------------------------------------------- schedule


def linear_schedule(step: int, warmup_steps: int, total_steps: int) -> float:
    """The learning-rate factor for optimizer step ``step`` (0-based): a linear ramp from 0 over
    ``warmup_steps``, then a linear decay to 0 at ``total_steps`` (transformers' formula)."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


# ---------------------------------------------------------------- AdamW


def default_no_decay(name: str) -> bool:
    """The usual exemption from weight decay: biases and LayerNorm weights."""
    return name.endswith(".bias") or name.endswith("LayerNorm.weight")


@dataclass
class AdamW:
    """torch.optim.AdamW, written out. ``step`` returns new parameters (it never edits arrays in place).

    For each parameter p with gradient g, at step t = 1, 2, ...:
        p <- p * (1 - lr * weight_decay)                        decoupled weight decay
        m <- beta1 m + (1 - beta1) g;   v <- beta2 v + (1 - beta2) g^2
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    ``no_decay(name)`` selects parameters exempt from weight decay (None: decay everything, as torch).
    """

    lr: float = 1e-3
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-2
    no_decay: object = None
    t: int = 0
    m: dict = field(default_factory=dict)  # first moments, by state-dict name
    v: dict = field(default_factory=dict)  # second moments, by state-dict name

    def __post_init__(self):
        if not self.lr >= 0:
            raise ValueError(f"lr must be >= 0, got {self.lr}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {self.betas}")
        if not self.eps >= 0 or not self.weight_decay >= 0:
            raise ValueError(f"eps and weight_decay must be >= 0, got {self.eps}, {self.weight_decay}")

    def step(self, params, grads, lr: float | None = None):
        """One update with learning rate ``lr`` (default self.lr). Returns the new parameter tree."""
        lr = self.lr if lr is None else lr
        beta1, beta2 = self.betas
        self.t += 1
        bias1 = 1.0 - beta1**self.t
        bias2_sqrt = math.sqrt(1.0 - beta2**self.t)
        flat_params, flat_grads = flatten(params), flatten(grads)
        if flat_params.keys() != flat_grads.keys():
            missing = sorted(set(flat_params) ^ set(flat_grads))[:5]
            raise ValueError(f"gradients do not match the parameters (first differing keys: {missing})")
        updated = {}
        for name, p in flat_params.items():
            g = flat_grads[name]
            xp = get_xp(p)
            if name not in self.m:
                self.m[name], self.v[name] = xp.zeros_like(p), xp.zeros_like(p)
            decay = 0.0 if (self.no_decay is not None and self.no_decay(name)) else self.weight_decay
            p = p * (1.0 - lr * decay) if decay else p
            self.m[name] = beta1 * self.m[name] + (1.0 - beta1) * g
            self.v[name] = beta2 * self.v[name] + (1.0 - beta2) * (g * g)
            denom = xp.sqrt(self.v[name]) / bias2_sqrt + self.eps
            updated[name] = p - (lr / bias1) * self.m[name] / denom
        return unflatten(updated)

    def state_dict(self) -> dict:
        """Arrays and scalars to save beside a checkpoint (resume continues exactly)."""
        return {"t": self.t, "m": dict(self.m), "v": dict(self.v)}

    def load_state_dict(self, state: dict) -> None:
        self.t, self.m, self.v = int(state["t"]), dict(state["m"]), dict(state["v"])
