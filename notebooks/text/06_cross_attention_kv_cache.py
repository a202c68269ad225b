# Text twin of notebooks/06_cross_attention_kv_cache.ipynb (cells only; outputs in the notebook). Written by scripts/notebook_text.py.

# %% [markdown]
# # 06 · Cross-attention, the decoder, and the KV cache
#
# **You will learn:** how the decoder reads the encoder through cross-attention and its source padding
# mask, what the KV cache keeps and why it gives the same numbers as recomputing the prefix, what it
# saves, and how to write the cache append and one decoding step yourself.
#
# **Prerequisites:** notebooks 03, 04 and 05.
#
# **Time:** about 45 minutes.
#
# A bert2bert decoder layer has three sub-blocks, each followed by "add the input, LayerNorm" (BERT's
# post-LN wiring, `minibertgen/blocks.py`):
#
# $$a = \operatorname{LN}_1\big(x + \operatorname{SelfAttn}_{\text{causal}}(x)\big), \qquad
# c = \operatorname{LN}_2\big(a + \operatorname{CrossAttn}(a, m)\big), \qquad
# y = \operatorname{LN}_3\big(c + \operatorname{FFN}(c)\big)$$
#
# **Cross-attention** is where the decoder reads the encoder. It is the same attention as before,
# except that the queries come from the decoder and the keys and values from the encoder output
# ("memory") $m \in \mathbb{R}^{B \times S \times D}$:
#
# $$Q = a W_Q^\top + b_Q \;(B, H, T, D_h), \qquad K = m W_K^\top + b_K,\; V = m W_V^\top + b_V \;(B, H, S, D_h),
# \qquad \text{scores } (B, H, T, S).$$
#
# Its mask is only the **source padding** mask $(B, 1, 1, S)$: no causal part, since the whole source
# is known. Generation then calls the decoder once per new token. Recomputing the whole prefix at
# every step repeats work: the keys and values of earlier positions never change (causality), and the
# cross-attention keys and values depend only on the encoder output. The **KV cache** (`past`) keeps
# them, so each step only computes the new token's row.
#
# **Code path:** `blocks.layer_forward` (self, cross, feed-forward), `attention.attention_forward`
# (`memory=` for cross-attention, `past_kv=` for the cache),
# `stack.decoder_forward(..., past=...)` (which returns `present`, the grown cache), `generate.encode_once`, `generate.decoder_step`.
#
# **Check:** full-sequence logits and greedy generation against transformers (which uses its own KV
# cache); without it, the committed generation dumps.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import minibertgen as mbg
from minibertgen.generate import decoder_step, encode_once
from minibertgen.stack import decoder_forward


def small_model(pos="absolute", seed=0, vocab=50, hidden=32, layers=2, heads=4):
    part = mbg.BertGenerationConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                    num_attention_heads=heads, intermediate_size=2 * hidden,
                                    max_position_embeddings=64, position_embedding_type=pos, initializer_range=0.3)
    config = mbg.EncoderDecoderConfig(part, part, decoder_start_token_id=2, pad_token_id=0, eos_token_id=1)
    return mbg.EncoderDecoderModel(config, seed=seed, dtype="float64")


model = small_model()
rng = np.random.default_rng(0)
src = np.array([[5, 17, 23, 9, 31, 12, 44], [7, 28, 15, 0, 0, 0, 0]])  # row 1 is padded
src_mask = (src != 0).astype(np.float64)
dec_ids = np.array([[2, 11, 36, 20, 8], [2, 19, 4, 27, 33]])  # start token 2 first
out = model(src, src_mask, decoder_input_ids=dec_ids)
cross = out.cache["decoder"]["bert"]["layers"][0]["crossattention"]["self"]
print("encoder output (memory)      ", out.encoder_last_hidden_state.shape, "(B, S, D)")
print("cross-attention queries      ", cross["q"].shape, "(B, H, T, Dh): from the decoder")
print("cross-attention keys, values ", cross["k"].shape, "(B, H, S, Dh): from the encoder")
print("cross-attention probabilities", cross["probs"].shape, "(B, H, T, S)")

# %% [markdown]
# **Predict, then run:** the next picture shows head 0's cross-attention probabilities, one row per
# target position. What will the columns of sequence 1's padded source positions look like? Does any
# row look like the causal staircase of self-attention?

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for b, ax in enumerate(axes):
    im = ax.imshow(cross["probs"][b, 0], cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, shrink=0.8, label="attention probability")
    ax.set(title=f"sequence {b}, head 0: decoder reads encoder", xlabel="source position s (encoder)",
           ylabel="target position t (decoder)")
    ax.set_xticks(range(src.shape[1]))
    # tick s: the position, and under it the token id there (or "pad")
    ax.set_xticklabels([f"{s}\n" + ("pad" if m == 0 else f"id {i}") for s, (i, m) in enumerate(zip(src[b], src_mask[b]))])
