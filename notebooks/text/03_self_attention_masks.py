# Text twin of notebooks/03_self_attention_masks.ipynb (cells only; outputs in the notebook). Written by scripts/notebook_text.py.

# %% [markdown]
# # 03 · Multi-head self-attention and masks
#
# **You will learn:** how queries, keys and values are computed and split into heads; how an additive
# mask hides padding and future positions; what the heads of a real model (MiniLM) look at; and how to
# check every attention probability against transformers.
#
# **Prerequisites:** notebooks 01 and 02 (tokens, embeddings and positions).
#
# **Time:** about 30 minutes.
#
# Self-attention lets every token read every other token. Each token asks a question (a *query*),
# offers a label (a *key*) and carries content (a *value*); a token's output is the average of all
# values, weighted by how well its query matches each key. With $H$ heads this happens $H$ times in
# parallel on slices of width $D_h = D / H$:
#
# $$Q = X W_Q^\top + b_Q,\quad K = X W_K^\top + b_K,\quad V = X W_V^\top + b_V \qquad (B, T, D) \to (B, H, T, D_h)$$
#
# $$S = \frac{Q K^\top}{\sqrt{D_h}} + M, \qquad A = \operatorname{softmax}_{\text{keys}}(S), \qquad
# C = \operatorname{merge}(A V) \qquad (B, H, T, T) \to (B, T, D)$$
#
# $M$ is an **additive mask**: $0$ where a query may look, a huge negative number where it may not,
# so that $e^{S}$ is exactly $0$ there. Dividing by $\sqrt{D_h}$ keeps the scores' variance near 1
# whatever the head width, so softmax does not saturate. Then the layer projects, adds the input
# back and normalizes: $\operatorname{LN}(C W_O^\top + b_O + X)$.
#
# **Code path** (`minibertgen/attention.py`): `split_heads`, `merge_heads`, `additive_mask`,
# `padding_mask`, `causal_padding_mask`, `attention_forward` (with `ops.linear_forward`,
# `ops.softmax_forward`); the output step is `blocks.attention_block_forward`.
#
# **Check:** every layer's attention probabilities of MiniLM against transformers (float64); without
# transformers, the committed encoder dump in `tests/fixtures/reference/`.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minibertgen as mbg
from minibertgen.attention import (
    attention_forward, causal_padding_mask, merge_heads, padding_mask, split_heads,
)
from minibertgen.fetch import require_weights
from minibertgen.stack import embeddings_forward
from minibertgen.ops import linear_forward, softmax_forward

MINILM = require_weights("minilm-l6")  # missing: stops here, saying to run `minibertgen fetch minilm-l6` (~84 MB)
enc = mbg.BertGenerationEncoder.from_pretrained(MINILM, dtype="float64")
tok = mbg.BertTokenizer.from_pretrained(MINILM)
cfg = enc.config
print(f"D = {cfg.hidden_size}, H = {cfg.num_attention_heads}, Dh = {cfg.head_dim}, layers = {cfg.num_hidden_layers}")

# %% [markdown]
# ## Shapes, step by step
#
# We take two sentences of different lengths, so the batch needs padding, and run the first layer's
# attention by hand on MiniLM's real weights.

# %%
texts = ["the cat sat on the mat because it was warm", "dogs bark"]
batch = tok(texts, padding=True)
ids, mask = np.array(batch["input_ids"]), np.array(batch["attention_mask"], dtype=np.float64)
x, _ = embeddings_forward(ids, enc.params["embeddings"], cfg)  # the layer's input
p = enc.params["encoder"]["layer"][0]["attention"]["self"]  # {"query", "key", "value"}: (D, D) weights
H = cfg.num_attention_heads

