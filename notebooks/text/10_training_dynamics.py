# Text twin of notebooks/10_training_dynamics.ipynb (cells only; outputs in the notebook). Written by scripts/notebook_text.py.

# %% [markdown]
# # 10 · Training dynamics, and a bert2bert that works
#
# **You will learn:** what happens during fine-tuning, step by step: the learning-rate schedule (linear warmup, then linear decay), gradient norms and clipping, training against held-out loss, whether the model reads its input (the source gap), and what overfitting looks like; and you will see a warm-started bert2bert do a real task, its predictions beside the targets.
#
# **Prerequisites:** notebooks 07, 08 and 09 (the loss, backprop, the warm start).
#
# **Time:** about 40 minutes (the notebook runs in about 6 minutes on one CPU core, 5 of them in the training cell).
#
# The project's main job (`minibertgen demo`) is **sentence fusion**, the task of Rothe et al.'s DiscoFuse experiments in miniature: two sentences in, one out, joined by a connective, with a repeated subject turned into a pronoun (`minibertgen.fusion` generates the pairs). Its recipe (`demo.RECIPE`): a bert2bert warm-started from MiniLM, cross-attention copied from self-attention (notebook 09), batch 8, peak learning rate $5 \cdot 10^{-4}$, 10% warmup then linear decay, 200 steps. This notebook trains that model once, on the recipe's full budget, and reads the whole run from `train`'s history: one record per optimizer step with the training loss, the learning rate, the gradient norm before clipping, and at the evaluation steps the held-out loss with the true and with shuffled sources.
#
# **Code path:** `fusion.train_and_heldout` → `demo.build_model` (`cross_attention_init="self_attention"`) → `train.train` (`linear_schedule`, `clip_grad_norm` / `global_norm`, `AdamW`, `source_dependence`, `shuffle_sources`) → `demo.predict` (`model.generate`) and `demo.scores`.
#
# **Check:** the learning rate of every step equals transformers' `get_linear_schedule_with_warmup`; the gradient clipping equals `torch.nn.utils.clip_grad_norm_` on one step's gradients; and the trained model's held-out predictions are compared with their targets (exact match and distinct outputs asserted).

# %%
import os

# One BLAS thread, set before NumPy loads OpenBLAS: the numbers below were measured so (another thread count
# can change the last digits of a matrix product, and training carries them into the printed losses).
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")
assert os.environ["OPENBLAS_NUM_THREADS"] == "1", "restart the kernel with OPENBLAS_NUM_THREADS=1 (or unset)"

import tempfile
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np

import minibertgen as mbg
from minibertgen.demo import RECIPE, build_model, predict, scores
from minibertgen.fetch import require_weights
from minibertgen.fusion import train_and_heldout
from minibertgen.train import TrainSettings, encode_pairs, linear_schedule, source_dependence, special_ids, train

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice in a notebook without widgets
MINILM = require_weights("minilm-l6")  # missing: stops here, saying to run `minibertgen fetch minilm-l6` (~84 MB)
tok = mbg.BertTokenizer.from_pretrained(MINILM)
ids = special_ids(tok)
train_pairs, heldout = train_and_heldout(RECIPE["n_train"], RECIPE["n_heldout"], seed=0)  # no source in both
print(f"{len(train_pairs)} training pairs, {len(heldout)} held out; recipe: {RECIPE}\n")
for source, target in train_pairs[:3]:
    print(f"  {source!r}\n    -> {target!r}")

# %% [markdown]
# ## The learning-rate schedule
#
# `train` takes the $k$-th optimizer step ($k = 0, 1, \dots, T-1$) with learning rate $\eta_k = \eta \cdot f(k)$, where $\eta$ is the peak (`lr`), $w$ the warmup steps and $T$ the total:
#
# $$f(k) = \begin{cases} k / w & k < w \quad\text{(warmup: a linear ramp from 0)}\\[2pt] \max\!\left(0, \dfrac{T - k}{T - w}\right) & k \ge w \quad\text{(linear decay, to 0 at } k = T\text{)}\end{cases}$$
#
# Why warm up: at step 0 Adam's moment estimates are built from one gradient, and the LM head and cross-attention are far from where they will end; full-size steps then can throw the pre-trained weights far away (notebook 09 measured a copied start with no warmup falling into the plateau). Why decay: small final steps let the weights settle instead of bouncing around the minimum.
#
# **Predict, then run:** the run below has $T = 200$ and $w = 20$. Which learning rate does the very first optimizer step use? Which step is the first at the peak $\eta$, and what is the last step's?