fig.tight_layout()
plt.show()

# %% [markdown]
# Every decoder position may read every real source token (no causal staircase), and the padded
# source positions of sequence 1 get exactly zero. So changing a real source token changes the
# decoder's output, and changing a padded one does not:

# %%
logits = out.logits
changed_real, changed_pad = src.copy(), src.copy()
changed_real[1, 1] = 3
changed_pad[1, 5] = 3
print("change a real source token  : max |d logits| =", np.abs(model(changed_real, src_mask, decoder_input_ids=dec_ids).logits - logits).max())
print("change a padded source token: max |d logits| =", np.abs(model(changed_pad, src_mask, decoder_input_ids=dec_ids).logits - logits).max())

# %% [markdown]
# ## The KV cache gives the same numbers
#
# Decode token by token: at each step feed only the newest token with the cache, and compare with a
# full forward over the whole prefix. `decoder_forward(..., past=past)` places the new token at
# position `len(past)` and returns, apart from the backward cache, `present`: each layer's keys and
# values of every position so far, the next step's `past`. `exercises.cache_vs_full` runs that loop
# (the encoder once, then 12 greedy steps, each with the cache and again without) and returns each
# step's largest difference; its few lines are the answer of exercise 2 below, so they are not
# printed here. (`generate.decoder_step` is one such step plus a float32 cast of the logits, as the
# reference does before choosing tokens.)

# %%
from minibertgen.exercises import cache_vs_full  # its code is exercise 2's answer, so it is not shown here

for pos in ("absolute", "relative_key", "relative_key_query"):
    m = small_model(pos, seed=1)
    errors, past = cache_vs_full(m, src, src_mask, dec_ids[:, :1], n_steps=12)  # per step: max |cached - full|
    print(f"{pos:18s} 12 steps, max |cached - full| = {max(errors):.1e}; "
          f"self-attention cache of layer 0: k {past[0]['self']['k'].shape}, cross k {past[0]['cross']['k'].shape}")

# %% [markdown]
# Equal to float64 rounding, for every position type. The self-attention cache grows by one position
# per step; the cross-attention cache keeps the $S$ source positions, computed once.
#
# ## What the cache saves
#
# Without the cache, step $t$ recomputes all $t$ positions: the total work for $n$ tokens grows like
# $n^2$ (and attention itself like $n^3$). With it, step $t$ computes one position attending over
# $t$ cached keys. Time per step on a somewhat larger model.
#
# **Predict, then run:** as the decoder length $t$ grows, which curve stays nearly flat, and which one climbs?

# %%
big = small_model(vocab=500, hidden=128, layers=2, heads=4, seed=2)
memory = encode_once(big, src, src_mask)
n_steps = 48
tokens = np.random.default_rng(3).integers(3, 500, size=(2, n_steps))
tokens[:, 0] = 2
t_cached, t_full, past = [], [], None
for t in range(1, n_steps + 1):
    start = time.perf_counter()
    _, past = decoder_step(big, tokens[:, t - 1 : t], past, memory, src_mask)
    t_cached.append(time.perf_counter() - start)
    start = time.perf_counter()
    big(src, src_mask, decoder_input_ids=tokens[:, :t])  # note: this also reruns the encoder
    t_full.append(time.perf_counter() - start)
plt.figure(figsize=(7, 3.2))
plt.plot(np.arange(1, n_steps + 1), 1e3 * np.array(t_full), label="recompute the prefix (and the encoder)")
plt.plot(np.arange(1, n_steps + 1), 1e3 * np.array(t_cached), label="one step with the KV cache")
plt.xlabel("decoder length t")
plt.ylabel("ms per step")
plt.title("time per generated token, batch of 2")
plt.legend()
plt.show()
print(f"total: {sum(t_full):.2f} s recomputing, {sum(t_cached):.2f} s with the cache")

# %% [markdown]
# ## Check against the reference
#
# transformers 4.57.6 computes the full forward without a cache (`use_cache=False`) and generates
# greedily with its own KV cache. Both must match: the logits to float64 rounding, the generated
# tokens exactly. (`no_repeat_ngram_size=2` bans repeated pairs, so that a random model does not just
# repeat one token.) Without transformers we reproduce the greedy runs recorded in
# `tests/fixtures/generation/*/grid.json` (written by transformers 4.57.6).

# %%
import json
import warnings
from pathlib import Path