q = split_heads(linear_forward(x, p["query"])[0], H)
k = split_heads(linear_forward(x, p["key"])[0], H)
v = split_heads(linear_forward(x, p["value"])[0], H)
scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
mask_add = padding_mask(mask, x.dtype)
probs, _ = softmax_forward(scores + mask_add)
context = merge_heads(probs @ v)
for name, a in [("x", x), ("q = split_heads(x Wq^T + bq)", q), ("k", k), ("v", v),
                ("scores = q k^T / sqrt(Dh)", scores), ("mask_add (padding_mask)", mask_add),
                ("probs = softmax(scores + mask_add)", probs), ("probs @ v", probs @ v),
                ("context = merge_heads(probs @ v)", context)]:
    print(f"{name:36s} {str(a.shape):18s}")

ours, cache = attention_forward(x, p, mask_add, H)
print("\nmax |by hand - attention_forward| =", np.abs(context - ours).max())

# %% [markdown]
# `split_heads` is only a reshape and a transpose, $(B, T, D) \to (B, T, H, D_h) \to (B, H, T, D_h)$:
# head $h$ owns features $h D_h, \dots, (h+1) D_h - 1$. The mask has shape $(B, 1, 1, T)$ and
# broadcasts over heads and queries: "key $j$ of sequence $b$ is padding" holds for every query.
#
# ## The padding mask
#
# Sequence 1 ("dogs bark") has 4 real tokens followed by padding.
#
# **Predict, then run:** how much attention do the real queries of sequence 1 put on its padded keys:
# about $10^{-5}$, about $10^{-300}$, or exactly 0? The next cell prints the largest such weight.

# %%
row = probs[1, 0]  # sequence 1, head 0: (T, T)
n = int(mask[1].sum())
print("attention of sequence 1's real queries on its padded keys:", row[:n, n:].max())
print("each row sums to 1:", np.allclose(probs.sum(-1), 1.0))
print("values in mask_add:", sorted({float(v) + 0.0 for v in np.unique(mask_add)}), "= 0 and np.finfo(np.float64).min")

# %% [markdown]
# Its padded keys get probability exactly 0, so the real tokens' outputs do not depend on what the padding holds.

# %% [markdown]
# Why $\text{finfo.min}$ and not $-\infty$? A query that may see **no** key at all (a padded query in
# a decoder, say) would get $\operatorname{softmax}(-\infty, \dots, -\infty) = 0/0 = \text{NaN}$, and
# a NaN spreads everywhere. With $\text{finfo.min}$ every score in such a row is equal, the softmax is
# uniform and finite, and the reference (transformers) does the same.
#
# ## What the heads look at
#
# The cache of each layer keeps its attention probabilities. Six heads of the first sentence, in an
# early and a late layer:

# %%
out = enc.forward(ids, mask)
tokens = tok.convert_ids_to_tokens(ids[0].tolist())
n0 = int(mask[0].sum())
fig, axes = plt.subplots(2, 6, figsize=(18, 7.5), layout="constrained")  # constrained: no title overlaps the ticks above it
for r, layer in enumerate([0, cfg.num_hidden_layers - 1]):
    layer_probs = out.cache["layers"][layer]["attention"]["self"]["probs"]  # (B, H, T, T)
    for c, head in enumerate(range(0, 12, 2)):
        ax = axes[r, c]
        im = ax.imshow(layer_probs[0, head, :n0, :n0], cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"layer {layer}, head {head}", fontsize=9)
        ax.set_xticks(range(n0))
        ax.set_xticklabels(tokens[:n0], rotation=90, fontsize=7)
        ax.set_yticks(range(n0))
        ax.set_yticklabels(tokens[:n0] if c == 0 else [], fontsize=7)
    fig.colorbar(im, ax=axes[r], shrink=0.9, pad=0.01, label=f"layer {layer}: attention probability")  # one scale, 0 to 1, per row
fig.supxlabel("key (looked at)")
fig.supylabel("query (looking)")
plt.show()

