# Text twin of notebooks/07_teacher_forcing_loss.ipynb (cells only; outputs in the notebook). Written by scripts/notebook_text.py.

# %% [markdown]
# # 07 · Teacher forcing and the loss
#
# **You will learn:** how `labels` become `decoder_input_ids` (the right shift, the decoder start
# token, -100 turned into padding), what position $t$ predicts, how the loss averages over the
# tokens that count, and the three mistakes bert2bert users make most often, each shown in numbers.
#
# **Prerequisites:** notebooks 05 and 06 (the decoder layer and cross-attention); 03 for the causal mask.
#
# **Time:** about 30 minutes.
#
# A decoder is trained with **teacher forcing**: instead of feeding it its own (at first, random)
# predictions, we feed it the *true* previous tokens and ask it, at every position at once, for the
# next one. For a target $y_1 \dots y_n$ (ending with the end token) and a source $x$, the model
# minimises
#
# $$L = -\frac{1}{N} \sum_{b}\ \sum_{t:\ y_{b,t} \ne -100} \log p_\theta\big(y_{b,t} \,\big|\, y_{b,<t},\ x_b\big),
# \qquad N = \#\{(b, t) : y_{b,t} \ne -100\},$$
#
# where the condition on $y_{b,<t}$ is realised by two things together: the decoder's **input** at
# position $t$ is $y_{b,t-1}$ (the start token at $t = 0$), and the causal mask (notebook 03) hides
# every later input. In transformers' `EncoderDecoderModel` and in minibertgen both happen inside
# `model(input_ids, labels=labels)`: you pass the labels, the model shifts them.
#
# **Code path:** `stack.shift_tokens_right` (what `EncoderDecoderModel.__call__` does with
# `labels`), `ops.cross_entropy_forward` and `ops.log_softmax` (the loss), `train.collate` (labels
# with -100 on padding), `train.AdamW`, `train.clip_grad_norm`, `train.linear_schedule`,
# `train.eval_loss`, `EncoderDecoderModel.generate`.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minibertgen as mbg
from minibertgen import ops, reference
from minibertgen.stack import shift_tokens_right
from minibertgen.testing import assert_close
from minibertgen.train import AdamW, clip_grad_norm, collate, default_no_decay, eval_loss, linear_schedule

PAD, EOS, START = 0, 1, 2  # the special ids of this notebook's toy vocabulary; ordinary tokens are 3..15
part = mbg.BertGenerationConfig(vocab_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                intermediate_size=64, max_position_embeddings=16, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0)
config = mbg.EncoderDecoderConfig(part, part, decoder_start_token_id=START, pad_token_id=PAD, eos_token_id=EOS)
print("decoder_start_token_id", config.decoder_start_token_id, "| pad_token_id", config.pad_token_id,
      "| eos_token_id", config.eos_token_id)

# %% [markdown]
# ## 1. From labels to decoder inputs
#
# A training pair is (source ids, target ids). `train.collate` pads a batch: the source with
# `pad_token_id` (and an attention mask of 0 there), the **labels** with **-100**, the value
# the loss ignores. The target ends with the end token, so the model learns when to stop.
#
# The decoder inputs are the labels **shifted right**:
#
# $$\texttt{decoder\_input\_ids}_{b,0} = \texttt{decoder\_start\_token\_id}, \qquad
# \texttt{decoder\_input\_ids}_{b,t} = \texttt{labels}_{b,t-1}\ (t \ge 1),$$
#
# and then every -100 that moved into the inputs becomes `pad_token_id` (-100 is not a token id:
# the embedding lookup would fail on it). The last label is never an input: nothing comes after it.
#
# **Predict, then run:** the second target is two tokens shorter than the first. In its row of
# `decoder_input_ids`, what stands at position 3, where the labels already say -100? And at position 4?

# %%
pairs = [([5, 9, 4, 7], [7, 4, 9, 5, EOS]),  # (source, target): the toy task reverses the source
         ([8, 3], [3, 8, EOS])]
batch = collate(pairs, PAD)
labels = batch["labels"]  # (B, T) with -100 on padding
dec_ids = shift_tokens_right(labels, PAD, START)  # (B, T) -> (B, T)
print("labels\n", labels)
print("decoder_input_ids\n", dec_ids)

