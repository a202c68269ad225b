"""Timings on a GPU: minibertgen on CuPy vs transformers + torch on CUDA, in the same run.

    python benchmarks/bench_gpu.py [--quick]

A bert2bert of MiniLM's shape (6 layers, hidden 384, 12 heads, vocab 30522) with random weights
(the real checkpoint may not be on a GPU machine), the same weights on both sides, the same
inputs; alternating runs, medians after warm-up, device synchronised around every timing.
Prints a markdown table with ratios ours / torch (below 1 means minibertgen is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import minibertgen as mbg  # noqa: E402
from minibertgen.train import AdamW, clip_grad_norm  # noqa: E402

PART = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
            max_position_embeddings=512, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip


def timed(fn, sync, repeats):
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7

    import cupy
    import torch
    import transformers

    part = mbg.BertGenerationConfig(**PART)
    config = mbg.EncoderDecoderConfig(part, part, decoder_start_token_id=101, pad_token_id=0, eos_token_id=102)
    ours = mbg.EncoderDecoderModel(config, seed=0).to("cupy")
    with tempfile.TemporaryDirectory() as folder:
        ours.save_pretrained(folder)
        theirs = transformers.EncoderDecoderModel.from_pretrained(folder).cuda().eval()
    rng = np.random.default_rng(0)
    src = rng.integers(1000, 30000, size=(8, 128))
    tgt = rng.integers(1000, 30000, size=(8, 32))
    src_t, tgt_t = torch.from_numpy(src).cuda(), torch.from_numpy(tgt).cuda()
    sync_ours, sync_theirs = cupy.cuda.Device().synchronize, torch.cuda.synchronize
    optimizer_ours = AdamW(lr=1e-5)
    optimizer_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-5)

    def ours_train_step():
        out = ours(src, labels=tgt, train=True)
        grads, _ = clip_grad_norm(ours.backward(out), 1.0)
        ours.params = optimizer_ours.step(ours.params, grads)

    def theirs_train_step():
        loss = theirs(input_ids=src_t, labels=tgt_t).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
        optimizer_theirs.step()
        optimizer_theirs.zero_grad()

    def ours_fwd_bwd():
        ours.backward(ours(src, labels=tgt))

    def theirs_fwd_bwd():
        theirs(input_ids=src_t, labels=tgt_t).loss.backward()
        theirs.zero_grad()

    def no_grad(fn):
        def run():
            with torch.no_grad():
                fn()

        return run

    beam = dict(num_beams=4, max_new_tokens=32, min_new_tokens=32)
    rows = [
        ("encoder forward, 8 x 128", lambda: ours.encoder(src),
         no_grad(lambda: theirs.encoder(input_ids=src_t))),
        ("forward + backward, 8 x 128 -> 32", ours_fwd_bwd, theirs_fwd_bwd),
        ("training step (AdamW, clipping)", ours_train_step, theirs_train_step),
        ("beam search, 4 beams, 32 tokens, batch 1", lambda: ours.generate(src[:1], **beam),
         no_grad(lambda: theirs.generate(input_ids=src_t[:1], **beam))),
        ("beam search, 4 beams, 32 tokens, batch 8", lambda: ours.generate(src, **beam),
         no_grad(lambda: theirs.generate(input_ids=src_t, **beam))),
    ]  # fmt: skip
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    print(f"device: {name}; cupy {cupy.__version__}, torch {torch.__version__}, transformers {transformers.__version__}"
          f" (attention: {theirs.config.encoder._attn_implementation}), numpy {np.__version__}\n")  # fmt: skip
    print("| row | minibertgen (CuPy) s | transformers (CUDA) s | ratio |")
    print("|---|---:|---:|---:|")
    for label, ours_fn, theirs_fn in rows:
        ours_fn(), theirs_fn()  # warm-up: kernels compiled, memory pools filled
        t_ours, t_theirs = [], []
        for _ in range(repeats):  # alternate, so drift hits both alike
            t_ours.append(timed(ours_fn, sync_ours, 1))
            t_theirs.append(timed(theirs_fn, sync_theirs, 1))
        a, b = statistics.median(t_ours), statistics.median(t_theirs)
        print(f"| {label} | {a:.4f} | {b:.4f} | {a / b:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