# What each drawn head of layer 0 prefers, in numbers: the offset j - i of each query's largest weight
# (its most common value over the queries), and the mean weight on [CLS] and on [SEP].
first = out.cache["layers"][0]["attention"]["self"]["probs"][0, :, :n0, :n0]  # (H, n0, n0)
for head in range(0, 12, 2):
    offsets = first[head].argmax(axis=-1) - np.arange(n0)
    values, counts = np.unique(offsets, return_counts=True)
    best = int(values[counts.argmax()])
    on_best = np.mean([first[head, i, i + best] for i in range(n0) if 0 <= i + best < n0])
    print(f"layer 0, head {head:2d}: offset {best:+3d} for {counts.max():2d} of {n0} queries (mean weight there "
          f"{on_best:.2f}); mean weight on [CLS] {first[head, :, 0].mean():.2f}, on [SEP] {first[head, :, n0 - 1].mean():.2f}")
the = [i for i, t in enumerate(tokens[:n0]) if t == "the"]
print(f"layer 0, head 8: weight of the second 'the' (position {the[1]}) on the first (position {the[0]}): "
      f"{first[8, the[1], the[0]]:.2f}")

# %% [markdown]
# Rows are queries, columns keys, each row sums to 1. In the first layer the heads differ a lot, and
# the numbers under the figure say how. Head 2 is a **previous-token head**: the bright line sits
# just left of the diagonal, and for 10 of 12 queries the largest weight is on key $i - 1$ (offset
# $-1$, mean weight 0.88 there). Heads 0 and 4 gather on `[SEP]` (a bright column, often a "nothing
# to do here" default): mean weight 0.37 and 0.30 on it. Head 8 links the two "the"s: the second
# puts 0.56 of its weight on the first. In the last layer most heads
# spread their attention almost evenly: this MiniLM was trained to make sentence embeddings by
# averaging over all tokens. Nothing in the code says which head does what: training decided.
#
# ## The causal mask
#
# A decoder generates left to right, so at training time position $i$ must not see positions
# $j > i$, or it could copy the answer. The decoder's mask combines both rules, for query $i$ and key $j$:
#
# $$\text{keep}_{b,i,j} = [\,j \le i\,] \cdot \text{attention\_mask}_{b,j}, \qquad M = (1 - \text{keep}) \cdot \text{finfo.min}.$$
#
# `causal_padding_mask(attention_mask, query_len, dtype)` returns it with shape $(B, 1, T_q, T_k)$.
# (When decoding with a KV cache, notebook 06, the queries are only the last `query_len` positions;
# here `query_len` $= T$.)
#
# **Predict, then run:** for six positions, how many (query, key) pairs may attend in a causal mask
# without padding, and in one whose last two positions are padding? The next cell counts them.

# %%
from matplotlib.colors import ListedColormap

demo = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=np.float64)
causal = causal_padding_mask(demo, 6, np.float64)  # (B, 1, T, T)
visible_or_hidden = ListedColormap(["#f2f2f2", "#238b45"])
fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), layout="constrained")
for ax, m, title in [(axes[0], padding_mask(demo, np.float64)[1, 0].repeat(6, 0), "padding only (row 1)"),
                     (axes[1], causal[0, 0], "causal (row 0: no padding)"),
                     (axes[2], causal[1, 0], "causal + padding (row 1)")]:
    im = ax.imshow(m == 0, cmap=visible_or_hidden, vmin=-0.5, vmax=1.5)  # two colours: 0 hidden, 1 visible
    ax.set(title=title, xlabel="key j", ylabel="query i")
    print(f"{title:28s}: {int((m == 0).sum()):2d} visible (query, key) pairs of {m.size}")
bar = fig.colorbar(im, ax=axes, shrink=0.85, ticks=[0, 1], label="may query i attend to key j?")
bar.ax.set_yticklabels(["hidden\n(finfo.min)", "visible\n(0)"])
plt.show()

