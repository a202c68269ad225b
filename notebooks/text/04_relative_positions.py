# Text twin of notebooks/04_relative_positions.ipynb (cells only; outputs in the notebook). Written by scripts/notebook_text.py.

# %% [markdown]
# # 04 · Relative positions: `relative_key` and `relative_key_query`
#
# **You will learn:** how `relative_key` and `relative_key_query` add a learned vector per signed
# distance to the attention scores, how the distance table is indexed (with and without a KV cache),
# why that makes patterns like a previous-token head cheap, and a defect of the reference.
#
# **Prerequisites:** notebooks 02 and 03.
#
# **Time:** about 35 minutes.
#
# Absolute position embeddings (notebook 02) tell a token *where it is*. Often what matters is *how
# far apart* two tokens are: "the word just before me" means the same thing at position 3 and at
# position 300. Shaw et al. (2018) and Huang et al. (2020) add this to the attention scores directly.
# BertGeneration supports both variants through `position_embedding_type`. For query position $l$ and
# key position $r$, with a learned **distance table** $E \in \mathbb{R}^{(2P-1) \times D_h}$ (one per
# layer, shared by the heads):
#
# $$e_{lr} = E[\,l - r + P - 1\,] \qquad \text{(the row for the signed distance } l - r \in [-(P-1), P-1])$$
#
# $$\texttt{relative\_key}:\quad S_{lr} = \frac{q_l \cdot k_r + q_l \cdot e_{lr}}{\sqrt{D_h}}, \qquad
# \texttt{relative\_key\_query}:\quad S_{lr} = \frac{q_l \cdot k_r + q_l \cdot e_{lr} + k_r \cdot e_{lr}}{\sqrt{D_h}}$$
#
# The mask is added after the scaling, as before. Three facts from the reference that are easy to miss:
#
# * the input still gets **absolute** position embeddings: `position_embedding_type` only changes attention;
# * **cross-attention** is always absolute: it has no distance table (`blocks.attention_block_forward`);
# * with a KV cache, a new query at step $t$ has position $l = t$ = the number of cached keys
#   (`stack.bert_forward`: `query_positions = past_len + arange(T)`).
#
# **Code path** (`minibertgen/attention.py`): `relative_position_embeddings` (the table lookup),
# `relative_scores`, `position_scores_forward` (the one place that branches on the type), `attention_forward(..., position_embedding_type, query_positions, max_positions)`;
# backward: `relative_scores_backward`.
#
# **Check:** tiny random bert2bert models of both types against transformers (float64); without it,
# the committed dumps. And a look at a defect in the reference itself.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minibertgen as mbg
from minibertgen.attention import attention_forward, relative_position_embeddings, relative_scores, split_heads
from minibertgen.ops import linear_forward

# %% [markdown]
# ## The distance table
#
# For $T$ queries and keys the lookup index is a $T \times T$ matrix, constant along each diagonal
# (a *Toeplitz* matrix): every pair at the same distance shares one row of $E$.
#
# **Predict, then run:** the cell ends by comparing $e_{lr}$ for $(l, r) = (3, 1)$ and $(6, 4)$.
# Equal or not? And which row of $E$ does the top-right corner $(l, r) = (0, 7)$ read, with $P = 16$?

# %%
T, P, Dh = 8, 16, 4
rng = np.random.default_rng(0)
table = rng.normal(size=(2 * P - 1, Dh))  # the distance_embedding weight
pos_emb, _ = relative_position_embeddings(table, np.arange(T), T, P)  # (Tq, Tk, Dh)
distance = np.arange(T)[:, None] - np.arange(T)[None, :]

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
im = axes[0].imshow(distance, cmap="RdBu_r", vmin=-(T - 1), vmax=T - 1)
fig.colorbar(im, ax=axes[0], label="l - r")
for (i, j), d in np.ndenumerate(distance):
    axes[0].text(j, i, str(d), ha="center", va="center", fontsize=8)
axes[0].set(title="signed distance l - r", xlabel="key r", ylabel="query l")
im = axes[1].imshow(pos_emb[:, :, 0], cmap="viridis")
fig.colorbar(im, ax=axes[1], label="value of feature 0")
axes[1].set(title="feature 0 of e_lr = E[l - r + P - 1]", xlabel="key r", ylabel="query l")
fig.tight_layout()
plt.show()
print("pos_emb", pos_emb.shape, "| same row on every diagonal:", np.allclose(pos_emb[3, 1], pos_emb[6, 4]))
print("(l, r) = (0, 7) reads row", distance[0, 7] + P - 1, "of the", 2 * P - 1, "rows of E")

# %% [markdown]
# ## What the relative terms add to the scores
#
# Take a small random layer and feed it one token repeated $T$ times. Absolute positions aside, every
# position then has the same $q$ and $k$, so the **content** term $q_l \cdot k_r$ is flat; the
# relative terms depend only on $l - r$ and show up as diagonal stripes.

