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

The loop, ``train``, owns its run folder (a lock, a run id, pruning of its own checkpoints only),
checks before step 1 what it can know then, resumes bit for bit, and never keeps or saves a
non-finite number; "run folders" below has the pieces.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .backend import get_xp, to_device
from .config import process_alive, write_json_atomic
from .weights import flatten, unflatten

# ---------------------------------------------------------------- clipping


def global_norm(grads) -> float:
    """sqrt(sum of every squared gradient entry), as one float (the one host round trip).

    The per-tensor sums are added in sorted-name order and in float64, so the result does not
    depend on the order the tree was built in: a warm-started model and the same model loaded from
    disk order their trees differently, and a resumed run must clip exactly as the uninterrupted one
    did. Each tensor's own sum is a BLAS dot in its dtype (deterministic: no copy, no squared array)."""
    flat = flatten(grads)
    total = 0.0
    for name in sorted(flat):
        g = flat[name].reshape(-1)
        total = total + get_xp(g).vdot(g, g).astype("float64")  # stays on the device until float()
    return math.sqrt(float(total))


def clip_grad_norm(grads, max_norm: float):
    """Scale all gradients together so their global 2-norm is at most ``max_norm``.

    Returns (clipped grads, the norm before clipping), like torch.nn.utils.clip_grad_norm_, which
    multiplies by min(1, max_norm / (norm + 1e-6)).
    """
    if not (math.isfinite(max_norm) and max_norm > 0):  # nan would silently disable clipping
        raise ValueError(f"max_norm must be a finite number > 0, got {max_norm}")
    norm = global_norm(grads)
    if not math.isfinite(norm):  # nothing sensible to scale by (torch would make every gradient nan): the caller stops
        return grads, norm
    scale = min(1.0, max_norm / (norm + 1e-6))
    if scale == 1.0:  # torch multiplies by 1.0 here; skipping it changes no value
        return grads, norm
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
        if not (math.isfinite(self.lr) and self.lr >= 0):  # `not >=` also catches nan
            raise ValueError(f"lr must be a finite number >= 0, got {self.lr}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {self.betas}")
        for name in ("eps", "weight_decay"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")

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
            m, v = self.m[name], self.v[name]  # the optimizer's own arrays: updated in place, no copies
            # Two temporaries per tensor (the same numbers as the formulas above, operation by operation):
            # ``scratch`` holds (1 - beta1) g, then (1 - beta2) g^2, then the step.
            m *= beta1
            scratch = (1.0 - beta1) * g
            m += scratch
            v *= beta2
            xp.multiply(g, g, out=scratch)
            scratch *= 1.0 - beta2
            v += scratch
            xp.sqrt(v, out=scratch)
            scratch /= bias2_sqrt
            scratch += self.eps
            xp.divide(m, scratch, out=scratch)  # step = m / denom
            scratch *= lr / bias1
            decay = 0.0 if (self.no_decay is not None and self.no_decay(name)) else self.weight_decay
            new = p * (1.0 - lr * decay) if decay else p.copy()  # a new array: params stay unedited
            new -= scratch
            updated[name] = new
        return unflatten(updated)

    def state_dict(self) -> dict:
        """Arrays and scalars to save beside a checkpoint (resume continues exactly). The moment
        arrays are the live ones, updated in place by the next step: save them before stepping."""
        return {"t": self.t, "m": dict(self.m), "v": dict(self.v)}

    def load_state_dict(self, state: dict, *, allow_nonfinite: bool = False) -> None:
        """Restore what ``state_dict`` returned, after ``check_optimizer_state`` (see there)."""
        check_optimizer_state(state, allow_nonfinite=allow_nonfinite)
        self.t, self.m, self.v = int(state["t"]), dict(state["m"]), dict(state["v"])


def check_optimizer_state(state: dict, *, allow_nonfinite: bool = False) -> None:
    """Refuse an AdamW state that cannot come from a healthy run, naming the tensor: a step count
    that is not an integer >= 0, first and second moments for different names, moments that are not
    floating point, nan or inf anywhere, or negative second moments (they are averages of squares).
    ``allow_nonfinite=True`` skips the value checks, to load a diverged run's state for inspection."""
    t = state.get("t")
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
        raise ValueError(f"optimizer state: the step count t must be an integer >= 0, got {t!r}")
    m, v = state.get("m", {}), state.get("v", {})
    if m.keys() != v.keys():
        raise ValueError(f"optimizer state: first and second moments name different tensors: {sorted(set(m) ^ set(v))[:5]}")
    for kind, moments in (("m", m), ("v", v)):
        for name in sorted(moments):
            x = moments[name]
            if not np.issubdtype(x.dtype, np.floating):
                raise ValueError(f"optimizer state: {kind}.{name} has dtype {x.dtype}, expected a floating-point type")
            if allow_nonfinite:
                continue
            xp = get_xp(x)
            if not bool(xp.isfinite(x).all()):
                raise ValueError(f"optimizer state: {kind}.{name} holds nan or inf (the run that saved it had diverged; "
                                 "allow_nonfinite=True loads it for inspection)")  # fmt: skip
            if kind == "v" and x.size and float(x.min()) < 0:
                raise ValueError(f"optimizer state: v.{name} holds negative values (min {float(x.min()):g}), but second "
                                 "moments are averages of squares: the file is corrupt")  # fmt: skip


# ================================================================ data


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a run folder in use or not the run's own, an example
    too long for the model); the message says where."""


class Pairs(list):
    """(source, target) pairs that remember where each came from (``origins[i]``, "FILE:LINE"), so a
    later error can name the line; ``where`` reads it, and plain lists work too."""

    def __init__(self, pairs=(), origins=()):
        super().__init__(pairs)
        self.origins = list(origins)


def where(pairs, i: int) -> str:
    """"FILE:LINE" of pair ``i`` when ``pairs`` came from read_pairs, else "example i+1"."""
    origins = getattr(pairs, "origins", None)
    return origins[i] if origins and i < len(origins) else f"example {i + 1}"


def read_pairs(path) -> Pairs:
    """A JSONL file of {"source": ..., "target": ...} objects, one per line (blank lines skipped)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file not found: {path}")
    pairs, origins = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("source"), str) \
                    or not isinstance(record.get("target"), str):  # fmt: skip
                raise ValueError(f'{path}:{number}: expected {{"source": "...", "target": "..."}}, got {line.strip()[:80]}')
            pairs.append((record["source"], record["target"]))
            origins.append(f"{path}:{number}")
    if not pairs:
        raise ValueError(f"{path} holds no examples")
    return Pairs(pairs, origins)