# %% [markdown]
# Without padding query $i$ sees keys $0, \dots, i$: $1 + 2 + \dots + 6 = 21$ pairs of 36. Padding the last two keys hides key 4 from query 4 and keys 4 and 5 from query 5: $21 - 3 = 18$ pairs remain. (The padded queries 4 and 5 still see the real keys: their outputs are computed, then ignored by the loss.)
#
# ## Check against the reference
#
# transformers' `BertGenerationEncoder`, built from the same MiniLM weights (float64), returns every
# layer's attention probabilities with `output_attentions=True`. They must equal ours to rounding.
# Without transformers we run the committed encoder dump instead (written by transformers 4.57.6).

# %%
import warnings

from minibertgen import reference
from minibertgen.testing import assert_close

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when transformers loads
if reference.oracle_available():
    torch, _ = reference.load_oracle()
    hf = reference.hf_model(cfg, mbg.flatten(enc.params))  # float64
    with torch.no_grad():
        hf_out = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), output_attentions=True)
    for layer in range(cfg.num_hidden_layers):
        ours_probs = out.cache["layers"][layer]["attention"]["self"]["probs"]
        # float64: both differ only in summation order (~1e-16 per term)
        err = assert_close(ours_probs, hf_out.attentions[layer].numpy(), atol=1e-12, name=f"layer {layer} probs")
        print(f"layer {layer}: attention probabilities equal transformers', max abs error {err:.1e}")
else:
    from pathlib import Path

    from minibertgen.verify import run_case

    dump = Path(mbg.__file__).resolve().parents[1] / "tests" / "fixtures" / "reference" / "encoder_absolute"
    _, ours_dump, io = run_case(dump, "float64")
    for name, value in ours_dump.items():
        assert_close(value, io[name], atol=1e-9, name=name)  # float64 rounding; mistakes are >= 1e-4
    print(f"transformers is not installed: {len(ours_dump)} hidden states equal the committed dump {dump.name}")

# %% [markdown]
# ## Exercise: write the causal mask
#
# Write `my_causal_mask(attention_mask, query_len, dtype)`:
#
# * `attention_mask`: $(B, T_k)$ of 0/1, one entry per key (earlier, cached keys included);
# * the queries are the **last** `query_len` $= T_q$ positions, so query $i$ sits at position
#   $(T_k - T_q) + i$ and may see key $j$ when $j \le (T_k - T_q) + i$ and key $j$ is not padding;
# * return the additive mask, shape $(B, 1, T_q, T_k)$, dtype `dtype`: 0 where visible,
#   `np.finfo(dtype).min` where hidden.
#
# `minibertgen.exercises.check_causal_mask` grades it on random shapes and says what is wrong.

# %%
from minibertgen.exercises import check_causal_mask


def my_causal_mask(attention_mask, query_len, dtype):
    raise NotImplementedError("your code here")


try:
    check_causal_mask(my_causal_mask)
except NotImplementedError:
    print("Not written yet: fill in my_causal_mask above, then run this cell again.")

# %% [markdown]
# The solution is the package's own function: the checker compares against it, so the exercise and
# the implementation can never drift apart.

# %%
check_causal_mask(causal_padding_mask)

# %% [markdown]
# ## Summary
#
# * Self-attention computes $Q$, $K$, $V$ with three dense layers and splits them into $H$ heads of width
#   $D_h = D / H$ (`split_heads` is a reshape and a transpose); scores are scaled by $1/\sqrt{D_h}$.
# * An **additive mask** with $\text{finfo.min}$ (not $-\infty$) hides keys: padded keys get probability exactly 0,
#   and a row that may see nothing stays finite.
# * The decoder's **causal** mask combines "not after the query" with the padding, shape $(B, 1, T_q, T_k)$.
# * MiniLM's first-layer heads have readable roles (a previous-token head, `[SEP]` heads); its last layer
#   spreads attention evenly.
# * Every layer's attention probabilities equal transformers' to float64 rounding.