print("\nrow 1, position by position:")
print(f"{'t':>3} | {'decoder input t':>15} | {'label t (what logits[t] is scored on)':>38}")
for t in range(labels.shape[1]):
    target = "ignored (-100)" if labels[1, t] == -100 else str(labels[1, t])
    print(f"{t:>3} | {dec_ids[1, t]:>15} | {target:>38}")

# %% [markdown]
# Position 3 of the short row holds the **end token** 1: it is the last label moved one place
# right. Its label is -100, so whatever the model predicts after the end token is never scored.
# Position 4 holds `pad_token_id` 0, the -100 of position 3 shifted in and replaced. The table is the
# whole idea of teacher forcing: at position $t$ the decoder *reads* label $t-1$ and is *scored on*
# label $t$, the token after its input.
#
# `EncoderDecoderModel(..., labels=labels)` does exactly this when no `decoder_input_ids` are given,
# and returns the ids it used; it also builds `decoder_attention_mask` as `decoder_input_ids != pad`.
# We check it, and then check both the shift and the loss against the reference, transformers 4.57.6,
# built from the same weights (`reference.hf_model`).

# %%
model = mbg.EncoderDecoderModel(config, seed=0, dtype="float64")  # untrained, float64 to compare tightly
out = model(batch["input_ids"], batch["attention_mask"], labels=labels)
assert (mbg.to_numpy(out.decoder_input_ids) == dec_ids).all()  # the model shifted the labels itself
print(f"minibertgen loss {float(out.loss):.12f}")

if reference.oracle_available():
    torch, transformers = reference.load_oracle()
    from transformers.models.encoder_decoder.modeling_encoder_decoder import shift_tokens_right as hf_shift

    hf = reference.hf_model(config, mbg.flatten(model.params))
    theirs_ids = hf_shift(reference.to_torch(labels), PAD, START).numpy()
    assert (theirs_ids == dec_ids).all(), (theirs_ids, dec_ids)
    theirs = reference.run_encoder_decoder(hf, batch["input_ids"], batch["attention_mask"], labels=labels)
    # float64 end to end: only summation order differs
    assert_close(out.logits, theirs["logits"], atol=1e-10, rtol=1e-10, name="logits")
    assert_close(float(out.loss), theirs["loss"], atol=1e-12, rtol=1e-12, name="loss")
    print(f"transformers {transformers.__version__} loss {theirs['loss']:.12f}: "
          "the same decoder_input_ids, logits and loss")
else:
    print("transformers is not installed: the shift and the loss are checked against the formula only")

# %% [markdown]
# ## 2. What the loss averages
#
# `logits[b, t]` is the decoder's distribution for the token **after** input $t$, and
# `EncoderDecoderModel` scores it against `labels[b, t]` with **no further shift** (the inputs are
# already shifted). The loss is `ops.cross_entropy_forward` on the flattened $(B \cdot T, V)$ logits:
# $-\log \operatorname{softmax}(z)_y = \log\sum_k e^{z_k} - z_y$ per counted position, computed as
# `log_softmax` does it, after subtracting the row's maximum (log-sum-exp), then **one mean over
# all counted tokens of the batch**. A long target weighs more than a short one; that is *not*
# the mean of per-sequence means.
#
# **Predict, then run:** row 0 has 5 counted labels, row 1 has 3. Will the mean of the two
# per-sequence means be above or below the batch loss printed above?

# %%
log_probs = ops.log_softmax(mbg.to_numpy(out.logits))  # (B, T, V)
counted = labels != -100  # (B, T)
per_position = -np.take_along_axis(log_probs, np.where(counted, labels, 0)[..., None], axis=-1)[..., 0]  # (B, T)
per_position = np.where(counted, per_position, np.nan)  # ignored positions have no loss

token_mean = np.nanmean(per_position)  # one mean over the 8 counted tokens
sequence_means = np.nanmean(per_position, axis=1)  # (B,)
assert np.isclose(token_mean, float(out.loss), rtol=1e-12)
print(f"counted tokens per row {counted.sum(axis=1).tolist()}, in all {int(counted.sum())}")
print(f"mean over counted tokens  {token_mean:.4f}  (= the model's loss)")
print(f"per-sequence means        {np.round(sequence_means, 4).tolist()}, their mean {sequence_means.mean():.4f}")
print(f"log V for V = {part.vocab_size}: {np.log(part.vocab_size):.4f}  (an untrained model is close to uniform)")

fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
for row, ax in enumerate(axes):
    T = labels.shape[1]
    ax.bar(range(T), np.nan_to_num(per_position[row]), color=["C0" if c else "lightgrey" for c in counted[row]])
    for t in range(T):
        tag = f"y={labels[row, t]}" if counted[row, t] else "-100\nignored"
        ax.text(t, 0.1, tag, ha="center", va="bottom", fontsize=8, color="white" if counted[row, t] else "black")
    ax.axhline(np.log(part.vocab_size), color="C3", ls="--", lw=1, label="log V (uniform guess)")
    ax.set_ylim(0, 3.9)  # room for the legend above the bars
    ax.set_xticks(range(T), [f"t={t}\nin={dec_ids[row, t]}" for t in range(T)], fontsize=8)
    ax.set_title(f"row {row}: -log p(label t) at position t")
    ax.set_xlabel("position t and its decoder input")
axes[0].set_ylabel("per-position loss (nats)")
axes[1].legend(fontsize=8, loc="upper right")
fig.tight_layout()
plt.show()

# %% [markdown]
# The batch loss is the mean over the 8 counted tokens, 2.8466. The mean of the two per-sequence
# means is 2.8426, slightly below: the short row 1 (mean 2.8262) weighs as much there as row 0 with
# its 5 tokens. With random weights every bar sits near the uniform guess $\log V = 2.7726$, and the
# grey positions, labelled -100, contribute nothing: they are neither in the sum nor in the count $N$.
#
# ## 3. Three mistakes, in numbers
#
# We train the toy model to **reverse** its source (3-6 ordinary tokens, then the end token), with
# batches of 32 made by `train.collate`, AdamW, gradient clipping and a linear schedule, and watch
# three mistakes. A helper, `train_reverser`, runs the loop; its `mistake` argument is the only
# difference between the runs.

# %%
def reverse_pairs(rng, n):
    # n (source, target) pairs: 3-6 ordinary tokens, and their reverse followed by the end token
    seqs = [rng.integers(3, 16, size=int(rng.integers(3, 7))).tolist() for _ in range(n)]
    return [(s, s[::-1] + [EOS]) for s in seqs]


def train_reverser(mistake=None, steps=200, lr=1e-2):
    # mistake: None, "pad labels" (pad instead of -100 in the labels) or "no shift" (labels fed as inputs)
    net = mbg.EncoderDecoderModel(config, seed=0)  # float32, the same initial weights for every run
    optimizer = AdamW(lr=lr, weight_decay=0.01, no_decay=default_no_decay)
    data_rng, history = np.random.default_rng(1), []
    for step in range(steps):
        b = collate(reverse_pairs(data_rng, 32), PAD)
        if mistake is None:
            out = net(b["input_ids"], b["attention_mask"], labels=b["labels"])
        elif mistake == "pad labels":
            out = net(b["input_ids"], b["attention_mask"], labels=np.where(b["labels"] == -100, PAD, b["labels"]))
        elif mistake == "no shift":
            inputs = np.where(b["labels"] == -100, PAD, b["labels"])  # (B, T): label t is the input at t
            out = net(b["input_ids"], b["attention_mask"], decoder_input_ids=inputs,
                      decoder_attention_mask=inputs != PAD, labels=b["labels"])
        else:
            raise ValueError(f"unknown mistake {mistake!r}")
        grads, _ = clip_grad_norm(net.backward(out), max_norm=1.0)
        net.params = optimizer.step(net.params, grads, lr=lr * linear_schedule(step, 10, steps))
        history.append(float(out.loss))
    return net, history


held_out = reverse_pairs(np.random.default_rng(99), 200)  # fresh pairs, never trained on
test = collate(held_out, PAD)


def exact_match(net, **generate_kwargs):
    # the fraction of held-out sources whose greedy output, up to the end token, is the reversed source
    gen = mbg.to_numpy(net.generate(test["input_ids"], test["attention_mask"], max_new_tokens=8, **generate_kwargs))
    return np.mean([g[1 : 1 + len(tgt)].tolist() == tgt for g, (_, tgt) in zip(gen, held_out)]), gen


right, right_history = train_reverser()
right_exact, right_gen = exact_match(right)
print(f"trained right: last training loss {right_history[-1]:.3f}, held-out loss "
      f"{eval_loss(right, held_out, 50, PAD):.3f}, exactly reversed {right_exact:.0%}")
print("  source", held_out[0][0], "-> generated", right_gen[0].tolist())