def data_fingerprint(pairs) -> str:
    """sha256 of the (source, target) texts in order: a resumed run checks it sees the same data."""
    text = json.dumps([[s, t] for s, t in pairs], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def special_ids(tokenizer) -> dict[str, int]:
    """The ids a bert2bert needs from a tokenizer: decoder start, end of sequence, pad.

    WordPiece (BERT): start [CLS], end [SEP]. Sentencepiece (BertGeneration): start <s>, end </s>.
    """
    start = getattr(tokenizer, "cls_token_id", None)
    end = getattr(tokenizer, "sep_token_id", None)
    if start is None or end is None or type(tokenizer).__name__ == "BertGenerationTokenizer":
        start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    return {"decoder_start_token_id": start, "eos_token_id": end, "pad_token_id": tokenizer.pad_token_id}


def encode_pairs(tokenizer, pairs, max_source_len=128, max_target_len=64) -> list[tuple[list[int], list[int]]]:
    """Token ids for each (source, target): the source as the tokenizer encodes it (with [CLS] ...
    [SEP] for BERT), the target as the labels the decoder must produce, ending with the end token
    (the decoder input is the start token followed by the labels, shifted right by the model)."""
    ids = special_ids(tokenizer)
    encoded = []
    for source, target in pairs:
        src = tokenizer.encode(source)[:max_source_len]
        tgt = tokenizer.encode(target, add_special_tokens=False)[: max_target_len - 1] + [ids["eos_token_id"]]
        encoded.append((src, tgt))
    return encoded


def collate(examples, pad_token_id) -> dict:
    """Pad one batch to its own longest source and target.

    Returns input_ids (B, S), attention_mask (B, S), labels (B, T) with -100 on padding.
    """
    S = max(len(src) for src, _ in examples)
    T = max(len(tgt) for _, tgt in examples)
    input_ids = np.full((len(examples), S), pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(examples), S), dtype=np.int64)
    labels = np.full((len(examples), T), -100, dtype=np.int64)
    for row, (src, tgt) in enumerate(examples):
        input_ids[row, : len(src)] = src
        attention_mask[row, : len(src)] = 1
        labels[row, : len(tgt)] = tgt
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class BatchStream:
    """Batches in a seeded random order, epoch after epoch; its position and RNG state are saved
    with checkpoints so a resumed run sees exactly the batches the uninterrupted one would."""

    def __init__(self, examples, batch_size: int, pad_token_id: int, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.examples, self.batch_size, self.pad_token_id = examples, batch_size, pad_token_id
        self.rng = np.random.default_rng(seed)
        self.order, self.position = self.rng.permutation(len(examples)), 0

    def next(self) -> dict:
        if self.position >= len(self.order):
            self.order, self.position = self.rng.permutation(len(self.examples)), 0
        chosen = self.order[self.position : self.position + self.batch_size]
        self.position += len(chosen)
        return collate([self.examples[i] for i in chosen], self.pad_token_id)

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "order": self.order.tolist(), "position": self.position}

    def load_state(self, state: dict, *, new_epoch: bool = False) -> None:
        """Continue where ``state`` stopped. It must be for this many examples; ``new_epoch=True``
        (resuming with other data, on purpose) keeps the RNG and starts a fresh epoch instead."""
        self.rng.bit_generator.state = state["rng"]
        if new_epoch:
            self.order, self.position = self.rng.permutation(len(self.examples)), 0
            return
        order = np.array(state["order"], dtype=np.int64)
        if not np.array_equal(np.sort(order), np.arange(len(self.examples))):
            raise TrainingError(f"the saved batch order is for {len(order)} examples, but the data has "
                                f"{len(self.examples)}: resume with the run's own --train file")  # fmt: skip
        self.order, self.position = order, int(state["position"])


