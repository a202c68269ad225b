# Text twin of notebooks/02_embeddings_positions.ipynb (cells only; outputs in the notebook). Written by scripts/notebook_text.py.

# %% [markdown]
# # 02 · Embeddings and absolute positions
#
# **You will learn:** why attention needs positions, what BERT's learned position table looks like
# (and the structure training gave it), the embedding forward $\operatorname{LN}(E_{\text{word}}[x] + E_{\text{pos}}[t])$
# by hand, where positions continue with a KV cache, and why BertGeneration differs from BertModel by one vector.
#
# **Prerequisites:** notebook 01.
#
# **Time:** about 40 minutes.
#
# Attention (notebook 03) treats its input as a *set*: shuffle the tokens and every output row is
# shuffled the same way, nothing else changes. Word order has to be written into the vectors
# themselves. BERT, and so BertGeneration, adds a learned vector per **position** to the vector of
# each **token**, then normalizes:
#
# $$h^{(0)}_{b,t} = \operatorname{LN}\big(E_{\text{word}}[x_{b,t}] + E_{\text{pos}}[t]\big), \qquad
# \operatorname{LN}(z) = \frac{z - \mu(z)}{\sqrt{\sigma^2(z) + \varepsilon}} \odot \gamma + \beta,$$
#
# with $\mu, \sigma^2$ the mean and *biased* variance over the $D$ features and $\varepsilon = 10^{-12}$
# inside the square root (BERT's numerics). Dropout follows in training. BertGeneration has **no
# token-type (segment) embeddings**: a BERT checkpoint's `token_type_embeddings` are dropped on load.
#
# **Code path:** `minibertgen.stack.embeddings_forward` → `ops.embedding_forward` (a row lookup),
# `ops.layernorm_forward`, `ops.dropout_forward`; loading: `BertGenerationEncoder.from_pretrained`
# → `weights.load_checkpoint` (the `LoadReport`, `fold_token_type`).
#
# **Check:** our embedding output and encoder output against transformers on the same weights, and
# against the original `BertModel` (all-MiniLM-L6-v2); without transformers, against published values.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minibertgen as mbg
from minibertgen.fetch import require_weights
from minibertgen.stack import embeddings_forward
from minibertgen.ops import layernorm_forward

MINILM = require_weights("minilm-l6")  # missing: stops here, saying to run `minibertgen fetch minilm-l6` (~84 MB)
enc = mbg.BertGenerationEncoder.from_pretrained(MINILM)
tok = mbg.BertTokenizer.from_pretrained(MINILM)
print(enc.load_report)
emb = enc.params["embeddings"]
for name in ("word_embeddings", "position_embeddings"):
    print(f"{name:20s} {emb[name]['weight'].shape}")

# %% [markdown]
# The report says what loading did with every tensor of the file: 100 loaded, the token-type
# embeddings and the pooler dropped (BertGeneration has neither), and `position_ids` ignored (a
# buffer, not a weight). Nothing was silently skipped.
#
# ## The position table
#
# $E_{\text{pos}}$ is a $P \times D = 512 \times 384$ matrix learned like any other weight. Nothing
# forces it to have structure, but training gives it some:

# %%
P = emb["position_embeddings"]["weight"].astype(np.float64)  # (P, D)
unit = P / np.linalg.norm(P, axis=1, keepdims=True)
cosine = unit @ unit.T  # (P, P)

fig, axes = plt.subplots(1, 3, figsize=(15, 4))
im = axes[0].imshow(P, aspect="auto", cmap="RdBu_r", vmin=-0.1, vmax=0.1)
axes[0].set(title="E_pos: one row per position", xlabel="feature d", ylabel="position t")
fig.colorbar(im, ax=axes[0])
im = axes[1].imshow(cosine[:96, :96], cmap="viridis")
axes[1].set(title="cosine similarity of positions t, t' (first 96)", xlabel="t'", ylabel="t")
fig.colorbar(im, ax=axes[1])
axes[2].plot(np.linalg.norm(P, axis=1))
axes[2].set(title="length of each row", xlabel="position t", ylabel="||E_pos[t]||")
fig.tight_layout()
plt.show()
lengths = np.linalg.norm(P, axis=1)
print(f"||E_pos[0]|| / median ||E_pos[t]|| (t >= 1) = {lengths[0] / np.median(lengths[1:]):.1f}")
print(f"median row length: t = 1..127 {np.median(lengths[1:128]):.3f}, t = 128..511 {np.median(lengths[128:]):.3f}")