# %%
STEPS = RECIPE["steps"]  # 200, the demo's budget
settings = TrainSettings(steps=STEPS, batch_size=RECIPE["batch_size"], lr=5e-4, seed=0,
                         warmup_steps=max(1, round(STEPS * RECIPE["warmup_share"])), eval_every=25)  # the demo evaluates every 50
lrs = np.array([settings.lr * linear_schedule(k, settings.warmup_steps, settings.steps) for k in range(STEPS)])
print(f"T = {settings.steps}, w = {settings.warmup_steps}, peak lr {settings.lr:g}")
for k in (0, 1, settings.warmup_steps - 1, settings.warmup_steps, STEPS - 1):
    print(f"  step {k:3d}: lr {lrs[k]:.3e}")

# Check: transformers' scheduler on a torch optimizer gives the same learning rate at every step.
from minibertgen import reference
from minibertgen.testing import assert_close

if reference.oracle_available():
    torch, transformers = reference.load_oracle()
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([weight], lr=settings.lr)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, settings.warmup_steps, settings.steps)
    theirs = []
    for _ in range(STEPS):
        theirs.append(optimizer.param_groups[0]["lr"])  # the lr this step uses
        optimizer.step()
        scheduler.step()
    print("transformers' get_linear_schedule_with_warmup, max abs difference:",
          assert_close(lrs, np.array(theirs), atol=1e-15, name="learning rates"))
else:
    print("transformers is not installed: linear_schedule is checked against it in tests/test_training_reference.py")

# %% [markdown]
# ## One run of the recipe
#
# `demo.RECIPE` trains 200 steps; on one CPU core a MiniLM bert2bert step (batch 8, forward, backward, clipping, AdamW over the 48.7 million parameters printed below) takes about a second, so the 200 steps take 3-5 minutes: the cell below is the notebook's long one. Everything is the recipe (the demo's warm run, evaluated twice as often for a finer curve): the warm start from MiniLM with copied cross-attention, batch 8, 10% warmup, linear decay, gradient clipping at norm 1, weight decay 0.01 (not on biases and LayerNorm weights), dropout 0.1.
#
# Before any training, the model's held-out loss is that of a uniform guess over 30522 tokens, and the source makes no difference yet:

# %%
model = build_model(MINILM, "bert2bert", "self_attention", seed=0, **ids)
held = encode_pairs(tok, heldout)
before = source_dependence(model, held, batch_size=8, pad_token_id=ids["pad_token_id"])
print(f"{model.num_parameters():,} parameters")
print(f"step 0: held-out loss {before['heldout_loss']:.3f} (ln 30522 = {np.log(30522):.3f}), "
      f"shuffled sources {before['shuffled_source_loss']:.3f}, gap {before['source_gap']:+.3f}")

workdir = tempfile.mkdtemp(prefix="minibertgen-10-")
start = time.perf_counter()
run = train(model, tok, train_pairs, workdir, settings, eval_pairs=heldout, save_checkpoints=False, progress=False)
seconds = time.perf_counter() - start
history = run.history  # one dict per step: step, loss, lr, grad_norm, tokens_per_s, eval_loss, eval_shuffled_loss
print(f"{STEPS} steps in {seconds:.0f} s ({seconds / STEPS:.2f} s per step, evaluations included)\n")
print(" step   train loss   held-out   shuffled sources   source gap")
evals = [r for r in history if r["eval_loss"] != ""]
for r in evals:
    recent = np.mean([h["loss"] for h in history[max(0, r["step"] - settings.eval_every) : r["step"]]])
    print(f"{r['step']:5d}   {recent:10.3f}   {r['eval_loss']:8.3f}   {r['eval_shuffled_loss']:16.3f}   "
          f"{r['eval_shuffled_loss'] - r['eval_loss']:+10.3f}")

