# Text twin of notebooks/05_full_layer.ipynb (cells only; outputs in the notebook). Written by scripts/notebook_text.py.

# %% [markdown]
# # 05 · The full layer: feed-forward, GELU, dropout and post-LN
#
# **You will learn:** how one BERT layer is assembled from attention, two dense layers, GELU, dropout,
# residual adds and LayerNorms (BERT's *post-LN* order); why BERT's GELU is the exact erf one and how far
# the tanh approximation is from it; what inverted dropout does in training and in eval; how post-LN
# differs from pre-LN; and how the layers wire up into a whole bert2bert.
#
# **Prerequisites:** notebooks 03 and 04 (self-attention, masks, positions).
#
# **Time:** about 30 minutes.
#
# Notebook 03 stopped at the attention's output step. A whole layer has two **sub-blocks**, each
# wrapped the same way: a transformation $f$, dropout, the **residual** add of the sub-block's own
# input, then LayerNorm:
#
# $$a = \operatorname{LN}_1\big(\operatorname{drop}(W_O\,\operatorname{Attention}(x) + b_O) + x\big) \qquad (B, T, D) \to (B, T, D)$$
#
# $$\text{out} = \operatorname{LN}_2\big(\operatorname{drop}(W_2\,\operatorname{GELU}(W_1 a + b_1) + b_2) + a\big) \qquad (B, T, D) \to (B, T, F) \to (B, T, D)$$
#
# with $\operatorname{LN}(z) = \frac{z - \mu}{\sqrt{\sigma^2 + \varepsilon}} \odot \gamma + \beta$ over the last axis
# (biased variance, $\varepsilon = 10^{-12}$ inside the square root), and the *feed-forward* width $F$
# usually $4D$. A decoder layer (notebook 06) inserts a third sub-block, cross-attention, between
# the two, wrapped the same way.
#
# **Code path** (`minibertgen/blocks.py`): `layer_forward` calls `attention_block_forward` (attention
# plus its output step) and `feed_forward_forward`; both end in `residual_output_forward` (dense,
# dropout, add, LayerNorm). The primitives are in `minibertgen/ops.py`: `linear_forward`,
# `activation_forward` (GELU), `dropout_forward`, `layernorm_forward`.
#
# **Check:** one layer, and each of its sub-blocks, against transformers 4.57.6's `BertGenerationLayer`
# holding the same weights (float64); GELU against `torch.nn.functional.gelu`.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minibertgen as mbg
from minibertgen.attention import padding_mask
from minibertgen.blocks import attention_block_forward, feed_forward_forward, layer_forward
from minibertgen.ops import activation_forward, dropout_forward, layernorm_forward

# A tiny random encoder is enough: every step of the layer is the same at MiniLM's size.
cfg = mbg.BertGenerationConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                               intermediate_size=128, max_position_embeddings=16)
enc = mbg.BertGenerationEncoder(cfg, seed=0, dtype="float64")
rng = np.random.default_rng(0)
# Move every weight off its init (LayerNorm 1 and 0, dense N(0, 0.02)), so no part of the check is trivial.
enc.params = mbg.unflatten({k: v + rng.normal(0.0, 0.2, v.shape) for k, v in mbg.flatten(enc.params).items()})
p = enc.params["encoder"]["layer"][0]  # {"attention": {"self", "output"}, "intermediate", "output"}

x = rng.normal(0.0, 1.0, (2, 6, cfg.hidden_size))  # (B, T, D) hidden states entering the layer
keep = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=np.float64)  # row 1 ends in 2 pads
mask_add = padding_mask(keep, x.dtype)  # (B, 1, 1, T)
print(f"D = {cfg.hidden_size}, H = {cfg.num_attention_heads}, F = {cfg.intermediate_size}, "
      f"act = {cfg.hidden_act!r}, eps = {cfg.layer_norm_eps}")
for name, w in mbg.flatten(p).items():
    print(f"  {name:34s} {str(w.shape):10s}")