# %% [markdown]
# * Nearby positions have similar vectors (the bright diagonal), and the similarity comes back in
#   stripes: it *oscillates* with the distance $t - t'$.
# * Position 0 is special: its row is about five times longer than the others (4.9 times the median, printed below the plots). In BERT's inputs
#   position 0 always holds `[CLS]`, so the model has learned one vector for "first token".
# * The row lengths step up at $t = 128$: rows beyond the input lengths most used in training look
#   different (presumably they were updated less often).
#
# The oscillation has a clean explanation. Take the two main directions of variation of the table
# (principal components) and follow the positions in that plane:

# %%
centered = P - P.mean(axis=0)
_, _, vt = np.linalg.svd(centered, full_matrices=False)
pcs = centered @ vt[:2].T  # (P, 2)
angle = np.unwrap(np.arctan2(pcs[:, 1], pcs[:, 0]))
step = np.median(np.diff(angle[1:65]))
print(f"from one position to the next the pair rotates by {step:.2f} rad: a period of {2 * np.pi / step:.1f} positions")

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
t = np.arange(1, 41)
axes[0].plot(t, pcs[t, 0], "o-", ms=3, label="PC 1")
axes[0].plot(t, pcs[t, 1], "o-", ms=3, label="PC 2")
axes[0].set(xlabel="position t", title="two waves, a quarter period apart", ylabel="coordinate")
axes[0].legend()
t = np.arange(1, 13)
axes[1].plot(pcs[t, 0], pcs[t, 1], "-", color="lightgray")
sc = axes[1].scatter(pcs[t, 0], pcs[t, 1], c=t, cmap="plasma", zorder=3)
for i in t:
    axes[1].annotate(str(i), pcs[i], textcoords="offset points", xytext=(4, 4))
axes[1].set(title="positions 1-12 walk around a circle", xlabel="PC 1", ylabel="PC 2", aspect="equal")
fig.tight_layout()
plt.show()

# %% [markdown]
# The leading pair behaves like $(\cos \omega t, \sin \omega t)$: MiniLM has *learned* something
# like the sinusoidal position encoding of the original Transformer. Such a pair lets attention read
# relative offsets, since rotating by $\omega k$ is a linear map: $q^\top R(\omega t)^\top R(\omega t') k$
# depends only on $t' - t$. (Notebook 04 builds relative positions in directly instead.)
#
# Averaged over $t$, how does $\cos(E_{\text{pos}}[t], E_{\text{pos}}[t+k])$ depend on the offset $k$?

# %%
offsets = np.arange(1, 65)
mean_cos = [np.mean([cosine[t, t + k] for t in range(1, 257)]) for k in offsets]
plt.figure(figsize=(7, 3))
plt.plot(offsets, mean_cos, "o-", ms=3)
plt.xlabel("offset k")
plt.ylabel("mean cosine similarity")
plt.title("similarity of positions t and t + k (t = 1..256)")
plt.show()

# %% [markdown]
# ## One embedding forward, by hand
#
# `embeddings_forward` does three things: two row lookups, a sum, a LayerNorm. Let's redo them
# with plain NumPy indexing and compare.
#
# **Predict, then run:** will the largest difference between the hand-made embeddings and
# `embeddings_forward` be exactly zero, or only rounding-sized?

