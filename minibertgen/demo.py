"""``minibertgen demo``: Rothe et al.'s claim in miniature, in under 10 minutes on a laptop CPU.

1. fetch the real MiniLM BERT checkpoint if it is missing;
2. warm-start a bert2bert from it: encoder and decoder both from BERT, and each decoder layer's
   cross-attention (which BERT does not have) started as a copy of that layer's self-attention;
3. fine-tune it with minibertgen's own backprop on a built-in sentence-fusion task
   (``minibertgen.fusion``: two sentences -> one, with a connective or a pronoun);
4. train the same architecture from random init with the same recipe and number of steps;
5. beam-search the held-out examples with both, and print a table and the scores: held-out loss,
   the held-out loss with the sources shuffled (does the model read its input?), exact match and
   token accuracy, warm start against random init;
6. save both models (loadable folders with the tokenizer), their loss curves and ``summary.json``.

The recipe (``RECIPE``) and why it is what it is (measured on a 2-core machine, README "The main
job"): with the paper's random cross-attention, a warm-started decoder is already a good language
model and lowers the loss for hundreds of steps by learning the targets' templates while ignoring
the source (its held-out loss with shuffled sources equals the true one, and it writes one sentence
for every input); started as a copy of the self-attention, the cross-attention makes useful
queries and keys from step one and the model reads the source at once.

``run_table`` is the paper's table in miniature: its five initialisations, each with both
cross-attention starts, on the same recipe.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass

import numpy as np

from .config import write_json_atomic
from .fetch import fetch, find_weights
from .fusion import train_and_heldout
from .model import BertGenerationDecoder, BertGenerationEncoder, EncoderDecoderModel, copy_self_to_cross_attention
from .tokenization import BertTokenizer
from .train import (
    AdamW,
    TrainSettings,
    clip_grad_norm,
    collate,
    discard_run,
    encode_pairs,
    new_figure,
    source_dependence,
    source_gap_warning,
    special_ids,
    train,
)

# The demo's recipe. Steps are fixed (not fitted to the wall clock), so a busy and an idle machine
# print the same figures for the same seed. Measured on 2 cores (README "The main job"): 200 steps
# of batch 8 at lr 5e-4 (10% warmup, linear decay) give exact match 1.0 in about 8 minutes with
# both runs; 300 steps give the same exact match in about 12. The warmup is part of the recipe, not
# a detail: on notebook 09's copy task the copied start with no warmup fell into the plateau too
# (source gap 0.000 after 160 steps) where 10 warmup steps of 100 copied all 8 held-out sentences.
RECIPE = {"steps": 200, "batch_size": 8, "lr": 5e-4, "warmup_share": 0.1, "eval_every": 50,
          "cross_attention_init": "self_attention", "n_train": 4000, "n_heldout": 32}  # fmt: skip

# Rothe et al.'s initialisations: (encoder from BERT, decoder from BERT, encoder and decoder shared).
INITIALISATIONS = {
    "rnd2rnd": (False, False, False),
    "bert2rnd": (True, False, False),
    "rnd2bert": (False, True, False),
    "bert2bert": (True, True, False),
    "bertShare": (True, True, True),
}


@dataclass
class DemoResult:
    steps: int
    seconds: float
    warm: dict  # heldout_loss, shuffled_source_loss, source_gap, exact_match, token_accuracy, distinct_predictions
    random: dict
    rows: list  # {"source", "target", "warm", "random"} for each held-out example
    run_dir: str


def build_model(weights, initialisation="bert2bert", cross_attention_init="self_attention", *, seed=0, **special):
    """One of Rothe et al.'s initialisations (``INITIALISATIONS``) from a BERT checkpoint folder,
    its cross-attention started as ``cross_attention_init`` ("random" or "self_attention": a copy of
    the same layer's self-attention, pre-trained or random as the decoder is)."""
    if initialisation not in INITIALISATIONS:
        raise ValueError(f"initialisation must be one of {list(INITIALISATIONS)}, got {initialisation!r}")
    encoder_bert, decoder_bert, shared = INITIALISATIONS[initialisation]
    if encoder_bert and decoder_bert:  # the documented warm start
        return EncoderDecoderModel.from_encoder_decoder_pretrained(
            weights, weights, seed=seed, tie_encoder_decoder=shared, cross_attention_init=cross_attention_init, **special
        )  # fmt: skip
    # Loaded for their configs too: a random part has the pre-trained one's shape.
    encoder = BertGenerationEncoder.from_pretrained(weights)
    decoder = BertGenerationDecoder.from_pretrained(weights, is_decoder=True, add_cross_attention=True, seed=seed)
    if not encoder_bert:
        encoder = BertGenerationEncoder(encoder.config, seed=seed)
    if not decoder_bert:
        decoder = BertGenerationDecoder(decoder.config, seed=seed + 1)
    if cross_attention_init == "self_attention":
        decoder.params = {**decoder.params, "bert": copy_self_to_cross_attention(decoder.params["bert"])}
    return EncoderDecoderModel.from_encoder_decoder(encoder, decoder, seed=seed, **special)


def predict(model, tokenizer, pairs, num_beams=4, max_new_tokens=40, batch_size=8, progress=None):
    """Beam-search every source; returns the decoded predictions and their token ids."""
    texts, token_ids = [], []
    for start in range(0, len(pairs), batch_size):
        chunk = [source for source, _ in pairs[start : start + batch_size]]
        batch = tokenizer(chunk, padding=True, truncation=True, max_length=128)
        sequences = model.generate(np.array(batch["input_ids"]), np.array(batch["attention_mask"]),
                             num_beams=num_beams, max_new_tokens=max_new_tokens)  # fmt: skip
        for row in sequences:
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


def seconds_per_step(model, tokenizer, pairs, batch_size) -> float:
    """Time whole training steps (forward, backward, clipping, AdamW) whose updates are thrown away."""
    batch = collate(encode_pairs(tokenizer, pairs[:batch_size]), tokenizer.pad_token_id)
    optimizer = AdamW()
    times = []
    for _ in range(2):  # the first also warms up
        start = time.perf_counter()
        grads, _ = clip_grad_norm(model.backward(model(**batch, train=True, rng=np.random.default_rng(0))), 1.0)
        optimizer.step(model.params, grads)  # the new parameters are discarded
        times.append(time.perf_counter() - start)
    return min(times) * 1.1  # + 10% for bookkeeping


def settings_for(steps, batch_size, lr, seed) -> TrainSettings:
    """The recipe's TrainSettings for ``steps``: 10% warmup, then linear decay; evaluations every 50 steps."""
    return TrainSettings(steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                         warmup_steps=max(1, round(steps * RECIPE["warmup_share"])),
                         eval_every=min(RECIPE["eval_every"], steps))  # fmt: skip


def fine_tune_and_score(model, tokenizer, train_pairs, heldout, folder, settings, *, num_beams, max_new_tokens,
                        progress, label) -> tuple[dict, list[str], list[dict]]:  # fmt: skip
    """Train ``model`` into ``folder`` (loss.csv, loss.png), then score it on the held-out pairs:
    returns the scores, the beam-search predictions and the training history."""
    from tqdm.auto import tqdm

    discard_run(folder)  # the demo's run folders are its own: a rerun replaces them
    run = train(model, tokenizer, train_pairs, folder, settings, eval_pairs=heldout, save_checkpoints=False,
                progress=progress)  # fmt: skip
    bar = tqdm(total=len(heldout), desc=f"{label}: beam search", unit="ex", disable=not progress)
    texts, token_ids = predict(run.model, tokenizer, heldout, num_beams=num_beams, max_new_tokens=max_new_tokens,
                               progress=bar)  # fmt: skip
    bar.close()
    held = encode_pairs(tokenizer, heldout)
    result = {**source_dependence(run.model, held, settings.batch_size, tokenizer.pad_token_id),
              **scores(tokenizer, heldout, texts, token_ids), "distinct_predictions": len(set(texts))}  # fmt: skip
    return result, texts, run.history


def run_demo(out_dir="runs/demo", *, steps=None, budget=None, n_train=RECIPE["n_train"],
             n_heldout=RECIPE["n_heldout"], batch_size=RECIPE["batch_size"], lr=RECIPE["lr"],
             cross_attention_init=RECIPE["cross_attention_init"], seed=0, num_beams=4, max_new_tokens=40,
             progress=True) -> DemoResult:  # fmt: skip
    """Run the demo; see the module docstring. ``steps`` defaults to ``RECIPE["steps"]``; ``budget``
    (seconds, optional) instead fits the steps of the two runs to about 80% of it."""
    if n_heldout < 1 or n_train < 1:
        raise ValueError(f"the demo needs at least one training and one held-out pair, got {n_train} and {n_heldout}")
    started = time.perf_counter()
    weights = find_weights("minilm-l6") or fetch("minilm-l6")
    tokenizer = BertTokenizer.from_pretrained(weights)
    ids = special_ids(tokenizer)
    train_pairs, heldout = train_and_heldout(n_train, n_heldout, seed)

    warm = build_model(weights, "bert2bert", cross_attention_init, seed=seed, **ids)
    step_s = seconds_per_step(warm, tokenizer, train_pairs, batch_size)
    if steps is None:
        steps = RECIPE["steps"] if budget is None else max(5, int(0.4 * budget / step_s))
    settings = settings_for(steps, batch_size, lr, seed)
    estimate = 2 * steps * step_s  # evaluations and beam search add ~5%; the timed steps overestimate a bit
    print(f"fine-tuning {steps} steps of batch {batch_size} (lr {lr}, warmup {settings.warmup_steps}) on "
          f"{len(train_pairs)} sentence-fusion pairs, twice; {len(heldout)} held out.\n"
          f"estimate: {estimate / 60:.1f} minutes ({step_s:.2f} s per training step measured here)")  # fmt: skip

    results, predictions, histories = {}, {}, {}
    for name in ("warm", "random"):
        if name == "warm":
            model = warm
            print(f"\nwarm: bert2bert from MiniLM (BERT) weights, cross-attention {describe(cross_attention_init)}")
        else:
            model = EncoderDecoderModel(warm.config, seed=seed)
            print("\nrandom: the same architecture from random init (transformers' init scheme)")
        folder = os.path.join(out_dir, name)
        results[name], predictions[name], histories[name] = fine_tune_and_score(
            model, tokenizer, train_pairs, heldout, folder, settings, num_beams=num_beams,
            max_new_tokens=max_new_tokens, progress=progress, label=name,
        )  # fmt: skip
        model.save_pretrained(folder)  # the trained model (train() updated model.params): generate --model FOLDER
        tokenizer.save_pretrained(folder)
    seconds = time.perf_counter() - started
    rows = [{"source": s, "target": t, "warm": w, "random": r}
            for (s, t), w, r in zip(heldout, predictions["warm"], predictions["random"], strict=True)]  # fmt: skip
    write_json_atomic(os.path.join(out_dir, "summary.json"), {
        "steps": steps, "seconds": round(seconds, 1),
        "data": {"n_train": n_train, "n_heldout": n_heldout, "seed": seed},
        "recipe": {"batch_size": batch_size, "lr": lr, "warmup_steps": settings.warmup_steps,
                   "schedule": "linear warmup, then linear decay to 0", "cross_attention_init": cross_attention_init,
                   "num_beams": num_beams},
        "warm": results["warm"], "random": results["random"], "rows": rows,
    })  # fmt: skip
    write_curves(out_dir, histories)
    return DemoResult(steps, seconds, results["warm"], results["random"], rows, out_dir)


def describe(cross_attention_init) -> str:
    """How a cross-attention start reads in the progress lines."""
    return {"self_attention": "copied from each layer's self-attention", "random": "random (as Rothe et al.)"}[
        cross_attention_init
    ]


def write_curves(out_dir, histories, labels=None) -> None:
    """loss.csv with each run's training loss, one column per run, and loss.png (when matplotlib
    is installed): training loss, held-out loss and held-out loss with shuffled sources per run."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "loss.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["step", *histories])
        for step, records in enumerate(zip(*histories.values(), strict=True), 1):
            writer.writerow([step, *(r["loss"] for r in records)])
    fig = new_figure(figsize=(7, 4.5))
    if fig is None:
        return
    ax = fig.add_subplot()
    for i, (name, history) in enumerate(histories.items()):
        colour, label = f"C{i}", (labels or {}).get(name, name)
        ax.plot([r["step"] for r in history], [r["loss"] for r in history], color=colour, lw=0.8, alpha=0.6,
                label=f"{label}: train")  # fmt: skip
        evals = [r for r in history if r["eval_loss"] != ""]
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", color=colour, label=f"{label}: held-out")
        ax.plot([r["step"] for r in evals], [r["eval_shuffled_loss"] for r in evals], "s:", color=colour,
                label=f"{label}: held-out, shuffled sources")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy / token")
    ax.legend(fontsize=6 if len(histories) > 2 else 8, ncol=2 if len(histories) > 2 else 1)
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


METRICS = (("heldout_loss", "loss (per token)"), ("shuffled_source_loss", "loss, shuffled sources"),
           ("source_gap", "what the source is worth"), ("exact_match", "exact match"),
           ("token_accuracy", "token accuracy"), ("distinct_predictions", "distinct predictions"))  # fmt: skip


def summary(result: DemoResult, max_examples=6) -> str:
    """The final screen: the loss curve, a few held-out examples, and warm start vs random init."""
    lines = []
    with open(os.path.join(result.run_dir, "loss.csv"), encoding="utf-8") as f:
        warm_losses = [float(row["warm"]) for row in csv.DictReader(f)]
    lines += ["", f"training loss, warm start ({result.steps} steps):", *ascii_curve(warm_losses), ""]
    for row in result.rows[:max_examples]:
        lines += [f"  source:     {row['source']}", f"  target:     {row['target']}",
                  f"  warm start: {row['warm']}", f"  random:     {row['random']}", ""]  # fmt: skip
    lines.append(f"{'held-out (' + str(len(result.rows)) + ' examples)':28s} {'warm start':>12s} {'random init':>12s}")
    for key, label in METRICS:
        digits = 0 if key == "distinct_predictions" else 3
        lines.append(f"{label:28s} {result.warm[key]:12.{digits}f} {result.random[key]:12.{digits}f}")
    better = result.warm["exact_match"] > result.random["exact_match"] and result.warm["heldout_loss"] < result.random["heldout_loss"]
    lines += ["", f"warm start {'beats' if better else 'does NOT beat'} random init on exact match and held-out "
              f"loss, with the same {result.steps} steps ({result.seconds / 60:.1f} minutes in all)."]  # fmt: skip
    for name in ("warm", "random"):
        warning = source_gap_warning(getattr(result, name))
        if warning:
            lines.append(f"{name}: {warning}")
    lines.append(f"run folder: {result.run_dir} (warm/ and random/: models with their tokenizer, "
                 "loss.csv and loss.png each; summary.json; loss.csv, loss.png)")  # fmt: skip
    lines.append(f'try: minibertgen generate --model {os.path.join(result.run_dir, "warm")} "Tom was hungry. Tom ate a cake."')
    return "\n".join(lines)


# ================================================================ the paper's table in miniature

# Rothe et al. (TACL 2020), 12-layer BERT-base models, full training data: Table 2, sentence fusion
# (DiscoFuse: Exact, SARI) and Table 3, split and rephrase (WikiSplit: Exact, SARI). Facts cited
# from the paper; the paper's random cross-attention corresponds to our "random" rows.
PAPER_TABLE = {
    "rnd2rnd": "DiscoFuse 58.3 / 86.9, WikiSplit 14.6 / 61.7",
    "bert2rnd": "DiscoFuse 63.9 / 89.3, WikiSplit 15.9 / 63.1",
    "rnd2bert": "DiscoFuse 60.0 / 87.6, WikiSplit 15.2 / 61.8",
    "bert2bert": "DiscoFuse 63.9 / 89.3, WikiSplit 15.6 / 63.2",
    "bertShare": "DiscoFuse 63.9 / 89.2, WikiSplit 16.3 / 63.5",
}


def run_table(out_dir="runs/demo/table", *, steps=RECIPE["steps"], seed=0, num_beams=4, max_new_tokens=40,
              progress=True) -> list[dict]:  # fmt: skip
    """Train every initialisation with both cross-attention starts on the demo's recipe; write
    ``table.json`` and one ``loss.png`` of all curves; return the rows."""
    weights = find_weights("minilm-l6") or fetch("minilm-l6")
    tokenizer = BertTokenizer.from_pretrained(weights)
    ids = special_ids(tokenizer)
    train_pairs, heldout = train_and_heldout(RECIPE["n_train"], RECIPE["n_heldout"], seed)
    settings = settings_for(steps, RECIPE["batch_size"], RECIPE["lr"], seed)
    rows, histories = [], {}
    for initialisation in INITIALISATIONS:
        for cross in ("random", "self_attention"):
            name = f"{initialisation}/{cross}"
            print(f"\n{name}: cross-attention {describe(cross)}")
            started = time.perf_counter()
            model = build_model(weights, initialisation, cross, seed=seed, **ids)
            result, _, histories[name] = fine_tune_and_score(
                model, tokenizer, train_pairs, heldout, os.path.join(out_dir, initialisation + "-" + cross),
                settings, num_beams=num_beams, max_new_tokens=max_new_tokens, progress=progress, label=name,
            )  # fmt: skip
            rows.append({"initialisation": initialisation, "cross_attention_init": cross, **result,
                         "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
            write_json_atomic(os.path.join(out_dir, "table.json"), {"steps": steps, "seed": seed, "rows": rows})
    write_curves(out_dir, histories)
    return rows


def table_text(rows) -> str:
    """The rows as a terminal table, the paper's figures beside them."""
    head = f"{'initialisation':14s} {'cross-attention':15s} {'exact':>6s} {'loss':>7s} {'shuffled':>8s} {'distinct':>8s}"
    lines = [head]
    for r in rows:
        paper = PAPER_TABLE[r["initialisation"]]
        lines.append(f"{r['initialisation']:14s} {r['cross_attention_init']:15s} {r['exact_match']:6.3f} "
                     f"{r['heldout_loss']:7.3f} {r['shuffled_source_loss']:8.3f} {r['distinct_predictions']:8d}"
                     + (f"   paper (Exact / SARI): {paper}" if r["cross_attention_init"] == "random" else ""))  # fmt: skip
    return "\n".join(lines)