# ================================================================ the loop


@dataclass
class TrainSettings:
    """What ``train`` does; the defaults suit fine-tuning a warm-started bert2bert."""

    steps: int = 100
    batch_size: int = 8
    lr: float = 5e-5
    warmup_steps: int = 0
    weight_decay: float = 0.01
    no_decay_bias_and_norm: bool = True  # biases and LayerNorm weights get no weight decay
    max_grad_norm: float = 1.0
    grad_accum: int = 1  # micro-batches per optimizer step
    max_source_len: int = 128
    max_target_len: int = 64
    eval_every: int = 0  # steps between eval losses (0: at the end only)
    save_every: int = 0  # steps between checkpoints (0: at the end only)
    keep_checkpoints: int = 2
    seed: int = 0

    def __post_init__(self):
        """Every value checked here, before anything runs: a nan or inf that got through would
        show up steps later, or never (a nan max_grad_norm silently turns clipping off)."""
        for name, low in (("steps", 1), ("batch_size", 1), ("grad_accum", 1), ("max_source_len", 1),
                          ("max_target_len", 1), ("keep_checkpoints", 1), ("warmup_steps", 0), ("eval_every", 0),
                          ("save_every", 0), ("seed", 0)):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be at most steps ({self.steps})")
        for name, low, inclusive in (("lr", 0.0, False), ("max_grad_norm", 0.0, False), ("weight_decay", 0.0, True)):
            value = getattr(self, name)
            ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or not (value >= low if inclusive else value > low):
                raise ValueError(f"{name} must be a finite number {'>=' if inclusive else '>'} {low:g}, got {value!r}")


@dataclass
class TrainResult:
    model: object
    history: list  # one dict per step: step, loss, lr, grad_norm, tokens_per_s, eval_loss
    checkpoint: str | None  # the last checkpoint written


CSV_FIELDS = ("step", "loss", "lr", "grad_norm", "tokens_per_s", "eval_loss", "eval_shuffled_loss")

# Below this gap (nats per target token) between the held-out loss with shuffled sources and with the
# true ones, the model is said to ignore its input: the true source makes each target token at most
# exp(0.1) = 1.1 times likelier than someone else's source does. A warm-started decoder with random
# cross-attention sits at ~1e-5 for hundreds of steps (README, "The main job"); a model that fuses
# the sentences right is at > 3.
SOURCE_GAP_WARNING = 0.1


def eval_loss(model, examples, batch_size: int, pad_token_id: int) -> float:
    """The mean loss per label token over ``examples``, in eval mode (no dropout)."""
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start : start + batch_size], pad_token_id)
        n = int((batch["labels"] != -100).sum())
        total += float(model(**batch).loss) * n
        count += n
    return total / max(count, 1)


def shuffle_sources(examples) -> list:
    """Each example's target paired with the *next* example's source (the last takes the first's):
    a fixed derangement, so no target keeps its own source and the figure is reproducible."""
    n = len(examples)
    return [(examples[(i + 1) % n][0], examples[i][1]) for i in range(n)]


def source_dependence(model, examples, batch_size: int, pad_token_id: int) -> dict:
    """Does the model read its input? The held-out loss with the true sources and with shuffled ones
    (``shuffle_sources``). A model that ignores the source (a language model of the targets) scores
    the same on both; the gap, in nats per target token, is what the source is worth."""
    true = eval_loss(model, examples, batch_size, pad_token_id)
    shuffled = eval_loss(model, shuffle_sources(examples), batch_size, pad_token_id) if len(examples) > 1 else true
    return {"heldout_loss": true, "shuffled_source_loss": shuffled, "source_gap": shuffled - true}


def source_gap_warning(dependence: dict) -> str | None:
    """A warning line when the source gap is below SOURCE_GAP_WARNING, else None."""
    if dependence["source_gap"] >= SOURCE_GAP_WARNING:
        return None
    return (f"warning: the model barely reads its source: held-out loss {dependence['heldout_loss']:.4f} "
            f"per token, {dependence['shuffled_source_loss']:.4f} with shuffled sources (gap "
            f"{dependence['source_gap']:.4f} < {SOURCE_GAP_WARNING}). It predicts the targets without "
            "their input; a warm-started decoder's random cross-attention does this: try "
            "--cross-attention-init self_attention, more steps or a higher --lr.")  # fmt: skip