# %% [markdown]
# ## The run, in four pictures
#
# All four panels come from `history`, the same run: the learning rate each step used, the gradient norm before clipping (the dashed line is `max_grad_norm`: above it, `clip_grad_norm` scales every gradient by the same factor $\text{max\_norm} / \lVert g \rVert$), the training loss of each batch beside the held-out loss at the evaluation steps, and the source gap $\Delta = \mathcal{L}(\text{shuffled sources}) - \mathcal{L}(\text{true sources})$ (notebook 09) at the evaluation steps.

# %%
steps = np.array([r["step"] for r in history])
eval_steps = np.array([r["step"] for r in evals])
assert_close(np.array([r["lr"] for r in history]), lrs, atol=0, name="the run's learning rates")  # the schedule above
norms = np.array([r["grad_norm"] for r in history])
clipped = norms > settings.max_grad_norm

fig, axes = plt.subplots(2, 2, figsize=(11, 7))
ax = axes[0, 0]
ax.plot(steps, [r["lr"] for r in history], color="C0")
ax.axvline(settings.warmup_steps + 0.5, color="grey", lw=0.8, ls=":")
ax.set(xlabel="optimizer step", ylabel="learning rate", title="warmup, then linear decay")
ax = axes[0, 1]
ax.plot(steps, norms, color="C3", lw=1)
ax.axhline(settings.max_grad_norm, color="black", ls="--", lw=1, label=f"max_grad_norm = {settings.max_grad_norm:g}")
ax.set(xlabel="optimizer step", ylabel="global gradient norm (before clipping)", yscale="log",
       title=f"gradient norms: {clipped.sum()} of {STEPS} steps clipped")
ax.legend(fontsize=8)
ax = axes[1, 0]
ax.plot(steps, [r["loss"] for r in history], color="C0", lw=0.8, alpha=0.6, label="training batch")
ax.plot(eval_steps, [r["eval_loss"] for r in evals], "o-", color="C1", label="held-out, true sources")
ax.plot(eval_steps, [r["eval_shuffled_loss"] for r in evals], "s:", color="C7", label="held-out, shuffled sources")
ax.set(xlabel="optimizer step", ylabel="cross-entropy per target token", yscale="log", title="training vs held-out loss")
ax.legend(fontsize=8)
ax = axes[1, 1]
ax.plot(eval_steps, [r["eval_shuffled_loss"] - r["eval_loss"] for r in evals], "o-", color="C2")
ax.axhline(0, color="grey", lw=0.8)
ax.set(xlabel="optimizer step", ylabel="source gap (nats per token)", title="what the source is worth")
fig.tight_layout()
plt.show()
print(f"gradient norm: {norms[:5].mean():.2f} over the first 5 steps, {norms[-5:].mean():.2f} over the last 5; "
      f"clipped on {clipped.sum()} of {STEPS} steps (the largest: {norms.max():.1f} at step {steps[norms.argmax()]})")