# %%
batch = tok(["Hello, my dog is cute.", "Attention needs positions."], padding=True)
ids = np.array(batch["input_ids"])  # (B, T)
B, T = ids.shape
words = emb["word_embeddings"]["weight"][ids]  # (B, T) -> (B, T, D)
where = emb["position_embeddings"]["weight"][np.arange(T)]  # (T,) -> (T, D)
summed = words + where  # (B, T, D) + (T, D): the same position rows for every sequence
by_hand, _ = layernorm_forward(summed, emb["LayerNorm"], enc.config.layer_norm_eps)
ours, _ = embeddings_forward(ids, emb, enc.config)  # (B, T, D), eval mode: no dropout
print("ids", ids.shape, "-> embeddings", ours.shape, "| max |by hand - embeddings_forward| =", np.abs(by_hand - ours).max())
x_hat = (summed - summed.mean(-1, keepdims=True)) / np.sqrt(summed.var(-1, keepdims=True) + 1e-12)
print("before the affine step every token vector has mean", float(np.abs(x_hat.mean(-1)).max().round(6)),
      "and variance", float(x_hat.var(-1).mean().round(6)))

# %% [markdown]
# The same word at two positions gets two different vectors, which is the whole point.
#
# **Predict, then run:** `dog` six times in a row. Will the cosine similarity with its vector at
# position 0 fall steadily with the distance, or do something else? (Remember what is special about row 0.)

# %%
ids_rep = np.array([[tok.convert_tokens_to_ids("dog")] * 6])
h0, _ = embeddings_forward(ids_rep, emb, enc.config)
print("'dog' six times; cosine similarity of its embedding at position 0 with positions 0..5:")
u = h0[0] / np.linalg.norm(h0[0], axis=-1, keepdims=True)
print(np.round(u @ u[0], 3))

# %% [markdown]
# ## Token types: dropped, or folded in
#
# BERT adds a third table, $E_{\text{type}}[s]$, for sentence A / B. BertGeneration has none, so the
# encoder computes a **different function** from the original BertModel: not a rounding difference,
# the check below prints how far apart they are. For single-segment input
# BERT always adds the same row $E_{\text{type}}[0]$, so adding that row into every position row
# reproduces BertModel exactly: `from_pretrained(..., fold_token_type=True)` does this
# (`weights._fold_token_type`).
#
# ## Check against the reference
#
# 1. our embedding output and last hidden state against transformers' `BertGenerationEncoder` built
#    from the same weights (`minibertgen.reference.hf_model`);
# 2. the folded encoder against the original `BertModel` read by transformers from the same folder.

# %%
import warnings

