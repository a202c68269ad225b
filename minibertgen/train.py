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

import csv
import dataclasses
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field

import numpy as np

from .backend import get_xp, to_device
from .config import write_json_atomic
from .weights import flatten, unflatten

# ---------------------------------------------------------------- clipping


def global_norm(grads) -> float:
    """sqrt(sum of every squared gradient entry), as one float (the one host round trip)."""
    total = 0.0
    for g in flatten(grads).values():
        flat = g.reshape(-1)
        total = total + get_xp(g).vdot(flat, flat)  # a BLAS dot per tensor: no squared copy
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
            m, v = self.m[name], self.v[name]  # the optimizer's own arrays: updated in place, no copies
            m *= beta1
            m += (1.0 - beta1) * g
            v *= beta2
            v += (1.0 - beta2) * (g * g)
            denom = xp.sqrt(v)
            denom /= bias2_sqrt
            denom += self.eps
            step = m / denom
            step *= lr / bias1
            decay = 0.0 if (self.no_decay is not None and self.no_decay(name)) else self.weight_decay
            updated[name] = (p * (1.0 - lr * decay) if decay else p) - step  # a new array: params stay unedited
        return unflatten(updated)

    def state_dict(self) -> dict:
        """Arrays and scalars to save beside a checkpoint (resume continues exactly). The moment
        arrays are the live ones, updated in place by the next step: save them before stepping."""
        return {"t": self.t, "m": dict(self.m), "v": dict(self.v)}

    def load_state_dict(self, state: dict) -> None:
        self.t, self.m, self.v = int(state["t"]), dict(state["m"]), dict(state["v"])


# ================================================================ data


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a bad data file); the message says where."""


def read_pairs(path) -> list[tuple[str, str]]:
    """A JSONL file of {"source": ..., "target": ...} objects, one per line (blank lines skipped)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file not found: {path}")
    pairs = []
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
    if not pairs:
        raise ValueError(f"{path} holds no examples")
    return pairs


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

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order, self.position = np.array(state["order"], dtype=np.int64), int(state["position"])


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
        for name in ("steps", "batch_size", "grad_accum", "max_source_len", "max_target_len", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "save_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


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
          resume=False, stop_at=None, save_checkpoints=True, progress=True) -> TrainResult:  # fmt: skip
    """Fine-tune a bert2bert on (source, target) pairs with minibertgen's own backprop.

    Writes into ``out_dir``: ``checkpoint-NNNNNN/`` folders (transformers' layout plus
    ``optimizer.safetensors`` and ``trainer_state.json``, each written to a temporary folder then
    renamed, so a kill mid-save leaves the previous one intact), ``loss.csv`` and, when matplotlib
    is installed, ``loss.png``. With ``resume=True`` it continues from the latest checkpoint there,
    exactly: the same batches, dropout masks and optimizer state as an uninterrupted run.
    ``stop_at`` ends this run early at that step (with a checkpoint); the schedule still spans
    ``settings.steps``, so a later ``resume=True`` run finishes the same trajectory.
    With ``eval_pairs``, each evaluation writes the held-out loss and the held-out loss with
    shuffled sources (``source_dependence``). ``save_checkpoints=False`` writes only the loss curve
    (the caller saves the model it gets back).
    A non-finite loss stops with TrainingError naming the step, before any update.
    The host is touched once per step for the loss and the gradient norm (two scalars).
    """
    from tqdm.auto import tqdm

    os.makedirs(out_dir, exist_ok=True)
    ids = special_ids(tokenizer)
    model.config.decoder_start_token_id = ids["decoder_start_token_id"]
    model.config.pad_token_id = ids["pad_token_id"]
    model.config.eos_token_id = ids["eos_token_id"]
    examples = encode_pairs(tokenizer, train_pairs, settings.max_source_len, settings.max_target_len)
    held_out = encode_pairs(tokenizer, eval_pairs, settings.max_source_len, settings.max_target_len) if eval_pairs else None
    stream = BatchStream(examples, settings.batch_size, ids["pad_token_id"], settings.seed)
    dropout_rng = np.random.default_rng(settings.seed + 1)
    optimizer = AdamW(lr=settings.lr, weight_decay=settings.weight_decay,
                      no_decay=default_no_decay if settings.no_decay_bias_and_norm else None)  # fmt: skip
    history, start_step, last_checkpoint = [], 0, None
    if resume:
        last_checkpoint = latest_checkpoint(out_dir)
        if last_checkpoint is None:
            raise FileNotFoundError(f"--resume: no checkpoint-* folder in {out_dir}")
        model, start_step, history = _load_training_state(last_checkpoint, model, optimizer, stream, dropout_rng)

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
                raise TrainingError(
                    f"the loss is {loss} at step {step + 1}; stopped before updating. Last good checkpoint: "
                    f"{last_checkpoint or 'none written yet'} (try a lower --lr)"
                )
            micro = model.backward(out)
            scaled = {k: g / settings.grad_accum for k, g in flatten(micro).items()}  # mean over micro-batches
            grads = scaled if grads is None else {k: grads[k] + scaled[k] for k in grads}
            loss_sum += loss
            tokens += int(batch["attention_mask"].sum() + (batch["labels"] != -100).sum())
        grads, norm = clip_grad_norm(unflatten(grads), settings.max_grad_norm)
        model.params = optimizer.step(model.params, grads, lr=lr)
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
                                                      history, settings, tokenizer)  # fmt: skip
            write_loss_curve(out_dir, history)
    bar.close()
    return TrainResult(model, history, last_checkpoint)