def train(model, tokenizer, train_pairs, out_dir, settings: TrainSettings, *, eval_pairs=None,
          resume=False, allow_changes=False, stop_at=None, save_checkpoints=True, progress=True) -> TrainResult:  # fmt: skip
    """Fine-tune a bert2bert on (source, target) pairs with minibertgen's own backprop.

    ``out_dir`` is the run's own folder: a new run needs it empty (or new), holds ``train.lock``
    while it runs (a second process refuses at once), and writes ``run.json`` (the run's id),
    ``checkpoint-NNNNNN/`` folders (transformers' layout plus ``optimizer.safetensors`` and
    ``trainer_state.json``, each written to a temporary folder then renamed, so a kill mid-save
    leaves the previous one intact), ``loss.csv`` and, when matplotlib is installed, ``loss.png``.
    Only checkpoints this run wrote are ever pruned.
    With ``resume=True`` it continues from the run's latest checkpoint, exactly: the same batches,
    dropout masks and optimizer state as an uninterrupted run. It refuses other settings or other
    data than the run's (naming what changed) unless ``allow_changes=True``, which the state records.
    ``stop_at`` ends this run early at that step (with a checkpoint); the schedule still spans
    ``settings.steps``, so a later ``resume=True`` run finishes the same trajectory.
    With ``eval_pairs``, each evaluation writes the held-out loss and the held-out loss with
    shuffled sources (``source_dependence``). ``save_checkpoints=False`` writes only the loss curve
    (the caller saves the model it gets back).
    Before step 1 it checks the folder is writable, has room for a checkpoint, and every example
    fits the model's positions. A non-finite loss, gradient norm or update stops with TrainingError
    naming the step, before the update is kept or saved: every checkpoint holds finite numbers.
    The host is touched once per step for the loss, the gradient norm and the finiteness check.
    """
    if stop_at is not None and (isinstance(stop_at, bool) or not isinstance(stop_at, int) or stop_at < 1):
        raise ValueError(f"stop_at must be None or an integer >= 1, got {stop_at!r}")
    if allow_changes and not resume:
        raise ValueError("allow_changes=True goes with resume=True")
    out_dir = os.fspath(out_dir)
    created = not os.path.exists(out_dir)
    try:
        with _unwritable(out_dir):
            os.makedirs(out_dir, exist_ok=True)
        with run_lock(out_dir):
            return _train_in(model, tokenizer, train_pairs, out_dir, settings, eval_pairs, resume, allow_changes,
                             stop_at, save_checkpoints, progress)  # fmt: skip
    finally:
        if created and os.path.isdir(out_dir) and not os.listdir(out_dir):
            os.rmdir(out_dir)  # a run that failed before writing anything leaves no folder behind


def _train_in(model, tokenizer, train_pairs, out_dir, settings, eval_pairs, resume, allow_changes, stop_at,
              save_checkpoints, progress) -> TrainResult:  # fmt: skip
    """``train`` inside its locked folder: the checks before step 1, then the loop."""
    from tqdm.auto import tqdm

    remove_leftovers(out_dir)
    checkpoint = check_run_folder(out_dir, resume=resume)
    check_writable(out_dir)
    if save_checkpoints:
        check_free_space(out_dir, model)
    ids = special_ids(tokenizer)
    model.config.decoder_start_token_id = ids["decoder_start_token_id"]
    model.config.pad_token_id = ids["pad_token_id"]
    model.config.eos_token_id = ids["eos_token_id"]
    examples = encode_pairs(tokenizer, train_pairs, settings.max_source_len, settings.max_target_len)
    check_lengths(examples, train_pairs, model, settings)
    held_out = None
    if eval_pairs:
        held_out = encode_pairs(tokenizer, eval_pairs, settings.max_source_len, settings.max_target_len)
        check_lengths(held_out, eval_pairs, model, settings)
    stream = BatchStream(examples, settings.batch_size, ids["pad_token_id"], settings.seed)
    dropout_rng = np.random.default_rng(settings.seed + 1)
    optimizer = AdamW(lr=settings.lr, weight_decay=settings.weight_decay,
                      no_decay=default_no_decay if settings.no_decay_bias_and_norm else None)  # fmt: skip
    run = {"run_id": uuid.uuid4().hex, "checkpoints": [], "changes": [], "dtype": str(model.dtype),
           "data": {"train": data_fingerprint(train_pairs), "examples": len(train_pairs)}}  # fmt: skip
    history, start_step = [], 0
    if resume:
        model, start_step, history, run = _resume(checkpoint, model, optimizer, stream, dropout_rng, settings, run,
                                                  allow_changes)  # fmt: skip
    else:
        write_json_atomic(os.path.join(out_dir, RUN_FILE), {"run_id": run["run_id"], "written_by": "minibertgen train"})
    last_checkpoint = checkpoint

    def stop(what: str):
        return TrainingError(f"{what} at step {step + 1}; stopped before keeping the update. Last good checkpoint: "
                             f"{last_checkpoint or 'none written yet'} (try a lower --lr)")  # fmt: skip

    end_step = settings.steps if stop_at is None else min(stop_at, settings.steps)
    bar = tqdm(range(start_step, end_step), initial=start_step, total=settings.steps,
               disable=not progress, desc="train", unit="step")  # fmt: skip
    for step in bar:
        started = time.perf_counter()
        lr = settings.lr * linear_schedule(step, settings.warmup_steps, settings.steps)
        grads, loss_sum, tokens = None, 0.0, 0
        for _ in range(settings.grad_accum):
            batch = stream.next()
            out = model(**batch, train=True, rng=dropout_rng)
            loss = float(out.loss)
            if not math.isfinite(loss):
                raise stop(f"the loss is {loss}")
            micro = model.backward(out)
            scaled = {k: g / settings.grad_accum for k, g in flatten(micro).items()}  # mean over micro-batches
            grads = scaled if grads is None else {k: grads[k] + scaled[k] for k in grads}
            loss_sum += loss
            tokens += int(batch["attention_mask"].sum() + (batch["labels"] != -100).sum())
        grads, norm = clip_grad_norm(unflatten(grads), settings.max_grad_norm)
        if not math.isfinite(norm):
            raise stop(f"the gradient norm is {norm}")
        params = optimizer.step(model.params, grads, lr=lr)
        bad = first_nonfinite(params)
        if bad:
            raise stop(f"the update (lr {lr:g}) made {bad} non-finite")
        model.params = params
        record = {"step": step + 1, "loss": loss_sum / settings.grad_accum, "lr": lr, "grad_norm": norm,
                  "tokens_per_s": tokens / max(time.perf_counter() - started, 1e-9), "eval_loss": "",
                  "eval_shuffled_loss": ""}  # fmt: skip
        done = step + 1 == end_step
        if held_out and (done or (settings.eval_every and (step + 1) % settings.eval_every == 0)):
            dependence = source_dependence(model, held_out, settings.batch_size, ids["pad_token_id"])
            record["eval_loss"], record["eval_shuffled_loss"] = dependence["heldout_loss"], dependence["shuffled_source_loss"]
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
        if done or (settings.save_every and (step + 1) % settings.save_every == 0):
            if save_checkpoints:
                last_checkpoint = save_training_state(out_dir, step + 1, model, optimizer, stream, dropout_rng,
                                                      history, settings, tokenizer, run=run)  # fmt: skip
            write_loss_curve(out_dir, history)
    bar.close()
    return TrainResult(model, history, last_checkpoint)