# %% [markdown]
# ## One layer, sub-block by sub-block
#
# The parameter names are the checkpoint's: `attention.output` holds $W_O$ and $\operatorname{LN}_1$,
# `intermediate.dense` is $W_1$ $(F, D)$, `output` holds $W_2$ $(D, F)$ and $\operatorname{LN}_2$.
# `layer_forward` is the two sub-blocks in a row (in eval mode, `train=False`, dropout is the identity):

# %%
a, _ = attention_block_forward(x, p["attention"], mask_add, cfg)  # (B, T, D) -> (B, T, D)
out, ffn_cache = feed_forward_forward(a, p["intermediate"], p["output"], cfg)  # (B, T, D) -> (B, T, F) -> (B, T, D)
hidden = ffn_cache["activation"][0]  # W1 a + b1, GELU's input
print("x", x.shape, "-> a", a.shape, "-> W1 a + b1", hidden.shape, "-> out", out.shape)

whole, present, cache = layer_forward(x, p, cfg, mask_add)
assert np.array_equal(whole, out)
print("layer_forward = feed_forward_forward(attention_block_forward(x)): exactly equal")

# Post-LN: the layer's output IS a LayerNorm's output. Undo LN2's affine part and every token has
# mean 0 and variance 1 (up to eps), whatever x was.
ln2 = p["output"]["LayerNorm"]
standardized = (out - ln2["bias"]) / ln2["weight"]
print(f"after undoing LN2's affine: max |mean| {np.abs(standardized.mean(-1)).max():.1e}, "
      f"variances in [{standardized.var(-1).min():.6f}, {standardized.var(-1).max():.6f}]")

# %% [markdown]
# The residual add is what lets a deep stack train: each sub-block only has to learn a *change* to
# its input, and the gradient has a path around every $f$. The LayerNorm after the add (post-LN)
# keeps every token's vector at a fixed scale.
#
# ## GELU: the exact one and the tanh approximation
#
# BERT's activation, `hidden_act="gelu"`, is the Gaussian Error Linear Unit: $x$ times the
# probability $\Phi(x)$ that a standard normal is below $x$,
#
# $$\operatorname{GELU}(x) = x\,\Phi(x) = \tfrac12 x\big(1 + \operatorname{erf}(x/\sqrt2)\big).$$
#
# GPT-2 (and `hidden_act="gelu_new"`) use a cheaper approximation,
# $\tfrac12 x\big(1 + \tanh(\sqrt{2/\pi}\,(x + 0.044715\,x^3))\big)$. A BERT checkpoint was trained with
# the exact one, so that is what must be computed. GELU is smooth, and unlike ReLU it is slightly
# negative for negative inputs.
#
# **Predict, then run:** is $\operatorname{GELU}$ ever below $-0.2$? And how large is the largest gap
# between the exact and the tanh formula on $[-6, 6]$: about $10^{-2}$, $10^{-4}$ or $10^{-8}$? The next cell prints both.

# %%
grid = np.linspace(-6.0, 6.0, 2401)
exact, _ = activation_forward(grid, "gelu")  # 0.5 x (1 + erf(x / sqrt 2))
approx, _ = activation_forward(grid, "gelu_new")  # the tanh approximation
gap = approx - exact
print(f"min GELU(x) = {exact.min():.4f} at x = {grid[exact.argmin()]:.2f}")
print(f"max |tanh - exact| = {np.abs(gap).max():.1e} at x = {grid[np.abs(gap).argmax()]:+.2f}")

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
left.plot(grid, exact, label="exact GELU (erf): BERT's 'gelu'", lw=2)
left.plot(grid, approx, "--", label="tanh approximation: 'gelu_new'", lw=1.5)
left.plot(grid, np.maximum(grid, 0), ":", color="grey", label="ReLU, for comparison")
left.set(xlim=(-4, 4), ylim=(-0.5, 4), xlabel="x", ylabel="activation", title="GELU and its tanh approximation")
left.legend(fontsize=9)
right.plot(grid, gap, color="tab:red")
right.axhline(0, color="grey", lw=0.5)
right.set(xlabel="x", ylabel="tanh approximation - exact", title="their difference")
right.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
fig.tight_layout()
plt.show()