# ================================================================ checkpoints


def latest_checkpoint(out_dir) -> str | None:
    """The checkpoint-NNNNNN folder with the highest step in ``out_dir``, or None."""
    if not os.path.isdir(out_dir):
        return None
    steps = [n for n in os.listdir(out_dir) if re.fullmatch(r"checkpoint-\d+", n)]
    return os.path.join(out_dir, max(steps, key=lambda n: int(n.split("-")[1]))) if steps else None


def save_training_state(out_dir, step, model, optimizer, stream, dropout_rng, history, settings, tokenizer=None) -> str:
    """Write checkpoint-NNNNNN atomically (a temporary folder, then one rename) and prune old ones.

    It holds the model (transformers' layout), the tokenizer's files when it can save them,
    optimizer.safetensors (AdamW moments) and trainer_state.json (step, RNG states, history)."""
    from .weights import write_safetensors

    final = os.path.join(out_dir, f"checkpoint-{step:06d}")
    tmp = os.path.join(out_dir, f".checkpoint-{step:06d}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(tmp)
    state = optimizer.state_dict()
    moments = {f"m.{k}": v for k, v in state["m"].items()} | {f"v.{k}": v for k, v in state["v"].items()}
    write_safetensors(os.path.join(tmp, "optimizer.safetensors"), moments)
    write_json_atomic(os.path.join(tmp, "trainer_state.json"), {
        "step": step, "optimizer_t": state["t"], "batches": stream.state(),
        "dropout_rng": dropout_rng.bit_generator.state, "history": history,
        "settings": dataclasses.asdict(settings),
    })  # fmt: skip
    if os.path.isdir(final):
        shutil.rmtree(final)
    os.replace(tmp, final)
    kept = sorted((n for n in os.listdir(out_dir) if re.fullmatch(r"checkpoint-\d+", n)), key=lambda n: int(n[11:]))
    for old in kept[: -settings.keep_checkpoints]:
        shutil.rmtree(os.path.join(out_dir, old), ignore_errors=True)
    return final


def _load_training_state(folder, model, optimizer, stream, dropout_rng):
    """The model, step and history saved in ``folder``; restores optimizer, batches and dropout RNG."""
    from .config import read_json
    from .weights import read_safetensors

    state = read_json(os.path.join(folder, "trainer_state.json"))
    resumed = type(model).from_pretrained(folder, dtype=str(model.dtype), backend=model.backend)
    moments = read_safetensors(os.path.join(folder, "optimizer.safetensors"))
    to_backend = resumed.backend
    optimizer.load_state_dict({
        "t": state["optimizer_t"],
        "m": {k[2:]: to_device(v, to_backend) for k, v in moments.items() if k.startswith("m.")},
        "v": {k[2:]: to_device(v, to_backend) for k, v in moments.items() if k.startswith("v.")},
    })  # fmt: skip
    stream.load_state(state["batches"])
    dropout_rng.bit_generator.state = state["dropout_rng"]
    return resumed, int(state["step"]), list(state["history"])


def write_loss_curve(out_dir, history) -> None:
    """loss.csv (atomically) and, when matplotlib is installed, loss.png."""
    path = os.path.join(out_dir, "loss.csv")
    tmp = f"{path}.tmp{os.getpid()}"
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
    fig.savefig(os.path.join(out_dir, "loss.png"), dpi=100)


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