from minibertgen import reference
from minibertgen.testing import assert_close

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when transformers loads
mask = np.array(batch["attention_mask"])
out = enc.forward(ids, mask)
folded = mbg.BertGenerationEncoder.from_pretrained(MINILM, fold_token_type=True)
print(folded.load_report)
folded_out = folded(ids, mask)
if reference.oracle_available():
    torch, transformers = reference.load_oracle()
    # In float64 both implementations agree to rounding (~1e-15 relative); a real mistake is O(0.1).
    enc64 = mbg.BertGenerationEncoder.from_pretrained(MINILM, dtype="float64")
    ours64 = enc64.forward(ids, mask)
    theirs = reference.run_encoder(reference.hf_model(enc64.config, mbg.flatten(enc64.params)), ids, mask)
    print("float64, embedding output, max abs error:", assert_close(ours64.hidden_states[0], theirs["hidden_states"][0], atol=1e-9, name="embeddings"))
    print("float64, last hidden state, max abs error:", assert_close(ours64.last_hidden_state, theirs["last_hidden_state"], atol=1e-9, name="encoder"))
    bert = transformers.BertModel.from_pretrained(str(MINILM), attn_implementation="eager").eval()
    with torch.no_grad():
        bert_out = bert(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
    real = mask.astype(bool)  # compare real tokens (padded positions are never read downstream)
    # float32 on both sides, 6 layers of O(1) activations: rounding ~1e-6
    print("folded encoder vs BertModel, max abs error:", assert_close(folded_out[real], bert_out[real], atol=2e-5, name="BertModel"))
    print("unfolded encoder vs BertModel, max abs difference:", float(np.abs(out.last_hidden_state - bert_out)[real].max()))
    print("  for scale: max |BertModel output| =", float(np.abs(bert_out[real]).max()), "| mean cosine of the two outputs per token: "
          f"{np.mean([a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(out.last_hidden_state[real], bert_out[real])]):.3f}")
    type_row = bert.embeddings.token_type_embeddings.weight[0].detach().numpy()
    print(f"  the missing vector E_type[0]: norm {np.linalg.norm(type_row):.2f}, a median position row "
          f"{np.median(np.linalg.norm(P, axis=1)):.2f}")
else:
    # BertModel's published output for "Hello, my dog is cute." (reference notes §13), 6 decimals
    published = np.array([[0.012146, -0.013922, 0.227506], [-0.331073, 0.434286, 0.712614]])
    print("transformers is not installed; folded encoder vs published BertModel values:", assert_close(folded_out[0, :2, :3], published, atol=2e-6, name="BertModel"))

# %% [markdown]
# The folded encoder equals BertModel to float32 rounding (max error a few $10^{-6}$). The unfolded one is
# far off: a max difference of 6.95 where BertModel's outputs are at most 5.69 in size, and a mean
# cosine of only 0.579 between the two outputs of a token. The cause is one missing vector:
# BertModel adds $E_{\text{type}}[0]$ (norm 0.48, as long as a typical position row) to every input
# vector before the first LayerNorm, and six layers carry that shift all the way to the output. So a
# BERT checkpoint loaded into BertGeneration without folding is a *perturbed* BERT, which fine-tuning
# must first undo; `fold_token_type=True` gives the exact original.

# %% [markdown]
# ## Exercise: embeddings when the positions do not start at 0
#
# In generation (notebook 06) the decoder runs on the newest token only, after `past_length` tokens
# whose keys and values are already in the KV cache. The new tokens sit at positions `past_length`,
# `past_length + 1`, … (`embeddings_forward(..., position_offset=past_length)`):
#
# $$h_{b,t} = \operatorname{LN}\big(E_{\text{word}}[x_{b,t}] + E_{\text{pos}}[\text{past\_length} + t]\big).$$
#
# Write `my_embeddings(input_ids, p, past_length, eps)` with NumPy alone (no `layernorm_forward`):
#
# * `input_ids`: $(B, T)$ ints; `p`: `{"word_embeddings": {"weight": (V, D)}, "position_embeddings":
#   {"weight": (P, D)}, "LayerNorm": {"weight": (D,), "bias": (D,)}}`;
# * return $(B, T, D)$: the sum, then LayerNorm over the last axis with the **biased** variance and
#   `eps` **inside** the square root, then the scale and shift.
#
# The checker uses random tables and past lengths, some cases with a large `eps`, so that where `eps`
# goes shows, and compares with `stack.embeddings_forward`.

# %%
from minibertgen.exercises import check_embeddings


def my_embeddings(input_ids, p, past_length, eps):
    raise NotImplementedError("your code here")


try:
    check_embeddings(my_embeddings)
except NotImplementedError:
    print("Not written yet: fill in my_embeddings above, then run this cell again.")

# %% [markdown]
# The solution, `embeddings_forward` with `position_offset=past_length` (wrapped as `minibertgen.exercises.embeddings_after_past`), passes:

# %%
from minibertgen.exercises import embeddings_after_past  # the solution

check_embeddings(embeddings_after_past)

# %% [markdown]
# ## Summary
#
# * Attention alone ignores word order, so BERT adds a learned position row to each token row and
#   normalizes: $\operatorname{LN}(E_{\text{word}}[x] + E_{\text{pos}}[t])$, biased variance, $\varepsilon$ inside the root.
# * MiniLM's learned position table has structure: nearby positions are alike, the likeness
#   oscillates with the distance (a rotating pair, like the sinusoidal encoding), row 0 stands out,
#   and the row lengths step up where the training inputs stopped.
# * The same token gets a different vector at every position; with a KV cache, positions continue
#   from the cache's length.
# * BertGeneration has no token-type table, so a BERT checkpoint loaded as is computes a different
#   function; `fold_token_type=True` adds $E_{\text{type}}[0]$ to the position rows and gives BertModel back.
# * Our embeddings and encoder equal transformers' to float64 rounding.