# %% [markdown]
# What the run shows:
#
# * **The schedule.** The very first optimizer step uses learning rate 0: it only feeds Adam's moment estimates their first gradient, and the weights do not move. Step 20 is the first at the peak $5 \cdot 10^{-4}$, and the last step, 199, uses $2.778 \cdot 10^{-6}$ (the decay reaches 0 at step $T = 200$, which is never taken).
# * **Gradient norms.** They start large: 10.76 on average over the first 5 steps, while the LM head and the fresh cross-attention are far from where they will end. Clipping to norm 1 acts on 161 of the 200 steps, so for most of the run the update's size is set by the clipping and the schedule, not by the raw gradient; the norms come down as the loss does (1.85 over the last 5 steps; single batches still spike).
# * **Training against held-out loss.** The two fall together, from 4.869 held out at step 25 to 0.033 at step 200, with the training batches' mean at 0.070 over the last 25 steps: higher than held out, because training runs with dropout 0.1 and evaluation without. No overfitting: 200 steps of batch 8 see 1600 of the 4000 training pairs, each at most once, so every training batch is new data too.
# * **The source gap** grows from +0.402 at step 25 to +4.847 at step 200. After step 75 the shuffled-source loss *rises* (3.328 then, 4.879 at the end) while the true-source loss falls: the model relies on its input more and more, the opposite of notebook 09's plateau.
#
# ## What the model writes
#
# The loss says how likely the targets are; a reader wants to see the sentences. `demo.predict` beam-searches each held-out source (4 beams, as the demo), and `demo.scores` compares the decoded prediction with the decoded target (both through the uncased tokenizer, so capitals do not count).
#
# **Predict, then run:** of the 32 held-out sources, how many fusions will be exactly right, and how many different sentences will the model write? (A model that ignored its input would write one sentence for all 32, as the paper's warm start did in notebook 09.)

# %%
start = time.perf_counter()
texts, token_ids = predict(run.model, tok, heldout, num_beams=4, max_new_tokens=30)
result = {**scores(tok, heldout, texts, token_ids), "distinct_predictions": len(set(texts)),
          **source_dependence(run.model, held, batch_size=8, pad_token_id=ids["pad_token_id"])}
print(f"beam search over {len(heldout)} held-out sources: {time.perf_counter() - start:.0f} s\n")
for (source, target), text in list(zip(heldout, texts))[:12]:
    right = text == tok.decode(tok.encode(target), skip_special_tokens=True)
    print(f"{'✓' if right else '✗'} source:     {source}\n  target:     {target}\n  prediction: {text}\n")
print(f"exact match {result['exact_match']:.3f} ({round(result['exact_match'] * len(heldout))} of {len(heldout)}), "
      f"token accuracy {result['token_accuracy']:.3f}, {result['distinct_predictions']} distinct predictions "
      f"for {len(heldout)} sources")
print(f"held-out loss {result['heldout_loss']:.3f}, with shuffled sources {result['shuffled_source_loss']:.3f}: "
      f"source gap {result['source_gap']:.2f} nats per token")
# It works, and it works from its input: most fusions exactly right, (nearly) one output per source, a large gap.
assert result["exact_match"] > 0.5 and result["distinct_predictions"] >= len(heldout) - 2 and result["source_gap"] > 2, result

# %% [markdown]
# All 32 held-out fusions are exactly right, 32 different sentences for 32 sources, with a source gap of 4.85 nats per token: the model reads its input and writes the fusion, the connective and the pronoun for a repeated subject included ("Mark finished the work although he was tired."). This is the recipe of `minibertgen demo`'s warm run, which runs on two BLAS threads: another summation order, so other last digits, which 200 steps carry into the weights. README ("The main job") reports it on two machines: 32 of 32 exactly right on one, 29 of 32 on the other, each time 32 distinct predictions and a gap near 4.8 nats. Whether the run reads its input does not depend on the rounding; the last few exact matches do.
#
# ## Check: clipping agrees with torch's
#
# `clip_grad_norm` computes one norm over *all* gradient entries, $\lVert g \rVert = \sqrt{\sum_{\text{tensors}} \sum_i g_i^2}$, and when it exceeds `max_norm` multiplies every tensor by $\text{max\_norm} / (\lVert g \rVert + 10^{-6})$, so the update keeps its direction. Here it is on one batch's gradients of the trained model, against `torch.nn.utils.clip_grad_norm_`. Both norms are float32 sums of squares over 48.7 million entries, so they agree with each other and with the float64 sum only to about four digits, not to the last one (the cell prints how far):

# %%
from minibertgen.train import clip_grad_norm, collate