# %% [markdown]
# The two curves are indistinguishable by eye, but the tanh formula is off by up to $4.7 \cdot 10^{-4}$
# (near $x = \pm 2.7$, the right panel) while float64 rounding is $\sim 10^{-16}$: a model with the wrong GELU drifts
# from the reference at the fourth decimal, layer after layer. The exercise checker below catches it.
#
# ## Dropout: inverted scaling, train vs eval
#
# During training, dropout zeroes each entry independently with probability $p$
# (`hidden_dropout_prob`, 0.1 in BERT) and scales the survivors by $1/(1-p)$:
#
# $$\operatorname{drop}(z)_i = \frac{m_i}{1-p}\, z_i, \qquad m_i \sim \operatorname{Bernoulli}(1-p), \qquad
# \mathbb{E}[\operatorname{drop}(z)_i] = \frac{1-p}{1-p}\, z_i = z_i .$$
#
# Because the expected value is already $z$, eval (`train=False`) needs no rescaling: dropout is
# simply the identity. (The original 2014 dropout scaled at test time instead; "inverted" moves the
# scale into training.) In a BERT encoder layer it sits in three places: on the attention probabilities
# (`attention_probs_dropout_prob`) and after each sub-block's output dense (`hidden_dropout_prob`); a
# decoder layer adds two more for its cross-attention, and the embeddings have one of their own.
#
# **Predict, then run:** dropout with $p = 0.1$ on a $1000 \times 1000$ array of ones, in training.
# What fraction of the entries is zero, what value do the others hold, and what is the mean? And in eval?

# %%
ones = np.ones((1000, 1000))
dropped, _ = dropout_forward(ones, 0.1, np.random.default_rng(1), train=True)
print(f"train: zero fraction {np.mean(dropped == 0):.4f}, survivors hold {np.unique(dropped[dropped != 0])}, "
      f"mean {dropped.mean():.4f}")
evaluated, _ = dropout_forward(ones, 0.1, np.random.default_rng(1), train=False)
print("eval: the identity (the same array back):", evaluated is ones)

# The expected value, empirically: average n independent draws of dropout(z) for one fixed z.
z = np.random.default_rng(2).normal(size=2000)  # (2000,)
draw = np.random.default_rng(3)
draws = np.stack([dropout_forward(z, 0.1, draw, train=True)[0] for _ in range(2000)])  # (2000 draws, 2000)
counts = np.unique(np.logspace(0, np.log10(len(draws)), 30).astype(int))
errors = [np.abs(draws[:n].mean(axis=0) - z).mean() for n in counts]  # mean over the entries of |avg - z|
unscaled = [np.abs((draws[:n] * 0.9).mean(axis=0) - z).mean() for n in counts]  # what no 1/(1-p) would give
print(f"mean |average of {counts[-1]} draws - z| = {errors[-1]:.4f} (inverted), {unscaled[-1]:.4f} (unscaled)")

fig, ax = plt.subplots(figsize=(6.5, 4))
ax.loglog(counts, errors, "o-", label="inverted dropout: z m / (1 - p)")
ax.loglog(counts, unscaled, "s-", label="unscaled: z m")
ax.loglog(counts, errors[0] / np.sqrt(counts), ":", color="grey", label=r"$\propto 1/\sqrt{n}$")
ax.set(xlabel="number of dropout draws averaged, n", ylabel="mean |average - z|",
       title="dropout keeps the expected value only when scaled")
ax.legend(fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# The zero fraction is 0.1000 (close to $p$), every survivor holds $1/0.9 = 1.1111$, and the mean of
# the array is 1.0000. Averaged over more and more draws, inverted dropout converges to $z$ as
# $1/\sqrt{n}$ (a mean error of 0.0048 after 2000 draws); without the scale the average converges to
# $0.9\,z$ and the error stops falling, at 0.0794.
#
# In the layer, `train=True` with an `rng` draws fresh masks in each dropout; with `train=False`
# (the default) the layer is deterministic:

# %%
trained_once, _, _ = layer_forward(x, p, cfg, mask_add, rng=np.random.default_rng(4), train=True)
trained_twice, _, _ = layer_forward(x, p, cfg, mask_add, rng=np.random.default_rng(5), train=True)
eval_out, _, _ = layer_forward(x, p, cfg, mask_add)
print(f"the config's dropout rates (BERT's): hidden {cfg.hidden_dropout_prob}, attention probabilities {cfg.attention_probs_dropout_prob}")
print(f"two training passes differ by up to {np.abs(trained_once - trained_twice).max():.2f}; "
      f"eval equals the dropout-free layer: {np.array_equal(eval_out, whole)}")

# %% [markdown]
# ## Post-LN (BERT) and pre-LN
#
# BERT, like the original Transformer, puts the LayerNorm **after** the residual add:
# $h_{l+1} = \operatorname{LN}(h_l + f(h_l))$. GPT-2 and most later models use **pre-LN**,
# $h_{l+1} = h_l + f(\operatorname{LN}(h_l))$, with one final LayerNorm on top. The difference is where
# the "highway" of the residual stream runs:
#
# * **post-LN**: every layer renormalizes the stream, so its scale is fixed at every depth; but the
#   gradient to early layers passes through every LayerNorm, and deep post-LN models need a learning
#   rate warmup to train stably (Xiong et al., 2020, *On Layer Normalization in the Transformer Architecture*);
# * **pre-LN**: the stream $h_l$ is never normalized, each layer *adds* to it, so its scale grows with
#   depth, while the gradient has a clean identity path from the loss to every layer.
#
# A pre-trained BERT checkpoint only works with the wiring it was trained with: the two orders give
# entirely different numbers from the same weights.
#
# **Predict, then run:** stack 24 residual sub-blocks with random weights, each adding a branch
# of about the same size as its input. How does the root-mean-square of the stream $h_l$ grow with depth
# in each wiring: stays at 1, grows like $\sqrt{l}$, or grows like $2^l$?

# %%
D, depth = 64, 24
demo = np.random.default_rng(6)
unit_ln = {"weight": np.ones(D), "bias": np.zeros(D)}  # a LayerNorm without affine part
branches = [demo.normal(0.0, 1.0 / np.sqrt(D), (D, D)) for _ in range(depth)]  # f(h) = h W^T: as large as h


def rms(h):
    return float(np.sqrt((h**2).mean()))


post = pre = demo.normal(size=(8, D))  # 8 tokens
post_rms, pre_rms = [rms(post)], [rms(pre)]
for W in branches:
    post = layernorm_forward(post + post @ W.T, unit_ln, 1e-12)[0]  # post-LN: LN(h + f(h))
    pre = pre + layernorm_forward(pre, unit_ln, 1e-12)[0] @ W.T  # pre-LN: h + f(LN(h))
    post_rms.append(rms(post))
    pre_rms.append(rms(pre))
print(f"RMS of the stream after {depth} layers: post-LN {post_rms[-1]:.2f}, pre-LN {pre_rms[-1]:.2f} "
      f"(sqrt({depth + 1}) = {np.sqrt(depth + 1):.2f})")

fig, ax = plt.subplots(figsize=(6.5, 4))
ax.plot(post_rms, "o-", label="post-LN (BERT): LN(h + f(h))")
ax.plot(pre_rms, "s-", label="pre-LN: h + f(LN(h))")
ax.plot(np.sqrt(np.arange(depth + 1) + 1), ":", color="grey", label=r"$\sqrt{l + 1}$")
ax.set(xlabel="layer l", ylabel="RMS of the residual stream $h_l$", title="activation scale through depth")
ax.legend(fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# Post-LN's stream stays at RMS 1 at every depth (LayerNorm's output, by construction); pre-LN's grows
# roughly like $\sqrt{l}$, to 5.04 after 24 layers: each layer adds a roughly independent branch of the same size, and the
# variances add. That is why a pre-LN model needs its final LayerNorm, and why later layers' updates
# count for relatively less in it.
#
# ## The whole bert2bert
#
# Notebooks 02 to 07 build these boxes one by one; the layer of this notebook is each dashed frame. The encoder reads the source once; its output, the **memory**, feeds the cross-attention of
# *every* decoder layer. Each attention gets its own mask: padding in the encoder, causal plus padding
# in the decoder's self-attention, the source's padding in the cross-attention.

# %%
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

fig, ax = plt.subplots(figsize=(13, 11))
ax.set(xlim=(0, 13), ylim=(0, 15.6))
ax.axis("off")
COLOURS = {"emb": "#fde9c9", "attn": "#cfe2f3", "cross": "#d9d2e9", "ffn": "#d9ead3", "ln": "#eeeeee", "head": "#f4cccc"}


def box(x, y, text, kind, w=3.6, h=0.75, size=10):
    """A rounded box centred at (x, y); returns its (bottom, top) y for the arrows."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04,rounding_size=0.12",
                                fc=COLOURS[kind], ec="black", lw=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=size)
    return y - h / 2, y + h / 2


def arrow(start, end, style="arc3", colour="black", lw=1.3, ls="-"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=13, connectionstyle=style,
                                 color=colour, lw=lw, linestyle=ls, shrinkA=0, shrinkB=0))


def up(x, y0, y1):
    arrow((x, y0), (x, y1))


def residual(x, y_from, y_to, side=-1):
    """The skip path: from below a sub-block, around it, into its Add & LayerNorm."""
    x_out = x + side * 2.05
    ax.plot([x, x_out, x_out], [y_from, y_from, y_to], color="#555555", lw=1.1)
    arrow((x_out, y_to), (x + side * 1.8, y_to), colour="#555555", lw=1.1)


def frame(x, y0, y1, label):
    ax.add_patch(FancyBboxPatch((x - 2.35, y0), 4.7, y1 - y0, boxstyle="round,pad=0.05,rounding_size=0.2",
                                fc="none", ec="#888888", lw=1.2, ls="--"))
    ax.text(x + 2.25, y1 - 0.22, label, ha="right", va="top", fontsize=10, color="#555555", style="italic")


# ------------------------------------------------------------ encoder (left column)
E = 3.0
ax.text(E, 0.35, "input_ids, attention_mask  (B, S)", ha="center", fontsize=10)
b, t = box(E, 1.35, "Embeddings\nword + position → LayerNorm → dropout", "emb", h=0.9)
up(E, 0.7, b)
frame(E, 2.2, 8.55, "encoder layer × N")
y_in = 2.55
b1, t1 = box(E, 3.3, "Self-attention\n(padding mask (B, 1, 1, S))", "attn", h=0.85)
up(E, t, b1)
b2, t2 = box(E, 4.45, "dense → dropout → add → LayerNorm", "ln", h=0.55, size=9)
up(E, t1, b2)
residual(E, y_in, 4.45)
b3, t3 = box(E, 5.9, "Feed-forward\nW₂ · GELU(W₁ h + b₁) + b₂   (D → F → D)", "ffn", h=0.85)
up(E, t2, b3)
b4, t4 = box(E, 7.2, "dropout → add → LayerNorm", "ln", h=0.55, size=9)
up(E, t3, b4)
residual(E, 5.05, 7.2)
b5, t5 = box(E, 9.45, "encoder output: the memory\n(B, S, D)", "emb", h=0.8)
up(E, t4, b5)

ax.text(E - 2.2, 3.9, "residual", rotation=90, ha="center", va="center", fontsize=9, color="#555555")
ax.text(E - 2.2, 6.1, "residual", rotation=90, ha="center", va="center", fontsize=9, color="#555555")

# ------------------------------------------------------------ decoder (right column)
Dx = 9.6
ax.text(Dx, 0.35, "decoder_input_ids (labels shifted right), decoder_attention_mask  (B, T)", ha="center", fontsize=10)
b, t = box(Dx, 1.35, "Embeddings\nword + position → LayerNorm → dropout", "emb", h=0.9)
up(Dx, 0.7, b)
frame(Dx, 2.2, 11.6, "decoder layer × N")
c1b, c1t = box(Dx, 3.3, "Causal self-attention\n(causal + padding mask (B, 1, T, T))", "attn", h=0.85)
up(Dx, t, c1b)
c2b, c2t = box(Dx, 4.45, "dense → dropout → add → LayerNorm", "ln", h=0.55, size=9)
up(Dx, c1t, c2b)
residual(Dx, 2.55, 4.45, side=1)
c3b, c3t = box(Dx, 6.0, "Cross-attention: Q from the decoder,\nK, V from the memory\n(source padding mask (B, 1, 1, S))",
               "cross", h=1.1)
up(Dx, c2t, c3b)
c4b, c4t = box(Dx, 7.3, "dense → dropout → add → LayerNorm", "ln", h=0.55, size=9)
up(Dx, c3t, c4b)
residual(Dx, 5.05, 7.3, side=1)
c5b, c5t = box(Dx, 8.85, "Feed-forward\nW₂ · GELU(W₁ h + b₁) + b₂   (D → F → D)", "ffn", h=0.85)
up(Dx, c4t, c5b)
c6b, c6t = box(Dx, 10.2, "dropout → add → LayerNorm", "ln", h=0.55, size=9)
up(Dx, c5t, c6b)
residual(Dx, 7.9, 10.2, side=1)
h1b, h1t = box(Dx, 12.65, "LM head: logits = h Eᵀ + b   (B, T, V)\n(E: the decoder's word embeddings, tied by default)", "head", h=0.9)
up(Dx, c6t, h1b)
h2b, h2t = box(Dx, 14.3, "cross-entropy with labels\n(-100 ignored)  or  next-token choice", "head", h=0.85)
up(Dx, h1t, h2b)

# the memory feeds every decoder layer's cross-attention
arrow((E + 1.8, 9.45), (Dx - 1.8, 6.0), style="arc3,rad=-0.15", colour="#674ea7", lw=2.0)
ax.text(5.0, 9.75, "K, V for the cross-attention\nof every decoder layer", ha="left", va="bottom", fontsize=10, color="#674ea7")
ax.set_title("bert2bert (BertGeneration encoder + decoder): one forward pass, post-LN layers", fontsize=13)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Check against the reference
#
# transformers' `BertGenerationEncoder` with the same weights holds the same layer,
# `encoder.layer[0]` (a `BertGenerationLayer`: `attention`, `intermediate`, `output`). We feed it the
# same hidden states and additive mask, in float64, and compare the whole layer and each sub-block.
# Without transformers the committed encoder dump (written by transformers 4.57.6) is checked instead.

# %%
import warnings

from minibertgen import reference
from minibertgen.testing import assert_close

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when transformers loads
if reference.oracle_available():
    torch, _ = reference.load_oracle()
    hf = reference.hf_model(cfg, mbg.flatten(enc.params))  # float64, eval mode
    hf_layer = hf.encoder.layer[0]
    with torch.no_grad():
        tx, tmask = torch.tensor(x), torch.tensor(mask_add)
        hf_out = hf_layer(tx, attention_mask=tmask)[0].numpy()
        hf_a = hf_layer.attention(tx, attention_mask=tmask)[0]
        hf_ffn = hf_layer.output(hf_layer.intermediate(hf_a), hf_a).numpy()  # BertOutput(dense(GELU(...)), residual)
        hf_gelu = torch.nn.functional.gelu(torch.tensor(grid)).numpy()  # exact erf GELU
        hf_gelu_tanh = torch.nn.functional.gelu(torch.tensor(grid), approximate="tanh").numpy()
    print("transformers' layer activation:", type(hf_layer.intermediate.intermediate_act_fn).__name__)
    # float64: the two differ only in summation order (~1e-16 per term); a wiring mistake is >= 1e-4
    for what, ours_value, theirs in [("attention sub-block a", a, hf_a.numpy()), ("feed-forward sub-block", out, hf_ffn),
                                     ("whole layer", whole, hf_out), ("GELU (erf) on the grid", exact, hf_gelu),
                                     ("tanh GELU on the grid", approx, hf_gelu_tanh)]:
        err = assert_close(ours_value, theirs, atol=1e-12, name=what)
        print(f"{what:24s} equals transformers', max abs error {err:.1e}")
    wrong = np.abs(approx - hf_gelu).max()
    print(f"(the tanh GELU against torch's exact one: {wrong:.1e}, far outside that tolerance)")
else:
    from pathlib import Path

    from minibertgen.verify import run_case

    dump = Path(mbg.__file__).resolve().parents[1] / "tests" / "fixtures" / "reference" / "encoder_absolute"
    _, ours_dump, io = run_case(dump, "float64")
    for name, value in ours_dump.items():
        assert_close(value, io[name], atol=1e-9, name=name)  # float64 rounding; mistakes are >= 1e-4
    print(f"transformers is not installed: {len(ours_dump)} hidden states equal the committed dump {dump.name}")

# %% [markdown]
# ## Exercise 1: write the layer
#
# Write `my_layer(x, p, mask_add, num_heads, eps)`: one encoder layer in eval mode (no dropout), from
# these parts of minibertgen, each returning `(output, cache)`:
#
# * `attention_forward(h, p["attention"]["self"], mask_add, num_heads)`: the context, $(B, T, D)$, before $W_O$;
# * `linear_forward(h, {"weight", "bias"})`: $h W^\top + b$;
# * `activation_forward(h, "gelu")`: the exact GELU;
# * `layernorm_forward(h, {"weight", "bias"}, eps)`.
#
# Use the formulas at the top: $W_O$ and $\operatorname{LN}_1$ are in `p["attention"]["output"]`
# (`"dense"`, `"LayerNorm"`), $W_1$ is `p["intermediate"]["dense"]`, $W_2$ and $\operatorname{LN}_2$ are in
# `p["output"]`. `check_layer_forward` grades it on random layers against `blocks.layer_forward` and, if
# it is wrong, says which common mistake it made (pre-LN, a missing residual, the tanh GELU, LayerNorm
# before the add, the sub-blocks swapped).

# %%
from minibertgen.attention import attention_forward
from minibertgen.exercises import check_layer_forward
from minibertgen.ops import linear_forward


def my_layer(x, p, mask_add, num_heads, eps):
    raise NotImplementedError("your code here")


try:
    check_layer_forward(my_layer)
except NotImplementedError:
    print("Not written yet: fill in my_layer above, then run this cell again.")

# %% [markdown]
# ## Exercise 2: write inverted dropout
#
# Write `my_dropout(x, rate, rng, train)`: in training, zero each entry with probability `rate`, using
# `rng.random(x.shape)` (`rng` is a NumPy `Generator`), and divide the others by $1 - \text{rate}$; in eval
# (`train=False`) return `x` unchanged. `check_dropout` checks eval, the zeroed fraction, the scale
# and that the mask comes from `rng`.

# %%
from minibertgen.exercises import check_dropout


def my_dropout(x, rate, rng, train):
    raise NotImplementedError("your code here")


try:
    check_dropout(my_dropout)
except NotImplementedError:
    print("Not written yet: fill in my_dropout above, then run this cell again.")

# %% [markdown]
# The solutions are the package's own functions, in the exercises' signatures: the checkers compare
# against them, so the exercises and the implementation can never drift apart.

# %%
from minibertgen.exercises import inverted_dropout, post_ln_layer

check_layer_forward(post_ln_layer)
check_dropout(inverted_dropout)

# %% [markdown]
# ## Summary
#
# * A BERT layer is two sub-blocks, attention then feed-forward, each $\operatorname{LN}(\operatorname{drop}(f(h)) + h)$:
#   **post-LN**, the LayerNorm after the residual add; the layer's output is always a LayerNorm's output.
# * The feed-forward block goes up to $F = 4D$ and back, $W_2\,\operatorname{GELU}(W_1 a + b_1) + b_2$, with the
#   **exact erf GELU**; the tanh approximation is off by up to $4.7 \cdot 10^{-4}$, visible against the reference.
# * **Inverted dropout** scales the survivors by $1/(1-p)$ in training so the expected value is unchanged,
#   and is the identity in eval.
# * Pre-LN keeps an un-normalized residual stream whose scale grows with depth; post-LN renormalizes at
#   every layer. A checkpoint must be run in the wiring it was trained with.
# * minibertgen's layer and each sub-block equal transformers' `BertGenerationLayer` to float64 rounding;
#   the diagram shows where each layer and each mask sits in bert2bert.