# %% [markdown]
# ### (a) Padding in the labels instead of -100
#
# If labels are padded with `pad_token_id` (a tokenizer's `padding=True` output passed straight as
# `labels`), nothing fails: the decoder inputs are even identical, since -100 becomes pad in the
# shift anyway. Only the loss changes: every padding position now **counts**, and asks the model to
# predict pad after the end token. On real data, where targets are padded to a fixed length, pad can
# be most of the counted tokens.

# %%
pad_labels = np.where(test["labels"] == -100, PAD, test["labels"])  # (B, T): the mistake
honest = right(test["input_ids"], test["attention_mask"], labels=test["labels"])
padded = right(test["input_ids"], test["attention_mask"], labels=pad_labels)
assert (mbg.to_numpy(honest.decoder_input_ids) == mbg.to_numpy(padded.decoder_input_ids)).all()  # same inputs
n_real, n_all = int((test["labels"] != -100).sum()), pad_labels.size
print(f"the same model, the same logits: loss with -100 {float(honest.loss):.4f} over {n_real} tokens, "
      f"with pad labels {float(padded.loss):.4f} over {n_all} tokens ({1 - n_real / n_all:.0%} of them pad)")

padder, padder_history = train_reverser("pad labels")
padder_exact, _ = exact_match(padder)
padder_honest = float(padder(test["input_ids"], test["attention_mask"], labels=test["labels"]).loss)
print(f"trained on pad labels: its reported training loss {padder_history[-1]:.3f}, "
      f"its loss on the real tokens {padder_honest:.3f} (the right model: {float(honest.loss):.3f}), "
      f"exactly reversed {padder_exact:.0%}")

# %% [markdown]
# The same trained model scores 0.0273 over the 1130 real tokens, and 2.5399 once the padding
# (19% of the 1400 positions) counts: it never learned what follows the end token, because that was
# never scored. The model *trained* on pad labels reports a training loss of 0.033, as low as the
# right run's, but part of it is the easy "pad after pad" prediction. On the real tokens it is worse,
# 0.040 against 0.027, because part of every gradient went to padding. The toy still reverses 100%:
# its padding is a fifth of the positions. With short targets padded to a long fixed length, most of
# every gradient goes to padding, and the reported loss says little about the real tokens.
#
# ### (b) Forgetting the shift
#
# Feeding the labels themselves as `decoder_input_ids` (and the same labels to the loss) puts the
# answer in the input: at position $t$ the decoder reads label $t$ and is asked for label $t$. The
# causal mask does not help, it hides only *later* positions. A one-layer model learns to copy its
# own input within a few dozen steps: the loss collapses toward 0. At generation time there is no
# answer to copy: the decoder reads the start token and copies it.

# %%
copier, copier_history = train_reverser("no shift")
copier_exact, copier_gen = exact_match(copier)
copier_honest = float(copier(test["input_ids"], test["attention_mask"], labels=test["labels"]).loss)
print(f"no shift: last training loss {copier_history[-1]:.4f}; exactly reversed {copier_exact:.0%}; "
      f"its loss with the right shift {copier_honest:.2f}")
print("  source", held_out[0][0], "-> generated", copier_gen[0].tolist())

plt.figure(figsize=(7, 3.5))
plt.semilogy(right_history, label=f"right (held-out exact {right_exact:.0%})")
plt.semilogy(padder_history, label=f"(a) pad labels (exact {padder_exact:.0%})")
plt.semilogy(copier_history, label=f"(b) no shift (exact {copier_exact:.0%})")
plt.xlabel("training step")
plt.ylabel("training loss (nats, log scale)")
plt.title("a training loss near 0 can mean a model that cannot generate")
plt.legend(fontsize=8)
plt.show()

# %% [markdown]
# The no-shift run ends at a training loss of 0.0011, far below the right run's 0.028, and reverses
# 0% of the held-out sources: fed the start token, it outputs the start token again, forever (it never
# learned to produce the end token either). Scored with the right shift, its loss is 7.86, worse than
# the uniform guess $\log V = 2.7726$. A training loss that falls much faster than expected is the
# usual symptom: check `decoder_input_ids[:, 0]` is the start token and `decoder_input_ids[:, 1:]`
# equals `labels[:, :-1]`.
#
# ### (c) A different start token at generation time
#
# The decoder learns what the start token *means*: "nothing generated yet, predict the first
# token". `generate` starts every sequence with `decoder_start_token_id` from the generation config;
# if that is not the id the labels were shifted with in training (a BERT bert2bert trained with
# `[CLS]` as start and generated with `[SEP]` or `bos_token_id`, say), position 0 sees an input it was
# never trained on. And with no start token set at all, the model cannot make decoder inputs from labels.
#
# **Predict, then run:** the right model reverses nearly every held-out source when it starts from
# token 2. What fraction will it get right starting from the pad token 0, or from an ordinary token 3?