batch = collate(encode_pairs(tok, train_pairs[:8]), ids["pad_token_id"])
grads = run.model.backward(run.model(**batch, train=True, rng=np.random.default_rng(0)))
max_norm = 0.1  # below this batch's norm, so clipping acts
clipped_grads, norm = clip_grad_norm(grads, max_norm)
flat, flat_clipped = mbg.flatten(grads), mbg.flatten(clipped_grads)
exact = np.sqrt(sum(np.dot(g.ravel().astype(np.float64), g.ravel().astype(np.float64)) for g in flat.values()))
print(f"global norm {norm:.6f} over {len(flat)} tensors (float64 sum of squares: {exact:.6f}); after clipping "
      f"{np.sqrt(sum(float(np.vdot(g, g)) for g in flat_clipped.values())):.4f}")
# global_norm adds one float32 BLAS dot per tensor (no squared copy): over up to 11.7 M entries a float32
# accumulation is good to about 1e-4 relative (4e-5 measured on random data of the embeddings' shape).
assert_close(np.array(norm), np.array(exact), atol=0, rtol=1e-4, name="our norm against the float64 one")
if reference.oracle_available():
    tensors = []
    for name in sorted(flat):
        tensor = torch.nn.Parameter(torch.zeros(flat[name].shape))
        tensor.grad = torch.from_numpy(flat[name].copy())
        tensors.append((name, tensor))
    torch_norm = float(torch.nn.utils.clip_grad_norm_([t for _, t in tensors], max_norm))
    # torch's float32 norms: 1e-3 relative measured on random data of the embeddings' shape
    assert_close(np.array(torch_norm), np.array(exact), atol=0, rtol=1e-3, name="torch's norm against the float64 one")
    # Each side scales by max_norm / (its own norm + 1e-6): the clipped gradients differ by the norms' ratio.
    ratio_gap = abs((torch_norm + 1e-6) / (norm + 1e-6) - 1)
    worst = max(float(np.abs(flat_clipped[name] - t.grad.numpy()).max() / (np.abs(t.grad.numpy()).max() + 1e-30))
                for name, t in tensors)  # fmt: skip
    assert worst <= 1.01 * ratio_gap + 1e-6, (worst, ratio_gap)  # + float32 rounding of the products
    print(f"torch.nn.utils.clip_grad_norm_: norm {torch_norm:.6f}; the two norms differ by {ratio_gap:.1e} relative, "
          f"and so do the clipped gradients (at most {worst:.1e})")
else:
    print("transformers is not installed: clip_grad_norm is checked against torch in tests/test_training_reference.py")

# %% [markdown]
# ## Overfitting, in a few seconds
#
# The fusion run had 4000 training pairs and saw each about once: its held-out loss fell with its training loss. Overfitting needs the opposite: a model with room to memorise, and few examples. Here a **tiny random** bert2bert (2 layers, width 64, a word-level vocabulary of the 167 words the fusion generator can write) trains on just **8 pairs**, with dropout off, for 100 steps of batch 8 at a peak of $5 \cdot 10^{-3}$. Its held-out loss is measured every 5 steps on 32 other pairs.

# %%
from minibertgen.fusion import vocabulary