def first_nonfinite(tree) -> str | None:
    """The name of the first tensor holding nan or inf, or None.

    The fast path is one float64 sum over everything and one host round trip: a sum of finite
    float32 values cannot overflow float64, and any nan or inf makes it non-finite. Only when it is
    non-finite are the tensors scanned one by one for the name."""
    flat = flatten(tree)
    if math.isfinite(float(sum(get_xp(x).sum(x, dtype="float64") for x in flat.values()))):
        return None
    bad = [name for name in sorted(flat) if not bool(get_xp(flat[name]).isfinite(flat[name]).all())]
    return bad[0] if bad else "the sum of the weights (it overflows float64)"


# ================================================================ run folders

RUN_FILE = "run.json"  # {"run_id": ...}: which checkpoints in the folder are this run's
LOCK_FILE = "train.lock"  # "PID START": held for the run's life
LEFTOVER = re.compile(r"\.checkpoint-\d+\.tmp(-\d+)?|loss\.(csv|png)\.tmp-?\d+|\.write-probe-\d+")
CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (Linux /proc clock ticks), to tell it from a later process that
    reuses its pid; None where /proc is not there."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name
    except (OSError, IndexError):
        return None


def _read_text(path) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def lock_holder(out_dir) -> int | None:
    """The pid of the live process holding ``out_dir``'s lock, or None (no lock, or a stale one)."""
    path = os.path.join(os.fspath(out_dir), LOCK_FILE)
    text = _read_text(path)
    if text is None:
        return None
    fields = text.split()
    if not fields:  # created, its pid not yet written (microseconds): held, unless left so by a crash
        with contextlib.suppress(FileNotFoundError):
            return -1 if time.time() - os.path.getmtime(path) < 2 else None
        return None
    if not fields[0].isdigit():
        return None  # not a lock this module wrote: nothing holds it
    pid, started = int(fields[0]), fields[1] if len(fields) > 1 else None
    if not process_alive(pid):
        return None
    if started and started != "-" and _process_start(pid) not in (None, started):
        return None  # the pid now belongs to another process
    return pid


def _in_use(out_dir, holder: int) -> TrainingError:
    return TrainingError(f"{out_dir} is in use by another training run (pid {holder if holder > 0 else '?'}, lock "
                         f"{os.path.join(out_dir, LOCK_FILE)}); wait for it to end or give another --out")  # fmt: skip


@contextmanager
def run_lock(out_dir):
    """Hold ``out_dir/train.lock`` (created with O_CREAT|O_EXCL, holding our pid) for the block.
    A lock whose process is gone (a kill, a crash) is replaced with a note on stderr; a live one
    makes this refuse at once."""
    out_dir = os.fspath(out_dir)
    path = os.path.join(out_dir, LOCK_FILE)
    for _ in range(3):
        try:
            with _unwritable(out_dir):
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            stale = _read_text(path)
            holder = lock_holder(out_dir)
            if holder is not None:
                raise _in_use(out_dir, holder) from None
            print(f"note: replacing the stale lock {path} (its process is gone)", file=sys.stderr)
            # Remove it only if it is still the stale one: another process may have replaced it
            # meanwhile (a window of microseconds remains between this read and the remove).
            if _read_text(path) == stale:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
    else:
        raise _in_use(out_dir, -1)
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()} {_process_start(os.getpid()) or '-'}\n")
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            with open(path) as f:
                ours = f.read().split()[:1] == [str(os.getpid())]
            if ours:
                os.remove(path)