# %%
for start in (START, PAD, 3):
    fraction, gen = exact_match(right, decoder_start_token_id=start)
    print(f"start token {start}: exactly reversed {fraction:.0%}; first output {gen[0].tolist()}")

no_start = mbg.EncoderDecoderModel(mbg.EncoderDecoderConfig(part, part, pad_token_id=PAD), seed=0)
try:
    no_start(test["input_ids"], test["attention_mask"], labels=test["labels"])
except ValueError as exc:
    print("with no decoder_start_token_id:", exc)

# %% [markdown]
# Started from token 2, the model reverses 100%. The pad token 0 happens to do little harm here
# (96%): at the first step this model leans on the source. The ordinary token 3 ruins it, 5%: at
# position 0 the model now reads an input that, in training, only ever meant "the previous output was 3". How much a wrong start
# hurts depends on the model; the safe rule is to set `decoder_start_token_id` once, in the config,
# before training, and to generate with the same one. Without one, minibertgen refuses to shift the
# labels, with the message above; transformers 4.57.6's `shift_tokens_right` raises a ValueError too.
#
# A related trap: `BertGenerationDecoder` used **alone** (a decoder-only language model) scores
# `logits[:, t]` against `labels[:, t + 1]`, shifting inside its loss, as every causal LM in
# transformers does; `EncoderDecoderModel` does not, because it shifted the inputs already. Passing
# pre-shifted labels to the one, or unshifted inputs to the other, is the same off-by-one mistake.
#
# ## Exercise 1: the right shift
#
# Write `my_shift_right(labels, pad_token_id, decoder_start_token_id)`: labels $(B, T)$ with -100 on
# ignored positions, return the decoder inputs $(B, T)$, without writing into `labels`.
# `minibertgen.exercises.check_shift_right` grades it on random batches (random pad and start ids).

# %%
from minibertgen.exercises import check_masked_loss, check_shift_right


def my_shift_right(labels, pad_token_id, decoder_start_token_id):
    raise NotImplementedError("your code here")


try:
    check_shift_right(my_shift_right)
except NotImplementedError:
    print("Not written yet: fill in my_shift_right above, then run this cell again.")

# %% [markdown]
# ## Exercise 2: the masked mean cross-entropy
#
# Write `my_masked_loss(logits, labels)`: logits $(B, T, V)$, labels $(B, T)$ with -100 where
# ignored; return the scalar loss $L$ of the introduction, as `EncoderDecoderModel` computes it
# (which label scores which logits row?). The checker's last batches have logits near 1000: make
# it stable. Use NumPy only, not `ops`.

# %%
def my_masked_loss(logits, labels):
    raise NotImplementedError("your code here")


try:
    check_masked_loss(my_masked_loss)
except NotImplementedError:
    print("Not written yet: fill in my_masked_loss above, then run this cell again.")

# %% [markdown]
# The solutions are the package's own functions (the checkers compare against them), so the
# exercises and the implementation cannot drift apart:

# %%
from minibertgen.exercises import masked_cross_entropy

check_shift_right(shift_tokens_right)
check_masked_loss(masked_cross_entropy)

# %% [markdown]
# ## Summary
#
# - `EncoderDecoderModel(labels=...)` makes `decoder_input_ids` by shifting the labels right behind
#   `decoder_start_token_id` and turning -100 into `pad_token_id`; minibertgen and transformers
#   4.57.6 give the same ids, logits and loss.
# - `logits[:, t]` is scored against `labels[:, t]`, the token after input $t$; the loss is one
#   mean over the counted tokens of the whole batch, not a mean of per-sequence means.
# - Pad instead of -100 in the labels leaves the inputs unchanged but counts padding in the loss:
#   the reported loss mixes in easy pad predictions, and the real tokens are learned less well.
# - Feeding unshifted labels lets the decoder copy its input: the training loss goes to about 0
#   while greedy generation fails completely.
# - Generation must start from the start token the model was trained with.
