"""A toy task that trains a tiny model in seconds, for the search and sampling tutorials (11, 12).

**Reverse and stop**: reverse a sequence of 4-6 tokens, but stop early: after the second output
token each further token is dropped with probability 0.4 (then eos). The order of the tokens is
certain and *where to stop* is not, which is what beam search's length penalty and early stopping,
and a sampler's warpers, act on.
"""

from __future__ import annotations

import numpy as np

EOS, START, PAD, V = 1, 2, 0, 16  # eos, decoder start, padding; vocabulary size (tokens 3..15 are content)


def reverse_and_stop(rng: np.random.Generator, n: int = 32, stop: float = 0.4):
    """A batch of the task: source ids (n, 6) padded with PAD, its mask (n, 6) float32, and labels
    (n, 7): the reversed source cut after 2 + Geometric(stop) tokens, then EOS, then -100."""
    src, labels = np.zeros((n, 6), dtype=np.int64), np.full((n, 7), -100)
    for b in range(n):
        length = rng.integers(4, 7)
        seq = rng.integers(3, V, size=length)
        src[b, :length] = seq
        keep = 2
        while keep < length and rng.random() >= stop:
            keep += 1
        labels[b, : keep + 1] = [*seq[::-1][:keep], EOS]
    return src, (src != PAD).astype(np.float32), labels


def train_reverser(steps: int = 300, seed: int = 1):
    """A 1-layer bert2bert (hidden 32, 4 heads, no dropout) trained on ``steps`` fresh batches of 32
    with notebook 08's loop (AdamW lr 1e-2, 10 warmup steps then linear decay, clipping at norm 1),
    returned in float64 for exact comparisons with the reference. About 3 s on one core."""
    from .config import BertGenerationConfig, EncoderDecoderConfig
    from .model import EncoderDecoderModel
    from .train import AdamW, clip_grad_norm, default_no_decay, linear_schedule

    part = BertGenerationConfig(vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                intermediate_size=64, max_position_embeddings=16, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0)  # fmt: skip
    config = EncoderDecoderConfig(part, part, decoder_start_token_id=START, pad_token_id=PAD, eos_token_id=EOS)
    model = EncoderDecoderModel(config, seed=0)
    rng, optimizer = np.random.default_rng(seed), AdamW(lr=1e-2, weight_decay=0.01, no_decay=default_no_decay)
    for step in range(steps):
        src, src_mask, labels = reverse_and_stop(rng)
        grads, _ = clip_grad_norm(model.backward(model(src, src_mask, labels=labels)), 1.0)
        model.params = optimizer.step(model.params, grads, lr=1e-2 * linear_schedule(step, 10, steps))
    return model.to(dtype="float64")