def remove_leftovers(out_dir) -> None:
    """Delete the temporary files a killed run leaves (half-written checkpoints, loss curves, write
    probes). Only under the lock: then no other process is writing them."""
    for name in os.listdir(out_dir):
        path = os.path.join(out_dir, name)
        if LEFTOVER.fullmatch(name) and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif LEFTOVER.fullmatch(name):
            os.remove(path)


def _run_id(out_dir) -> str | None:
    from .config import read_json

    path = os.path.join(out_dir, RUN_FILE)
    return read_json(path).get("run_id") if os.path.isfile(path) else None


def _checkpoint_state(folder) -> dict | None:
    from .config import read_json

    path = os.path.join(folder, "trainer_state.json")
    return read_json(path) if os.path.isfile(path) else None


def latest_checkpoint(out_dir) -> str | None:
    """The run's checkpoint-NNNNNN folder with the highest step in ``out_dir``, or None. A folder
    counts when it is complete (it has trainer_state.json) and, where the folder has a run.json,
    was written by that run: a foreign folder named like a checkpoint is never taken for one."""
    out_dir = os.fspath(out_dir)
    if not os.path.isdir(out_dir):
        return None
    run_id = _run_id(out_dir)
    numbered = sorted((int(m[1]), n) for n in os.listdir(out_dir) if (m := CHECKPOINT.fullmatch(n)))
    for _, name in reversed(numbered):
        state = _checkpoint_state(os.path.join(out_dir, name))
        if state is not None and (run_id is None or state.get("run", {}).get("run_id") == run_id):
            return os.path.join(out_dir, name)
    return None


def check_run_folder(out_dir, *, resume: bool) -> str | None:
    """Refuse a folder this run may not use; return the checkpoint to resume from (None for a new run).

    A new run needs an empty folder, or one holding only what a run that never saved left (run.json,
    a stale lock, temporary files). A resumed run needs a checkpoint of the folder's run. Either way
    a live lock refuses. Nothing is written: the CLI calls this before loading a model."""
    out_dir = os.fspath(out_dir)
    holder = lock_holder(out_dir)
    if holder is not None and holder != os.getpid():
        raise _in_use(out_dir, holder)
    checkpoint = latest_checkpoint(out_dir)
    if resume:
        if checkpoint is None:
            raise FileNotFoundError(f"--resume: no checkpoint of a training run in {out_dir}")
        return checkpoint
    if checkpoint is not None:
        raise TrainingError(f"{out_dir} holds a training run (latest {os.path.basename(checkpoint)}): continue it with "
                            "--resume, or give another --out folder for a new run")  # fmt: skip
    entries = [] if not os.path.isdir(out_dir) else sorted(os.listdir(out_dir))
    others = [n for n in entries if n not in (RUN_FILE, LOCK_FILE) and not LEFTOVER.fullmatch(n)]
    if others:
        raise TrainingError(f"{out_dir} is not empty ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}): "
                            "a new run needs an empty or new --out folder")  # fmt: skip
    return None


def discard_run(out_dir) -> None:
    """Delete a finished run folder that ``train`` wrote (it has run.json and no live lock), so a new
    run can take its name, as ``minibertgen demo`` does each time. Any other folder is refused."""
    out_dir = os.fspath(out_dir)
    if not os.path.exists(out_dir):
        return
    if not os.path.isfile(os.path.join(out_dir, RUN_FILE)):
        raise TrainingError(f"{out_dir} is not a training run folder (no {RUN_FILE}); move it away or give another folder")
    if lock_holder(out_dir) is not None:
        raise TrainingError(f"{out_dir} is in use by another training run; wait for it to end")
    shutil.rmtree(out_dir)


def check_writable(out_dir) -> None:
    """Write, sync and remove a small probe file, so an unwritable folder fails before step 1."""
    probe = os.path.join(out_dir, f".write-probe-{os.getpid()}")
    try:
        with _unwritable(out_dir), open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    finally:
        with contextlib.suppress(OSError):
            os.remove(probe)


@contextmanager
def _unwritable(out_dir):
    """Turn an OSError from creating or writing in ``out_dir`` (read-only, no permission, full)
    into one TrainingError line; FileExistsError passes through (the lock handles it)."""
    try:
        yield
    except FileExistsError:
        raise
    except OSError as exc:
        raise TrainingError(f"cannot write in --out {out_dir}: {exc.strerror or exc}; give a writable folder") from None


def checkpoint_bytes(model) -> int:
    """About what one checkpoint takes on disk: the weights and AdamW's two moments at the model's
    dtype, plus 4 MiB for configs, tokenizer files, the training state and the loss curve."""
    return 3 * model.num_parameters() * np.dtype(str(model.dtype)).itemsize + 4 * 2**20