# %%
D, H = 8, 2
layer = {n: {"weight": rng.normal(size=(D, D)), "bias": rng.normal(size=D)} for n in ("query", "key", "value")}
layer["distance_embedding"] = {"weight": rng.normal(size=(2 * P - 1, D // H))}
x = np.repeat(rng.normal(size=(1, 1, D)), T, axis=1)  # the same vector at every position: (1, T, D)
q = split_heads(linear_forward(x, layer["query"])[0], H)
k = split_heads(linear_forward(x, layer["key"])[0], H)
pos_emb, _ = relative_position_embeddings(layer["distance_embedding"]["weight"], np.arange(T), T, P)
content = q @ k.transpose(0, 1, 3, 2)
rel_k = relative_scores(q, k, pos_emb, "relative_key")
rel_kq = relative_scores(q, k, pos_emb, "relative_key_query")

fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
for ax, term, title in [(axes[0], content, "content: q_l . k_r"), (axes[1], rel_k, "relative_key adds q_l . e_lr"),
                        (axes[2], rel_kq - rel_k, "relative_key_query also adds k_r . e_lr")]:
    im = ax.imshow(term[0, 0], cmap="RdBu_r", vmin=-10, vmax=10)
    ax.set(title=title, xlabel="key r", ylabel="query l")
    fig.colorbar(im, ax=ax, shrink=0.8)
fig.tight_layout()
plt.show()
print(f"content term: every entry is {content[0, 0, 0, 0]:.2f} (flat)")

# %% [markdown]
# ## A "previous token" head from one vector
#
# Relative positions make some patterns cheap to learn. Set the query and key weights to zero, so
# every query is its bias $u$ and the content term is constant. Then put $E[1 + P - 1] = 15u/\|u\|^2$,
# the row for distance $+1$: the score of key $l - 1$ rises by $15/\sqrt{D_h}$ for every query $l$,
# at every position, in a sequence of any length.
#
# **Predict, then run:** at $T = 12$, where does query 7 put most of its weight? And query 0, which
# has no token before it? (There is no causal mask here: every query sees every key.)

# %%
def previous_token_head(T):
    D, H = 8, 1
    u = np.random.default_rng(1).normal(size=D)
    p = {"query": {"weight": np.zeros((D, D)), "bias": u},
         "key": {"weight": np.zeros((D, D)), "bias": np.zeros(D)},
         "value": {"weight": np.eye(D), "bias": np.zeros(D)},
         "distance_embedding": {"weight": np.zeros((2 * P - 1, D))}}
    p["distance_embedding"]["weight"][1 + P - 1] = 15 * u / (u @ u)  # distance l - r = +1
    x = np.random.default_rng(2).normal(size=(1, T, D))
    _, cache = attention_forward(x, p, None, H, position_embedding_type="relative_key",
                                 query_positions=np.arange(T), max_positions=P)
    return cache["probs"][0, 0]

fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for ax, n in zip(axes, (6, 12)):
    im = ax.imshow(previous_token_head(n), cmap="Blues", vmin=0, vmax=1)
    ax.set(title=f"attention probabilities, T = {n}", xlabel="key r", ylabel="query l")
    fig.colorbar(im, ax=ax, shrink=0.8, label="probability")
fig.tight_layout()
plt.show()
probs12 = previous_token_head(12)
print(f"T = 12: query 7 puts {probs12[7, 6]:.3f} on key 6; query 0 puts at most {probs12[0].max():.3f} on any of its "
      f"12 keys (1/12 = {1 / 12:.3f})")

# %% [markdown]
# Every query puts most of its weight on the token before it (query 0 has no predecessor and spreads
# evenly). With absolute positions a head would need a separate pattern per position pair.
#
# ## Check against the reference
#
# Tiny random bert2bert models of both relative types, copied into transformers 4.57.6 with
# `minibertgen.reference.hf_model` and run in float64. The encoder, the causal decoder (with its own
# distance tables) and the loss must agree to rounding. Without transformers: the committed dumps.

# %%
import warnings

from minibertgen import reference
from minibertgen.testing import assert_close

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when transformers loads
ORACLE = reference.oracle_available()
ids = rng.integers(3, 40, size=(2, 9))
mask = np.ones((2, 9))
mask[1, 6:] = 0
labels = rng.integers(3, 40, size=(2, 7))
models = {}
for pos in ("relative_key", "relative_key_query"):
    part = mbg.BertGenerationConfig(vocab_size=40, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                                    intermediate_size=32, max_position_embeddings=P, position_embedding_type=pos,
                                    initializer_range=0.3)
    config = mbg.EncoderDecoderConfig(part, part, decoder_start_token_id=2, pad_token_id=0)
    models[pos] = model = mbg.EncoderDecoderModel(config, seed=0, dtype="float64")
    ours = model(ids, mask, labels=labels)
    if ORACLE:
        theirs = reference.run_encoder_decoder(reference.hf_model(config, mbg.flatten(model.params)), ids, mask,
                                               labels=labels)
        # float64 on both sides: they differ by summation order only (~1e-15); mistakes are >= 1e-4
        e1 = assert_close(ours.logits, theirs["logits"], atol=1e-9, name=f"{pos} logits")
        e2 = assert_close(ours.loss, theirs["loss"], atol=1e-9, name=f"{pos} loss")
        print(f"{pos:18s} logits max abs error {e1:.1e}, loss error {e2:.1e}")
if not ORACLE:
    from pathlib import Path

    from minibertgen.verify import run_case

    dumps = Path(mbg.__file__).resolve().parents[1] / "tests" / "fixtures" / "reference"
    for case in ("encoder_relative_key", "bert2bert_relative_key_tied", "bert2bert_relative_key_query_untied"):
        _, ours_dump, io = run_case(dumps / case, "float64")
        for name, value in ours_dump.items():
            assert_close(value, io[name], atol=1e-9, name=f"{case}: {name}")  # float64 rounding; mistakes >= 1e-4
        print(f"transformers is not installed: {case} equals its committed dump ({len(ours_dump)} tensors)")

# %% [markdown]
# ## A defect in the reference
#
# The check above runs transformers with `use_cache=False`. In 4.57.6, when a relative-position
# decoder runs with a cache object present (the default inside `EncoderDecoderModel(labels=...)`
# during training), its attention uses the **last** key position as the position of *every* query
# row, so $l - r$ is wrong for all rows but the last. minibertgen implements the correct maths (each
# query at its own position) and is compared with the reference setting that is correct
# (`use_cache=False`, and step-by-step generation, where each step has one query). See DESIGN.md §1.

# %%
if ORACLE:
    torch, _ = reference.load_oracle()
    model = models["relative_key_query"]
    hf = reference.hf_model(model.config, mbg.flatten(model.params))
    dec_ids = labels[:, :6]
    ours = model(ids, mask, decoder_input_ids=dec_ids).logits
    with torch.no_grad():
        kw = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), decoder_input_ids=torch.tensor(dec_ids))
        no_cache = hf(**kw, use_cache=False).logits.numpy()
        with_cache = hf(**kw, use_cache=True).logits.numpy()
    print("ours vs transformers use_cache=False:", np.abs(ours - no_cache).max())
    gap = np.abs(ours - with_cache).max(axis=-1)  # (B, T)
    plt.figure(figsize=(6, 3))
    plt.bar(np.arange(gap.shape[1]), gap[0])
    plt.xlabel("decoder position")
    plt.ylabel("max |ours - transformers|")
    plt.title("transformers with use_cache=True (relative_key_query)")
    plt.show()
else:
    print("transformers is not installed: skipping the demonstration of its use_cache defect")

# %% [markdown]
# Position 0 is right by luck (its only visible key is itself, so its attention is 1 whatever the
# scores); every later position is off. Our decoder's positions come from `past_len + arange(T)`,
# which is right with or without a cache: notebook 06 checks that decoding token by token with the
# cache gives exactly the full forward's numbers.

# %% [markdown]
# ## Exercise: the distance index, with a KV cache
#
# Write `my_relative_distance_index(query_len, key_len, max_positions)`: the $(T_q, T_k)$ table of
# integers, the row of $E$ that query $i$ and key $j$ read. The queries are the **last** `query_len`
# of the `key_len` positions: the first $T_k - T_q$ keys come from the KV cache, so query $i$ sits at
# position $l = (T_k - T_q) + i$, and key $j$ at position $r = j$:
#
# $$\text{index}_{ij} = (l - r) + P - 1.$$
#
# A full sequence has $T_q = T_k$; one generation step has $T_q = 1$. The checker compares with the
# lookup inside `attention.relative_position_embeddings`, in both cases and in between.

# %%
from minibertgen.exercises import check_relative_distances


def my_relative_distance_index(query_len, key_len, max_positions):
    raise NotImplementedError("your code here")


try:
    check_relative_distances(my_relative_distance_index)
except NotImplementedError:
    print("Not written yet: fill in my_relative_distance_index above, then run this cell again.")

# %% [markdown]
# The solution, `minibertgen.exercises.relative_distance_index`, reads the index out of `relative_position_embeddings` itself, looked up in a table whose row $r$ holds the number $r$:

# %%
from minibertgen.exercises import relative_distance_index  # the solution

check_relative_distances(relative_distance_index)

# %% [markdown]
# ## Summary
#
# * `relative_key` adds $q_l \cdot e_{lr}$ to the score of query $l$ and key $r$, `relative_key_query`
#   also $k_r \cdot e_{lr}$, with $e_{lr} = E[l - r + P - 1]$ from a learned table of $2P - 1$ rows per layer.
# * The index table is constant along each diagonal: every pair at the same distance reads the same row.
# * Such terms make position patterns cheap: one vector gives a previous-token head at any length.
# * The input still gets absolute position embeddings, cross-attention stays absolute, and with a
#   KV cache query $i$ sits at position $\text{past} + i$.
# * minibertgen equals transformers with `use_cache=False`; with a cache object present, transformers
#   4.57.6 gives every query row the last key's position, a defect minibertgen does not copy.