tiny_dir = tempfile.mkdtemp(prefix="minibertgen-10-tiny-")
words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(vocabulary())]  # one token per word
with open(os.path.join(tiny_dir, "vocab.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(words) + "\n")
tiny_tok = mbg.BertTokenizer(os.path.join(tiny_dir, "vocab.txt"))
tiny_ids = special_ids(tiny_tok)
few, others = train_and_heldout(8, 32, seed=1)
part = mbg.BertGenerationConfig(vocab_size=len(words), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=128, max_position_embeddings=64, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0)  # fmt: skip
tiny = mbg.EncoderDecoderModel(mbg.EncoderDecoderConfig(part, part, **tiny_ids), seed=0)
tiny_settings = TrainSettings(steps=100, batch_size=8, lr=5e-3, warmup_steps=10, eval_every=5, seed=0)
start = time.perf_counter()
tiny_run = train(tiny, tiny_tok, few, os.path.join(tiny_dir, "run"), tiny_settings, eval_pairs=others,
                 save_checkpoints=False, progress=False)  # fmt: skip
tiny_evals = [r for r in tiny_run.history if r["eval_loss"] != ""]
best = min(tiny_evals, key=lambda r: r["eval_loss"])
last = tiny_run.history[-1]
print(f"{len(words)} tokens, {tiny.num_parameters():,} parameters, 100 steps in {time.perf_counter() - start:.0f} s")
print(f"held-out loss: lowest {best['eval_loss']:.3f} at step {best['step']}, {last['eval_loss']:.3f} at the end; "
      f"training loss at the end {last['loss']:.4f}")
assert last["loss"] < 0.05 and last["eval_loss"] > best["eval_loss"] + 0.5  # memorised, and worse held out

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot([r["step"] for r in tiny_run.history], [r["loss"] for r in tiny_run.history], color="C0", label="training (8 pairs)")
ax.plot([r["step"] for r in tiny_evals], [r["eval_loss"] for r in tiny_evals], "o-", color="C1", ms=3,
        label="held-out (32 other pairs)")  # fmt: skip
ax.axvline(best["step"], color="grey", ls=":", lw=1, label=f"lowest held-out loss (step {best['step']})")
ax.set(xlabel="optimizer step", ylabel="cross-entropy per target token", yscale="log",
       title="a tiny model memorises 8 pairs: training loss -> 0, held-out loss rises")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The tiny model memorises: its training loss falls to 0.0196, while its held-out loss is lowest at step 15 (4.626) and then rises, to 5.789 at the end. Every step after 15 makes it better on the 8 pairs it has seen and worse on the 32 it has not: the gap between the curves is what it learnt by heart. The remedies are the ones the fusion run had: more data (4000 pairs), dropout, a pre-trained start; and, when they are not enough, early stopping: evaluate every `eval_every` steps and keep the checkpoint with the lowest held-out loss.
#
# ## Exercise: write the schedule
#
# Write `my_lr_factor(step, warmup_steps, total_steps)`: the factor $f(k)$ of the formula at the top, for optimizer step `step` counted from 0, with `warmup_steps` an integer (it may be 0: no warmup) and `total_steps` the run's length. It must return 0 at step 0 when there is a warmup, exactly 1 at step `warmup_steps`, fall linearly to 0 at step `total_steps`, and stay 0 after it.
#
# `minibertgen.exercises.check_warmup_schedule` checks every step of schedules with no warmup, a warmup of all steps, and random ones, and says which step is wrong and why (an off-by-one at step 0 or at the peak, a decay over the wrong number of steps, a negative learning rate).

# %%
from minibertgen.exercises import check_warmup_schedule


def my_lr_factor(step, warmup_steps, total_steps):
    raise NotImplementedError("your code here")


try:
    check_warmup_schedule(my_lr_factor)
except NotImplementedError:
    print("Not written yet: fill in my_lr_factor above, then run this cell again.")

# %% [markdown]
# The solution is the package's `train.linear_schedule`, which the checker compares against (and which the first check above compared with transformers):

# %%
check_warmup_schedule(linear_schedule)

# %% [markdown]
# ## Summary
#
# * The learning rate of step $k$ is $\eta f(k)$: a ramp from 0 (the first step takes learning rate 0) to the peak at step $w$, then a linear decay to 0 at step $T$; `linear_schedule` equals transformers' `get_linear_schedule_with_warmup` at every step.
# * A warm start's gradient norms begin large (10.76 over the first 5 steps here) and clipping to norm 1 sets the update on most steps (161 of 200); `clip_grad_norm` scales every tensor by one factor and agrees with torch's to the float32 rounding of two sums of 48.7 million squares.
# * The held-out loss measures learning, and the source gap tells reading from guessing: the recipe's run ends at a held-out loss of 0.033 with a gap of 4.85 nats, and writes all 32 held-out fusions exactly right, each different.
# * Overfitting is the training loss falling while the held-out loss rises: a tiny model on 8 pairs reaches 0.0196 in training while its held-out loss climbs from 4.626 (step 15) to 5.789. Stop where the held-out loss is lowest.