def check_free_space(out_dir, model) -> None:
    """Refuse to start when the disk cannot hold one more checkpoint (the old ones stay until the new
    one is complete), instead of failing at the first save."""
    need, free = checkpoint_bytes(model), shutil.disk_usage(out_dir).free
    if free < need:
        raise TrainingError(f"not enough free space in {out_dir} for a checkpoint: about {need / 2**20:.1f} MiB needed "
                            f"({model.num_parameters():,} parameters, with two optimizer moments), "
                            f"{free / 2**20:.1f} MiB free")  # fmt: skip


def check_lengths(examples, pairs, model, settings) -> None:
    """Every example, after the --max-source-len / --max-target-len truncation, fits the model's
    positions; else name the first that does not (its file line), with its length."""
    limits = {"source": model.config.encoder.max_position_embeddings,
              "target": model.config.decoder.max_position_embeddings}  # fmt: skip
    for i, (src, tgt) in enumerate(examples):
        for part, ids, cap in (("source", src, settings.max_source_len), ("target", tgt, settings.max_target_len)):
            if len(ids) > limits[part]:
                coder = "encoder" if part == "source" else "decoder"
                raise TrainingError(f"{where(pairs, i)}: the {part} is {len(ids)} tokens after --max-{part}-len {cap}, "
                                    f"but the {coder} has {limits[part]} positions (max_position_embeddings); "
                                    f"give --max-{part}-len {limits[part]} or less")  # fmt: skip


# Settings that change what is recorded, not the weights: a resumed run may change them freely.
RECORDING_SETTINGS = ("eval_every", "save_every", "keep_checkpoints")


def run_changes(saved_settings: dict, settings: TrainSettings, saved_run: dict, run: dict) -> list[str]:
    """What a resumed run would do differently from the run it continues: the settings that shape
    the trajectory, the dtype and the training data (the held-out data only changes what is recorded)."""
    changes = [f"{name} {saved_settings.get(name)!r} -> {value!r}" for name, value in dataclasses.asdict(settings).items()
               if name not in RECORDING_SETTINGS and name in saved_settings and saved_settings[name] != value]  # fmt: skip
    if saved_run.get("dtype", run["dtype"]) != run["dtype"]:
        changes.append(f"dtype {saved_run['dtype']} -> {run['dtype']}")
    saved = saved_run.get("data", run["data"])
    if saved["train"] != run["data"]["train"]:
        changes.append(f"the --train data ({saved['examples']} examples, sha256 {saved['train'][:12]}... -> "
                       f"{run['data']['examples']}, {run['data']['train'][:12]}...)")  # fmt: skip
    return changes


def _resume(folder, model, optimizer, stream, dropout_rng, settings, run, allow_changes):
    """Load the checkpoint to continue from, after comparing its run with this one."""
    state = _checkpoint_state(folder)
    saved_run = state.get("run", {})
    changes = run_changes(state.get("settings", {}), settings, saved_run, run)
    if changes and not allow_changes:
        raise TrainingError(f"--resume: this run differs from the one in {os.path.dirname(folder)}: "
                            f"{'; '.join(changes)}. Give the run's own values, or --allow-changes to go on anyway")  # fmt: skip
    new_epoch = allow_changes and len(state["batches"]["order"]) != len(stream.examples)  # the saved order is for other data
    model, step, history = _load_training_state(folder, model, optimizer, stream, dropout_rng, new_epoch=new_epoch)
    run = {**run, "run_id": saved_run.get("run_id", _run_id(os.path.dirname(folder)) or run["run_id"]),
           "checkpoints": list(saved_run.get("checkpoints", [])),
           "changes": list(saved_run.get("changes", [])) + ([{"step": step, "changed": changes}] if changes else [])}  # fmt: skip
    return model, step, history, run


# ================================================================ checkpoints


def save_training_state(out_dir, step, model, optimizer, stream, dropout_rng, history, settings, tokenizer=None, *,
                        run=None) -> str:  # fmt: skip
    """Write checkpoint-NNNNNN atomically (a temporary folder, then one rename) and prune old ones.

    It holds the model (transformers' layout), the tokenizer's files when it can save them,
    optimizer.safetensors (AdamW moments) and trainer_state.json (step, RNG states, history, and
    ``run``: the run's id, data fingerprints and the checkpoints it wrote). Pruning deletes only
    folders listed there, oldest first, keeping ``settings.keep_checkpoints``; ``run["checkpoints"]``
    is updated in place."""
    from .weights import write_safetensors

    run = run if run is not None else {"checkpoints": []}
    name = f"checkpoint-{step:06d}"
    final = os.path.join(out_dir, name)
    if os.path.exists(final) and name not in run["checkpoints"]:
        raise TrainingError(f"{final} exists and is not this run's checkpoint; move it away")
    # Every checkpoint this run wrote that may still be on disk, this one last: the list is saved
    # before pruning, so a kill between the rename and the pruning leaves nothing unaccounted for.
    written = [n for n in run["checkpoints"] if n != name and os.path.isdir(os.path.join(out_dir, n))] + [name]
    tmp = os.path.join(out_dir, f".{name}.tmp-{os.getpid()}")  # per process: never shared
    try:
        model.save_pretrained(tmp)
        if hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(tmp)
        state = optimizer.state_dict()
        moments = {f"m.{k}": v for k, v in state["m"].items()} | {f"v.{k}": v for k, v in state["v"].items()}
        write_safetensors(os.path.join(tmp, "optimizer.safetensors"), moments)
        write_json_atomic(os.path.join(tmp, "trainer_state.json"), {
            "step": step, "optimizer_t": state["t"], "batches": stream.state(),
            "dropout_rng": dropout_rng.bit_generator.state, "history": history,
            "settings": dataclasses.asdict(settings), "run": {**run, "checkpoints": written},
        })  # fmt: skip
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in written[: -settings.keep_checkpoints]:
        shutil.rmtree(os.path.join(out_dir, old), ignore_errors=True)
    run["checkpoints"] = written[-settings.keep_checkpoints :]
    return final


