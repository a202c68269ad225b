"""``minibertgen demo``: Rothe et al.'s claim in miniature, in a few minutes on a laptop CPU.

1. fetch the real MiniLM BERT checkpoint if it is missing;
2. warm-start a bert2bert from it (encoder and decoder both from BERT; fresh cross-attention);
3. fine-tune it with minibertgen's own backprop on a built-in sentence-fusion task
   (``minibertgen.fusion``: two sentences -> one, with a connective or a pronoun);
4. train the same architecture from random init with the same budget and settings;
5. beam-search the held-out examples with both, and print a table and the scores:
   held-out loss, exact match and token accuracy, warm start against random init;
6. save the warm-started model, both loss curves (CSV) and a plot (PNG) in the run folder.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass

import numpy as np

from .fetch import fetch, find_weights
from .fusion import train_and_heldout
from .model import EncoderDecoderModel
from .tokenization import BertTokenizer
from .train import (
    AdamW,
    TrainSettings,
    clip_grad_norm,
    collate,
    encode_pairs,
    eval_loss,
    new_figure,
    special_ids,
    train,
)


@dataclass
class DemoResult:
    steps: int
    warm: dict  # heldout_loss, exact_match, token_accuracy
    random: dict
    examples: list  # (source, target, warm prediction)
    run_dir: str


def predict(model, tokenizer, pairs, num_beams=4, max_new_tokens=40, batch_size=8, progress=None):
    """Beam-search every source; returns the decoded predictions and their token ids."""
    texts, token_ids = [], []
    for start in range(0, len(pairs), batch_size):
        chunk = [source for source, _ in pairs[start : start + batch_size]]
        batch = tokenizer(chunk, padding=True, truncation=True, max_length=128)
        out = model.generate(np.array(batch["input_ids"]), np.array(batch["attention_mask"]),
                             num_beams=num_beams, max_new_tokens=max_new_tokens)  # fmt: skip
        for row in out.sequences:
            token_ids.append([t for t in row.tolist()[1:] if t != tokenizer.pad_token_id])
            texts.append(tokenizer.decode(row.tolist(), skip_special_tokens=True))
        if progress is not None:
            progress.update(len(chunk))
    return texts, token_ids


def scores(tokenizer, pairs, texts, token_ids) -> dict:
    """Exact match: the decoded prediction equals the decoded target (both through the uncased
    tokenizer). Token accuracy: the share of target tokens (end token included) that the prediction
    has at the same position."""
    targets = encode_pairs(tokenizer, pairs)
    exact = sum(text == tokenizer.decode(tokenizer.encode(target), skip_special_tokens=True)
                for text, (_, target) in zip(texts, pairs, strict=True))  # fmt: skip
    right = total = 0
    for predicted, (_, wanted) in zip(token_ids, targets, strict=True):
        total += len(wanted)
        right += sum(p == w for p, w in zip(predicted, wanted))
    return {"exact_match": exact / len(pairs), "token_accuracy": right / max(total, 1)}


def calibrate_steps(model, tokenizer, pairs, budget_s, batch_size, share=0.35) -> int:
    """How many training steps fit in ``share`` of the budget: time whole steps (forward, backward,
    clipping, AdamW) whose updates are thrown away."""
    batch = collate(encode_pairs(tokenizer, pairs[:batch_size]), tokenizer.pad_token_id)
    optimizer = AdamW()
    times = []
    for _ in range(2):  # the first also warms up
        start = time.perf_counter()
        grads, _ = clip_grad_norm(model.backward(model(**batch, train=True, rng=np.random.default_rng(0))), 1.0)
        optimizer.step(model.params, grads)  # the new parameters are discarded
        times.append(time.perf_counter() - start)
    return max(5, int(share * budget_s / (min(times) * 1.1)))  # + 10% for bookkeeping


def run_demo(out_dir="runs/demo", *, budget=300.0, steps=None, n_train=4000, n_heldout=32, batch_size=8, lr=1e-4,
             seed=0, num_beams=4, max_new_tokens=40, progress=True) -> DemoResult:  # fmt: skip
    """Run the demo; see the module docstring. ``budget`` (seconds) sets the number of training
    steps unless ``steps`` is given; each of the two runs gets about 38% of it."""
    from tqdm.auto import tqdm

    weights = find_weights("minilm-l6") or fetch("minilm-l6")
    tokenizer = BertTokenizer.from_pretrained(weights)
    ids = special_ids(tokenizer)
    train_pairs, heldout = train_and_heldout(n_train, n_heldout, seed)
    held_examples = encode_pairs(tokenizer, heldout)

    warm = EncoderDecoderModel.from_encoder_decoder_pretrained(weights, weights, seed=seed, **ids)
    if steps is None:
        steps = calibrate_steps(warm, tokenizer, train_pairs, budget, batch_size)
    settings = TrainSettings(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=max(1, steps // 10), seed=seed)
    print(f"fine-tuning {steps} steps of batch {batch_size} on {len(train_pairs)} sentence-fusion pairs, twice")

    results, curves = {}, {}
    for name in ("warm", "random"):
        model = warm if name == "warm" else EncoderDecoderModel(warm.config, seed=seed)
        print(f"\n{name}: " + ("warm start from MiniLM (BERT) weights" if name == "warm" else "random init, same architecture"))
        run = train(model, tokenizer, train_pairs, os.path.join(out_dir, name), settings, progress=progress)
        bar = tqdm(total=len(heldout), desc=f"{name}: beam search", unit="ex", disable=not progress)
        texts, token_ids = predict(run.model, tokenizer, heldout, num_beams=num_beams,
                                   max_new_tokens=max_new_tokens, progress=bar)
        bar.close()
        results[name] = {"heldout_loss": eval_loss(run.model, held_examples, batch_size, ids["pad_token_id"]),
                         **scores(tokenizer, heldout, texts, token_ids), "texts": texts}  # fmt: skip
        curves[name] = [r["loss"] for r in run.history]
        if name == "warm":
            run.model.save_pretrained(os.path.join(out_dir, "model"))
            tokenizer.save_pretrained(os.path.join(out_dir, "model"))
    write_curves(out_dir, curves)
    examples = [(s, t, p) for (s, t), p in zip(heldout, results["warm"]["texts"], strict=True)]
    for r in results.values():
        r.pop("texts")
    return DemoResult(steps, results["warm"], results["random"], examples, out_dir)


def write_curves(out_dir, curves) -> None:
    """loss.csv with one column per run, and loss.png when matplotlib is installed."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "loss.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["step", *curves])
        for step, losses in enumerate(zip(*curves.values(), strict=True), 1):
            writer.writerow([step, *losses])
    fig = new_figure()
    if fig is None:
        return
    ax = fig.add_subplot()
    for name, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), losses, label={"warm": "warm start (MiniLM)", "random": "random init"}[name])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "loss.png"), dpi=100)


