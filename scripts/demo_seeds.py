"""How much of the demo's result is the seed? Train the demo's warm bert2bert (``minibertgen.demo.RECIPE``)
once per seed and print its held-out scores, one row per seed.

A seed picks the generated data (the training and held-out pairs are different sentences), the batch
order and the dropout masks; the weights start from MiniLM and the cross-attention as a copy of the
self-attention in every run. Each seed runs in its own process on one BLAS thread (``--jobs`` at a
time), so the figures do not depend on the load of the machine.

    python scripts/demo_seeds.py --seeds 0 1 2 3 --jobs 2        # ~6 minutes on 2 cores (2.8 per pair of seeds)
    python scripts/demo_seeds.py --seeds 0 1 2 3 --random         # the random-init run too (twice the time)

It writes ``OUT/seed-N.json`` per seed (the scores and every held-out row) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

COLUMNS = (("exact_match", "exact match", "{:.3f}"), ("token_accuracy", "token accuracy", "{:.3f}"),
           ("heldout_loss", "loss", "{:.3f}"), ("shuffled_source_loss", "shuffled-source loss", "{:.3f}"),
           ("source_gap", "gap", "{:.3f}"), ("distinct_predictions", "distinct", "{:d}"))  # fmt: skip


def run_one(seed: int, out: str, with_random: bool, steps: int, lr: float, n_train: int, n_heldout: int,
            max_new_tokens: int) -> None:  # fmt: skip
    """Train and score one seed in this process; write ``out/seed-N.json``."""
    from minibertgen.config import write_json_atomic
    from minibertgen.demo import RECIPE, build_model, fine_tune_and_score, settings_for
    from minibertgen.fetch import fetch, find_weights
    from minibertgen.fusion import train_and_heldout
    from minibertgen.model import EncoderDecoderModel
    from minibertgen.tokenization import BertTokenizer
    from minibertgen.train import special_ids

    weights = find_weights("minilm-l6") or fetch("minilm-l6")
    tokenizer = BertTokenizer.from_pretrained(weights)
    train_pairs, heldout = train_and_heldout(n_train, n_heldout, seed)
    settings = settings_for(steps, RECIPE["batch_size"], lr, seed)
    warm = build_model(weights, "bert2bert", RECIPE["cross_attention_init"], seed=seed, **special_ids(tokenizer))
    models = {"warm": warm}
    if with_random:
        models["random"] = EncoderDecoderModel(warm.config, seed=seed)
    record = {"seed": seed, "steps": settings.steps, "lr": lr}
    for name, model in models.items():
        started = time.perf_counter()
        scores, texts, _ = fine_tune_and_score(model, tokenizer, train_pairs, heldout, os.path.join(out, f"seed-{seed}", name),
                                               settings, num_beams=4, max_new_tokens=max_new_tokens, progress=False, label=name)  # fmt: skip
        record[name] = {**scores, "seconds": round(time.perf_counter() - started, 1),
                        "rows": [{"source": s, "target": t, "prediction": p} for (s, t), p in zip(heldout, texts, strict=True)]}  # fmt: skip
    write_json_atomic(os.path.join(out, f"seed-{seed}.json"), record)


def table(records: list[dict], names: list[str]) -> str:
    """A Markdown table: one row per seed and run, then the range over seeds."""
    lines = ["| seed | run | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]  # fmt: skip
    for record in records:
        for name in names:
            values = [fmt.format(record[name][key]) for key, _, fmt in COLUMNS]
            lines.append(f"| {record['seed']} | {name} | " + " | ".join(values) + " |")
    for name in names:
        ranges = []
        for key, _, fmt in COLUMNS:
            values = [record[name][key] for record in records]
            ranges.append(f"{fmt.format(min(values))}-{fmt.format(max(values))}")
        lines.append(f"| all | {name} (min-max) | " + " | ".join(ranges) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from minibertgen.demo import RECIPE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--jobs", type=int, default=2, help="seeds trained at once (one BLAS thread each)")
    parser.add_argument("--out", default="runs/demo-seeds")
    parser.add_argument("--random", action="store_true", help="also train the random-init model per seed")
    parser.add_argument("--steps", type=int, default=RECIPE["steps"], help="the demo's unless given (a smoke run)")
    parser.add_argument("--lr", type=float, default=RECIPE["lr"])
    parser.add_argument("--train-size", type=int, default=RECIPE["n_train"])
    parser.add_argument("--heldout", type=int, default=RECIPE["n_heldout"])
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: train this seed only
    args = parser.parse_args(argv)
    for name in ("jobs", "steps", "train_size", "heldout", "max_new_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.lr > 0:
        parser.error(f"--lr must be positive, got {args.lr}")
    sizes = ["--steps", str(args.steps), "--lr", repr(args.lr), "--train-size", str(args.train_size), "--heldout", str(args.heldout),
             "--max-new-tokens", str(args.max_new_tokens)]  # fmt: skip
    if args.one is not None:
        run_one(args.one, args.out, args.random, args.steps, args.lr, args.train_size, args.heldout, args.max_new_tokens)
        return 0

    os.makedirs(args.out, exist_ok=True)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MINIBERTGEN_THREADS": "1"}  # fmt: skip
    seeds = list(dict.fromkeys(args.seeds))  # each once: a seed's files are its own
    waiting, running, failed = list(seeds), {}, []
    started = time.perf_counter()
    while waiting or running:
        while waiting and len(running) < args.jobs:
            seed = waiting.pop(0)
            command = [sys.executable, __file__, "--one", str(seed), "--out", args.out, *sizes]
            command += ["--random"] if args.random else []
            running[seed] = subprocess.Popen(command, env=env)
            print(f"seed {seed}: started", flush=True)
        time.sleep(2)
        for seed, process in list(running.items()):
            if process.poll() is not None:
                del running[seed]
                print(f"seed {seed}: {'done' if process.returncode == 0 else f'failed (exit {process.returncode})'} "
                      f"at {(time.perf_counter() - started) / 60:.1f} min", flush=True)  # fmt: skip
                if process.returncode != 0:
                    failed.append(seed)
    records = []
    for seed in seeds:
        if seed not in failed:
            with open(os.path.join(args.out, f"seed-{seed}.json"), encoding="utf-8") as file:
                records.append(json.load(file))
    if records:
        print(table(records, ["warm", "random"] if args.random else ["warm"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