def read_optimizer_state(folder, *, allow_nonfinite: bool = False) -> dict:
    """A checkpoint's AdamW state {"t", "m", "v"} (host arrays), checked by ``check_optimizer_state``;
    ``allow_nonfinite=True`` reads a diverged run's state for inspection."""
    from .weights import read_safetensors

    state = _checkpoint_state(folder) or {}
    moments = read_safetensors(os.path.join(folder, "optimizer.safetensors"))
    result = {"t": state.get("optimizer_t"),
              "m": {k[2:]: v for k, v in moments.items() if k.startswith("m.")},
              "v": {k[2:]: v for k, v in moments.items() if k.startswith("v.")}}  # fmt: skip
    if len(result["m"]) + len(result["v"]) != len(moments):
        raise ValueError(f"{folder}/optimizer.safetensors: tensors other than m.* and v.*: "
                         f"{sorted(k for k in moments if k[:2] not in ('m.', 'v.'))[:5]}")  # fmt: skip
    try:
        check_optimizer_state(result, allow_nonfinite=allow_nonfinite)
    except ValueError as exc:
        raise ValueError(f"{folder}: {exc}") from None
    return result


def _load_training_state(folder, model, optimizer, stream, dropout_rng, *, new_epoch=False):
    """The model, step and history saved in ``folder``; restores optimizer, batches and dropout RNG.
    The weights must be finite (from_pretrained refuses others, naming the tensor) and the moments must
    match them, name for name and shape for shape."""
    resumed = type(model).from_pretrained(folder, dtype=str(model.dtype), backend=model.backend)
    state = _checkpoint_state(folder)
    moments = read_optimizer_state(folder)
    params = flatten(resumed.params)
    if moments["m"] and moments["m"].keys() != params.keys():
        raise ValueError(f"{folder}: the optimizer state does not match the model's tensors "
                         f"(first differing: {sorted(set(moments['m']) ^ set(params))[:5]})")  # fmt: skip
    for kind in ("m", "v"):
        for name, x in moments[kind].items():
            if x.shape != params[name].shape:
                raise ValueError(f"{folder}: optimizer moment {kind}.{name} has shape {x.shape}, the weight {params[name].shape}")
            moments[kind][name] = to_device(x.astype(params[name].dtype, copy=False), resumed.backend)
    optimizer.load_state_dict(moments)
    stream.load_state(state["batches"], new_epoch=new_epoch)
    dropout_rng.bit_generator.state = state["dropout_rng"]
    return resumed, int(state["step"]), list(state["history"])


def write_loss_curve(out_dir, history) -> None:
    """loss.csv (atomically) and, when matplotlib is installed, loss.png."""
    path = os.path.join(out_dir, "loss.csv")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)
    fig = new_figure(figsize=(6, 7))
    if fig is None:
        return
    loss_ax, lr_ax, norm_ax = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1, 1]})
    steps = [r["step"] for r in history]
    loss_ax.plot(steps, [r["loss"] for r in history], label="train loss", lw=1)
    evals = [r for r in history if r.get("eval_loss", "") != ""]
    if evals:
        loss_ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="held-out loss")
    shuffled = [r for r in evals if r.get("eval_shuffled_loss", "") != ""]
    if shuffled:  # the distance between these two curves is what the source is worth
        loss_ax.plot([r["step"] for r in shuffled], [r["eval_shuffled_loss"] for r in shuffled], "s--",
                     label="held-out, shuffled sources")  # fmt: skip
    loss_ax.set_ylabel("cross-entropy / token")
    loss_ax.set_yscale("log")
    loss_ax.legend(fontsize=8)
    lr_ax.plot(steps, [r["lr"] for r in history])
    lr_ax.set_ylabel("learning rate")
    norm_ax.plot(steps, [r["grad_norm"] for r in history], lw=1)
    norm_ax.set_ylabel("grad norm\n(before clipping)")
    norm_ax.set_xlabel("step")
    fig.tight_layout()
    png = os.path.join(out_dir, "loss.png")
    fig.savefig(f"{png}.tmp-{os.getpid()}", dpi=100, format="png")
    os.replace(f"{png}.tmp-{os.getpid()}", png)  # a kill mid-draw leaves the previous curve whole


def new_figure(figsize=(6, 3.5)):
    """A matplotlib Figure drawn off-screen, or None without matplotlib. It avoids pyplot, so the
    caller's backend (a notebook's inline plots, say) is left as it was."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig
