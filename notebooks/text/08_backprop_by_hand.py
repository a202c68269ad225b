# Text twin of notebooks/08_backprop_by_hand.ipynb (cells only; outputs in the notebook). Written by scripts/notebook_text.py.

# %% [markdown]
# # 08 · Backprop by hand
#
# **You will learn:** how a backward pass is derived and checked (finite differences, then torch's
# autograd), LayerNorm's and attention's backwards, and, as exercises, the backward of the masked
# loss and of softmax; then a tiny bert2bert trained with the gradients.
#
# **Prerequisites:** notebooks 03, 05 and 07 (attention, the layer, the loss with -100 labels).
#
# **Time:** about 45 minutes.
#
# minibertgen has no autograd. Every layer is a pair of functions, side by side:
#
# ```python
# out, cache = name_forward(x, ..., p)        # cache: exactly what the backward needs
# dx, ..., dp = name_backward(dout, cache)    # dout = dL/dout  ->  dL/dx, dL/dp
# ```
#
# The backward of a composition is the composition of backwards in reverse order (the chain rule),
# and where one value feeds two places, as in a residual connection, the two gradients add. This
# notebook derives LayerNorm's and attention's backwards and leaves two to you: the loss's (exercise 1)
# and softmax's (exercise 2). Each is checked live against **finite differences**, then a whole model
# is checked against torch's autograd, and trained.
#
# **Code path:** `ops.layernorm_forward/backward`, `ops.softmax_forward/backward`,
# `attention.attention_forward/backward`, `ops.cross_entropy_forward/backward`,
# `EncoderDecoderModel.backward`, `testing.grad_check`; training: `train.AdamW`,
# `train.clip_grad_norm`, `train.linear_schedule`.
#
# **How `grad_check` works.** For a scalar $L(a)$ and a random unit direction $u$,
#
# $$\frac{L(a + \epsilon u) - L(a - \epsilon u)}{2\epsilon} = \nabla L \cdot u + O(\epsilon^2),$$
#
# so the central difference must equal `(grad * u).sum()`. To test a layer with output $y$ we use
# $L = \sum y \odot g$ with a **random** upstream gradient $g$ (with $g = 1$ many mistakes cancel).
# Everything runs in float64.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minibertgen as mbg
from minibertgen import ops
from minibertgen.attention import attention_backward, attention_forward, causal_padding_mask
from minibertgen.testing import grad_check

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. LayerNorm
#
# Per row $x \in \mathbb{R}^D$: $\mu = \frac1D\sum_i x_i$, $\sigma^2 = \frac1D\sum_i (x_i-\mu)^2$,
# $r = (\sigma^2 + \varepsilon)^{-1/2}$, $\hat x = (x - \mu)\,r$, $y = \gamma \odot \hat x + \beta$.
#
# The parameters are easy: $\frac{\partial L}{\partial \beta} = \sum_{\text{rows}} g$ and
# $\frac{\partial L}{\partial \gamma} = \sum_{\text{rows}} g \odot \hat x$, where $g = \partial L/\partial y$.
# For $x$, let $h = g \odot \gamma = \partial L / \partial \hat x$. Using
# $\frac{\partial \mu}{\partial x_j} = \frac1D$ and $\frac{\partial r}{\partial x_j} = -\frac{r^3}{D}(x_j - \mu) = -\frac{r^2}{D}\hat x_j$:
#
# $$\frac{\partial \hat x_i}{\partial x_j} = r\Big(\delta_{ij} - \frac1D\Big) - \frac{r}{D}\,\hat x_i \hat x_j
# \quad\Longrightarrow\quad
# \frac{\partial L}{\partial x_j} = \sum_i h_i \frac{\partial \hat x_i}{\partial x_j}
# = r\Big(h_j - \overline{h} - \hat x_j\,\overline{h \odot \hat x}\Big),$$
#
# with bars for means over the row. This is line for line `ops.layernorm_backward`.

# %%
x = rng.normal(size=(3, 5, 8)) * 2 + 1
p = {"weight": rng.normal(size=8), "bias": rng.normal(size=8)}
g = rng.normal(size=x.shape)  # random upstream gradient
eps = 1e-12

y, cache = ops.layernorm_forward(x, p, eps)
dx, dp = ops.layernorm_backward(g, cache)


def loss(a):  # L = sum(y * g) as a function of every input
    return float((ops.layernorm_forward(a["x"], {"weight": a["weight"], "bias": a["bias"]}, eps)[0] * g).sum())


report = grad_check(loss, {"x": x, **p}, {"x": dx, "weight": dp["weight"], "bias": dp["bias"]})
print("LayerNorm: |finite difference - backward| per input:", {k: f"{v:.1e}" for k, v in report.items()})

# %% [markdown]
# How small should $\epsilon$ be? Too large and the $O(\epsilon^2)$ truncation error dominates; too
# small and the subtraction $L(a + \epsilon u) - L(a - \epsilon u)$ loses digits to rounding,
# an error $\approx 10^{-16}|L|/\epsilon$. Sweeping $\epsilon$ shows both regimes.
#
# **Predict, then run:** as $\epsilon$ shrinks from $10^{-1}$ to $10^{-12}$, does the error keep
# falling? If not, roughly where is it smallest?

# %%
u = rng.normal(size=x.shape)
u /= np.linalg.norm(u)
analytic = float((dx * u).sum())
steps = np.logspace(-12, -1, 45)
errors = [abs((loss({"x": x + h * u, **p}) - loss({"x": x - h * u, **p})) / (2 * h) - analytic) for h in steps]
plt.figure(figsize=(6.5, 3.5))
plt.loglog(steps, errors, "o-", ms=3)
plt.loglog(steps, steps**2 * errors[-1] / steps[-1] ** 2, "--", label="slope 2: truncation")
plt.loglog(steps, 1e-16 * abs(loss({"x": x, **p})) / steps, "--", label="slope -1: rounding")
valley = steps[int(np.argmin(errors))]
default = steps[int(np.argmin(np.abs(np.log10(steps) + 6)))]  # grad_check's default eps = 1e-6 (on the grid)
plt.axvline(valley, color="C2", lw=1, label=f"the valley: epsilon = {valley:.0e}")
plt.axvline(default, color="C3", lw=1, ls=":", label="grad_check's default 1e-6")
plt.ylim(1e-13, 1)
plt.xlabel("finite-difference step epsilon")
plt.ylabel("|central difference - backward|")
plt.legend(fontsize=8)
plt.show()
print(f"the valley: smallest error {min(errors):.1e} at epsilon = {valley:.1e}")
print(f"at grad_check's default epsilon = 1e-6: error {errors[list(steps).index(default)]:.1e}, "
      f"{errors[list(steps).index(default)] / min(errors):.0f} times the valley's")
report = grad_check(loss, {"x": x, **p}, {"x": dx, "weight": dp["weight"], "bias": dp["bias"]}, eps=valley)
print(f"grad_check with eps = {valley:.1e}:", {k: f"{v:.1e}" for k, v in report.items()})

# %% [markdown]
# The error is smallest where the two lines cross: the sweep's valley is at $\epsilon = 10^{-4}$ here,
# with an error of $4.2 \cdot 10^{-12}$. `grad_check`'s default $\epsilon = 10^{-6}$ is *not* in the
# valley: it sits two decades to its left, on the rounding slope, where the error is $2.3 \cdot 10^{-9}$,
# 552 times the valley's. Chosen from the sweep, $\epsilon = 10^{-4}$ brings `grad_check`'s report
# down to a few $10^{-11}$ (printed above). The default stays $10^{-6}$ because the package's tests
# use it on layers whose loss is much larger or more curved, where the valley moves; even on the slope
# its $10^{-9}$ is far below what any real mistake gives ($10^{-3}$ and up).
#
# ## 2. Softmax, then attention
#
# For $p = \operatorname{softmax}(s)$ over the last axis, $\frac{\partial p_i}{\partial s_k} = p_i(\delta_{ik} - p_k)$.
# Contracting this with the upstream gradient $g = \partial L / \partial p$, $\frac{\partial L}{\partial s_k} =
# \sum_i g_i \frac{\partial p_i}{\partial s_k}$, simplifies to one line that never builds the $N \times N$
# Jacobian: `ops.softmax_backward`. Deriving that line is exercise 2. Attention chains it with matrix
# products. With $S = QK^\top/\sqrt{D_h} + M$, $A = \operatorname{softmax}(S)$ and $C = AV$:
#
# $$dV = A^\top dC, \qquad dA = dC\, V^\top, \qquad dS = \operatorname{softmax\_backward}(dA, A), \qquad
# dQ = \frac{dS\, K}{\sqrt{D_h}}, \qquad dK = \frac{dS^\top Q}{\sqrt{D_h}},$$
#
# and then the three projections' backwards. In self-attention $x$ feeds $Q$, $K$ and $V$, so its
# three gradients add (`attention_backward`'s last line). The mask is a constant and gets none.

# %%
B, T, D, H = 2, 5, 8, 2
xa = rng.normal(size=(B, T, D))
pa = {n: {"weight": rng.normal(size=(D, D)) * 0.5, "bias": rng.normal(size=D)} for n in ("query", "key", "value")}
mask_add = causal_padding_mask(np.ones((B, T)), T, np.float64)  # the decoder's causal mask
context, cache = attention_forward(xa, pa, mask_add, H)
gc = rng.normal(size=context.shape)
dxa, _, dpa = attention_backward(gc, cache)

flat = {"x": xa, **{f"{n}.{w}": pa[n][w] for n in pa for w in ("weight", "bias")}}


def attention_loss(a):
    params = {n: {w: a[f"{n}.{w}"] for w in ("weight", "bias")} for n in ("query", "key", "value")}
    return float((attention_forward(a["x"], params, mask_add, H)[0] * gc).sum())


grads = {"x": dxa, **{f"{n}.{w}": dpa[n][w] for n in pa for w in ("weight", "bias")}}
report = grad_check(attention_loss, flat, grads)
print("causal self-attention, worst |finite difference - backward|:", f"{max(report.values()):.1e}",
      "over", list(report))

# %% [markdown]
# ## 3. The loss
#
# For logits $z \in \mathbb{R}^{N \times V}$ and labels $y$, with $n$ counted labels (those $\ne -100$,
# notebook 07):
#
# $$L = -\frac1n \sum_{t:\, y_t \ne -100} \log \operatorname{softmax}(z_t)_{y_t}
# = \frac1n \sum_{t:\, y_t \ne -100} \Big(\log \sum_k e^{z_{t,k}} - z_{t,y_t}\Big).$$
#
# Its gradient $\partial L / \partial z$ is where every training step's backward starts, and deriving
# it is exercise 1. Here we only check `ops.cross_entropy_backward` against finite differences and
# look at two of its properties.
#
# **Predict, then run:** which rows of `dz` are exactly zero, and what does each of the other rows
# sum to? (Each counted term depends on one row $z_t$ only; softmax's entries sum to 1.)

# %%
z = rng.normal(size=(6, 10)) * 3
y = np.array([3, 1, -100, 7, 7, -100])  # -100: ignored, as in torch
value, cache = ops.cross_entropy_forward(z, y)
dz = ops.cross_entropy_backward(1.0, cache)
report = grad_check(lambda a: float(ops.cross_entropy_forward(a["z"], y)[0]), {"z": z}, {"z": dz})
print(f"loss {float(value):.4f}; dz rows of ignored labels are zero: {not dz[[2, 5]].any()}; "
      f"grad_check error {report['z']:.1e}")
print(f"largest |row sum| of dz: {np.abs(dz.sum(axis=1)).max():.0e}")  # float64 rounding

# %% [markdown]
# ## 4. A whole bert2bert, against torch's autograd
#
# `model.backward(out)` chains every backward of the model: loss, LM head (tied to the word
# embeddings, so two gradients add), decoder layers with cross-attention (each layer's gradient into
# the encoder output adds up), the encoder, the embeddings. We check it two ways on a tiny float64
# model: finite differences on a few parameters, and **every** parameter's gradient against torch
# autograd through transformers' implementation.

# %%
import warnings

from minibertgen import reference
from minibertgen.testing import assert_close

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when transformers loads
part = mbg.BertGenerationConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=24, max_position_embeddings=16, initializer_range=0.3)
config = mbg.EncoderDecoderConfig(part, part, decoder_start_token_id=2, pad_token_id=0)
model = mbg.EncoderDecoderModel(config, seed=0, dtype="float64")
src = rng.integers(3, 30, size=(2, 7))
src_mask = np.ones((2, 7))
src_mask[1, 5:] = 0
labels = rng.integers(3, 30, size=(2, 5))
labels[1, 4] = -100
grads = mbg.flatten(model.backward(model(src, src_mask, labels=labels)))
print(f"{len(grads)} parameter tensors, {sum(g.size for g in grads.values())} numbers")

params = mbg.flatten(model.params)
names = ["encoder.embeddings.position_embeddings.weight", "encoder.encoder.layer.0.attention.self.key.weight",
         "decoder.bert.encoder.layer.1.crossattention.self.query.weight", "decoder.lm_head.bias"]


def model_loss(a):
    trial = mbg.EncoderDecoderModel(config, mbg.unflatten({**params, **a}), dtype="float64")
    return float(trial(src, src_mask, labels=labels).loss)


report = grad_check(model_loss, {n: params[n] for n in names}, {n: grads[n] for n in names})
print("finite differences:", {n.split(".", 1)[1]: f"{v:.1e}" for n, v in report.items()})

if reference.oracle_available():
    torch, _ = reference.load_oracle()
    hf = reference.hf_model(config, params)
    hf(input_ids=reference.to_torch(src), attention_mask=reference.to_torch(src_mask),
       labels=reference.to_torch(labels), use_cache=False).loss.backward()
    worst = 0.0
    for name, grad in grads.items():
        theirs = hf.get_parameter(name).grad
        theirs = np.zeros_like(grad) if theirs is None else theirs.numpy()
        # float64 sums of O(1) terms: summation order only
        worst = max(worst, assert_close(grad, theirs, atol=1e-9, rtol=1e-7, name=f"dL/d {name}"))
    print(f"torch autograd: all {len(grads)} gradients agree, worst abs error {worst:.1e}")
else:
    print("transformers is not installed: the finite differences above are the check")

# %% [markdown]
# ## 5. A few training steps
#
# With gradients we can train. AdamW (`train.AdamW`, equal to `torch.optim.AdamW`) keeps running
# means of the gradient and of its square, $m \leftarrow \beta_1 m + (1-\beta_1) g$,
# $v \leftarrow \beta_2 v + (1-\beta_2) g^2$, and steps by
# $\mathrm{lr}\,\hat m / (\sqrt{\hat v} + \epsilon)$ with bias-corrected $\hat m, \hat v$, after a
# decoupled weight decay $\theta \leftarrow \theta(1 - \mathrm{lr}\,\lambda)$. We clip the global
# gradient norm to 1 and decay the learning rate linearly. The toy task: **reverse** a sequence of 4-6 tokens.

# %%
from minibertgen.train import AdamW, clip_grad_norm, default_no_decay, linear_schedule

part = mbg.BertGenerationConfig(vocab_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                intermediate_size=64, max_position_embeddings=16, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0)
tiny = mbg.EncoderDecoderModel(mbg.EncoderDecoderConfig(part, part, decoder_start_token_id=2, pad_token_id=0,
                                                        eos_token_id=1), seed=0)  # float32


def reverse_batch(rng, batch=32):
    lengths = rng.integers(4, 7, size=batch)
    src = np.zeros((batch, 6), dtype=np.int64)
    labels = np.full((batch, 7), -100)
    for b, n in enumerate(lengths):
        seq = rng.integers(3, 16, size=n)
        src[b, :n] = seq
        labels[b, : n + 1] = [*seq[::-1], 1]  # the reversed sequence, then eos
    return src, (src != 0).astype(np.float32), labels


data_rng = np.random.default_rng(1)
optimizer = AdamW(lr=1e-2, weight_decay=0.01, no_decay=default_no_decay)
steps, history = 300, []
for step in range(steps):
    src, src_mask, labels = reverse_batch(data_rng)
    out = tiny(src, src_mask, labels=labels)
    grads, norm = clip_grad_norm(tiny.backward(out), max_norm=1.0)
    tiny.params = optimizer.step(tiny.params, grads, lr=1e-2 * linear_schedule(step, 10, steps))
    history.append(float(out.loss))