from minibertgen import reference
from minibertgen.testing import assert_close

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when transformers loads
if reference.oracle_available():
    torch, _ = reference.load_oracle()
    for pos in ("absolute", "relative_key_query"):
        m = small_model(pos, seed=4)
        hf = reference.hf_model(m.config, mbg.flatten(m.params))
        theirs = reference.run_encoder_decoder(hf, src, src_mask, decoder_input_ids=dec_ids)
        err = assert_close(m(src, src_mask, decoder_input_ids=dec_ids).logits, theirs["logits"], atol=1e-9,
                           name=f"{pos} logits")  # float64: rounding only; mistakes are >= 1e-4
        ours_gen = m.generate(src, src_mask, max_new_tokens=10, no_repeat_ngram_size=2)
        with torch.no_grad():
            hf_gen = hf.generate(input_ids=torch.tensor(src), attention_mask=torch.tensor(src_mask).long(),
                                 max_new_tokens=10, no_repeat_ngram_size=2, num_beams=1, do_sample=False,
                                 decoder_start_token_id=2, eos_token_id=1, pad_token_id=0).numpy()
        assert ours_gen.tolist() == hf_gen.tolist(), (ours_gen, hf_gen)
        print(f"{pos:18s} logits max abs error {err:.1e}; greedy generation equal: {ours_gen.tolist()}")
else:
    fixtures = Path(mbg.__file__).resolve().parents[1] / "tests" / "fixtures" / "generation"
    for pos in ("absolute", "relative_key", "relative_key_query"):
        grid = json.loads((fixtures / pos / "grid.json").read_text())
        m = mbg.EncoderDecoderModel.from_pretrained(fixtures / pos, dtype="float64")
        ids = np.array(grid["input_ids"])
        greedy = [r for r in grid["results"] if r["settings"].get("num_beams", 1) == 1]
        for r in greedy:
            got = m.generate(ids, (ids != 0).astype(int), **grid["ids"], **r["settings"])
            assert got.tolist() == r["sequences"], r["settings"]
        print(f"transformers is not installed: {len(greedy)} greedy runs of the {pos} dump reproduced exactly")

# %% [markdown]
# ## Exercise 1: the cache append
#
# Write `my_cached_attention(x, p, num_heads, past_kv)`: self-attention for **one new token** with a
# KV cache.
#
# * `x`: $(B, 1, D)$, the new token's input; `p`: `{"query", "key", "value"}`, each
#   `{"weight": (D, D), "bias": (D,)}`;
# * `past_kv`: `None` at the first step, else `{"k": (B, H, T_p, D_h), "v": (B, H, T_p, D_h)}`;
# * return `(context, new_past_kv)`: context $(B, 1, D)$, and the cache with the new key and value
#   appended along the time axis, $(B, H, T_p + 1, D_h)$.
#
# The new query may see every cached key and itself, so no mask is needed. You may use `split_heads`,
# `merge_heads`, `linear_forward` and `softmax_forward`.

# %%
from minibertgen.attention import merge_heads, split_heads
from minibertgen.ops import linear_forward, softmax_forward
from minibertgen.exercises import check_cached_attention, check_decoder_step


def my_cached_attention(x, p, num_heads, past_kv):
    raise NotImplementedError("your code here")


try:
    check_cached_attention(my_cached_attention)
except NotImplementedError:
    print("Not written yet: fill in my_cached_attention above, then run this cell again.")

# %% [markdown]
# The solution, `minibertgen.exercises.cached_self_attention`, is the package's `attention_forward`
# called with `past_kv`; the checker compares every step's context with it and with full causal
# attention, and the cache itself, position by position: a cache that *prepends* the new key gives
# the right context (attention without positions ignores key order) but fails.

# %%
from minibertgen.exercises import cached_self_attention  # the solution

check_cached_attention(cached_self_attention)

# %% [markdown]
# ## Exercise 2: one decoder step
#
# Write `my_decoder_step(model, tokens, past, memory, memory_mask)`: run the decoder on the newest
# token of each row, `tokens` $(N, 1)$, with the cache `past` (a list with one
# `{"self": ..., "cross": ...}` per layer, or `None`), and return the logits of the new position
# $(N, V)$ and the grown cache. Use `model.params["decoder"]`, `model.config.decoder`,
# `decoder_forward` (it returns `logits, hidden_states, present, cache`).

# %%
def my_decoder_step(model, tokens, past, memory, memory_mask):
    raise NotImplementedError("your code here")


try:
    check_decoder_step(my_decoder_step)
except NotImplementedError:
    print("Not written yet: fill in my_decoder_step above, then run this cell again.")

# %%
check_decoder_step(decoder_step)  # the solution: minibertgen.generate.decoder_step

# %% [markdown]
# ## Summary
#
# * A decoder layer is causal self-attention, cross-attention and the feed-forward block, each
#   followed by "add the input, LayerNorm".
# * Cross-attention takes its queries from the decoder and its keys and values from the encoder
#   output; its only mask is the source padding, so padded source tokens get exactly zero weight and
#   change nothing.
# * The KV cache keeps the self-attention keys and values of every earlier position and the
#   cross-attention keys and values, computed once; decoding with it equals the full forward to
#   float64 rounding, for every position type.
# * With the cache a step computes one new position, so its time stays nearly flat instead of
#   growing with the prefix.
# * Logits and greedy generation equal transformers' (which uses its own cache).