def ascii_curve(losses, width=48, height=6) -> list[str]:
    """A small text plot of a loss curve, for the terminal summary."""
    if len(losses) < 2:
        return []
    columns = np.array_split(np.asarray(losses), min(width, len(losses)))
    means = np.array([c.mean() for c in columns])
    low, high = means.min(), means.max()
    levels = np.round((means - low) / max(high - low, 1e-9) * (height - 1)).astype(int)
    rows = []
    for level in range(height - 1, -1, -1):
        label = f"{low + (high - low) * level / (height - 1):6.2f} |"
        rows.append(label + "".join("*" if v == level else " " for v in levels))
    return rows


def summary(result: DemoResult, max_examples=6) -> str:
    """The final screen: the loss curve, a few held-out examples, and warm start vs random init."""
    lines = []
    curve_file = os.path.join(result.run_dir, "loss.csv")
    with open(curve_file, encoding="utf-8") as f:
        warm_losses = [float(row["warm"]) for row in csv.DictReader(f)]
    lines += ["", f"training loss, warm start ({result.steps} steps):", *ascii_curve(warm_losses), ""]
    for source, target, prediction in result.examples[:max_examples]:
        lines += [f"  source:     {source}", f"  target:     {target}", f"  prediction: {prediction}", ""]
    lines.append(f"{'held-out (' + str(len(result.examples)) + ' examples)':28s} {'warm start':>12s} {'random init':>12s}")
    for key, label in (("heldout_loss", "loss (per token)"), ("exact_match", "exact match"),
                       ("token_accuracy", "token accuracy")):  # fmt: skip
        lines.append(f"{label:28s} {result.warm[key]:12.3f} {result.random[key]:12.3f}")
    verdict = "beats" if result.warm["heldout_loss"] < result.random["heldout_loss"] else "does NOT beat"
    lines += ["", f"warm start {verdict} random init on held-out loss, with the same budget.",
              f"run folder: {result.run_dir} (model/, warm/ and random/ checkpoints, loss.csv, loss.png)"]  # fmt: skip
    return "\n".join(lines)