plt.figure(figsize=(6.5, 3.2))
plt.semilogy(history)
plt.xlabel("step")
plt.ylabel("cross-entropy")
plt.title("learning to reverse sequences")
plt.show()

src, src_mask, labels = reverse_batch(np.random.default_rng(99), batch=200)  # fresh sequences
gen = tiny.generate(src, src_mask, max_new_tokens=7)
exact = [g[1 : 1 + (l != -100).sum()].tolist() == l[l != -100].tolist() for g, l in zip(gen, labels)]
print(f"exactly reversed (greedy decoding): {np.mean(exact):.0%} of 200 new sequences")
for s, g in zip(src[:3], gen[:3]):
    print("  source", s[s != 0].tolist(), "-> generated", g[1:].tolist())

# %% [markdown]
# ## Exercise 1: the loss's backward, with ignored labels
#
# Write `my_cross_entropy_backward(logits, labels)`: logits $(N, V)$, labels $(N,)$ with -100 on
# ignored positions; return $\partial L / \partial z$, shape $(N, V)$, for the mean loss $L$ of section 3.
# Derive it first, on paper:
#
# * for one counted row, differentiate $\log\sum_k e^{z_k} - z_y$ with respect to $z_j$ (two cases:
#   $j = y$ and $j \ne y$);
# * then account for the $\frac1n$ of the mean, and for the rows that are not in the sum at all.
#
# Section 3's printout tells you two things your answer must satisfy. `minibertgen.exercises.check_cross_entropy_backward`
# grades it on random batches and names the usual mistakes.

# %%
from minibertgen.exercises import check_cross_entropy_backward, check_softmax_backward


def my_cross_entropy_backward(logits, labels):
    raise NotImplementedError("your code here")


try:
    check_cross_entropy_backward(my_cross_entropy_backward)
except NotImplementedError:
    print("Not written yet: fill in my_cross_entropy_backward above, then run this cell again.")

# %% [markdown]
# ## Exercise 2: softmax's backward
#
# Write `my_softmax_backward(dout, probs)`: given `probs = softmax(x)` over the last axis (any
# shape `(..., N)`) and `dout` $= \partial L / \partial\,\text{probs}$, return $\partial L / \partial x$,
# without building the Jacobian and without writing into the inputs. Start from section 2's
# $\frac{\partial p_i}{\partial s_k} = p_i(\delta_{ik} - p_k)$: split the sum over $i$ into the term
# $i = k$ and the rest, and look for a sum that does not depend on $k$.
# `minibertgen.exercises.check_softmax_backward` grades it on random shapes.

# %%
def my_softmax_backward(dout, probs):
    raise NotImplementedError("your code here")


try:
    check_softmax_backward(my_softmax_backward)
except NotImplementedError:
    print("Not written yet: fill in my_softmax_backward above, then run this cell again.")

# %% [markdown]
# The solutions are the package's own backwards, the ones `EncoderDecoderModel.backward` and
# `attention_backward` use; the checkers compare against them:

# %%
check_cross_entropy_backward(lambda z, y: ops.cross_entropy_backward(1.0, ops.cross_entropy_forward(z, y)[1]))
check_softmax_backward(ops.softmax_backward)

# %% [markdown]
# ## Summary
#
# - A backward is checked by a central difference of $L = \sum y \odot g$ along a random direction,
#   with a random upstream gradient $g$, in float64; its error has a valley in $\epsilon$ between
#   truncation and rounding.
# - LayerNorm's backward is $r(h - \bar h - \hat x\, \overline{h \odot \hat x})$ per row; attention's
#   chains softmax's backward with matrix products, and $x$'s three gradients (from $Q$, $K$, $V$) add.
# - The masked loss's gradient has zero rows for ignored labels and rows that sum to 0 elsewhere.
# - The whole bert2bert's 93 parameter gradients equal torch autograd's through transformers, and
#   AdamW with them learns to reverse sequences.
