# Text twin of notebooks/09_warm_start_finetune.ipynb (cells only; outputs in the notebook). Written by scripts/notebook_text.py.

# %% [markdown]
# # 09 · Warm-starting bert2bert from BERT, and fine-tuning it
#
# **You will learn:** how a bert2bert is warm-started from one BERT checkpoint (what is loaded, what is new), why a warm-started decoder can ignore its input (the plateau), how copying self-attention into cross-attention avoids it, and how to measure whether a model reads its source (the source gap).
#
# **Prerequisites:** notebooks 06 and 07 (cross-attention, teacher forcing and the loss); 08 helps.
#
# **Time:** about 40 minutes (the training cell runs about 2-3 minutes).
#
# Training a sequence-to-sequence model from scratch needs a lot of data. Rothe, Narayan & Severyn
# (2019) showed that both halves can start from a pre-trained BERT instead (**warm start**):
#
# * the **encoder** is BERT, unchanged (minus the token-type embeddings and the pooler, which
#   BertGeneration does not have);
# * the **decoder** is BERT too, with three changes: its self-attention becomes causal (a mask, no
#   new weights), it gains **cross-attention** blocks (new weights, random), and its LM head reuses
#   the word embeddings (tied) with a new, zero bias.
#
# So most of the model starts trained and only the cross-attention starts from scratch. That is also
# the trap: on a small budget the decoder, already a good language model, learns what the *targets*
# look like long before it starts reading the encoder, and can end writing one plausible sentence for
# every input (the **plateau**; bert2bert users meet it as "the same output for every input"). This chapter
# fine-tunes three models on the same toy task and budget, side by side:
#
# 1. **the paper's warm start**: cross-attention random;
# 2. **warm start, cross-attention copied** from the same layer's self-attention
#    (`cross_attention_init="self_attention"`, the default of `minibertgen demo` and `train`);
# 3. **random init** of the same shapes.
#
# and measures, besides the loss, whether each model reads its input at all.
#
# **Code path:** `EncoderDecoderModel.from_encoder_decoder_pretrained` (`cross_attention_init`,
# `model.copy_self_to_cross_attention`) → `BertGenerationEncoder/Decoder.from_pretrained` →
# `weights.load_checkpoint` (the `LoadReport`); `train.train` → `encode_pairs`, `BatchStream`,
# `EncoderDecoderModel.backward`, `clip_grad_norm`, `AdamW`, `save_training_state`;
# `train.source_dependence`; then `model.generate`.
#
# **Check:** every loaded tensor equals the checkpoint file's; the copied cross-attention equals the
# self-attention it came from; and, with transformers installed, the fine-tuned checkpoint loads in
# `transformers.EncoderDecoderModel` and gives the same logits and the same generated text.

# %%
import os

# One BLAS thread, set before NumPy loads OpenBLAS: the numbers below were measured so. Another thread
# count may sum a matrix product in another order, and 100 training steps carry those last-digit changes
# into the printed losses. Once NumPy is loaded the setting is fixed for this kernel: the assert says so.
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")
assert os.environ["OPENBLAS_NUM_THREADS"] == "1", "restart the kernel with OPENBLAS_NUM_THREADS=1 (or unset)"
import shutil
import tempfile
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np

import minibertgen as mbg
from minibertgen.fetch import require_weights
from minibertgen.train import TrainSettings, encode_pairs, source_dependence, special_ids, train

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice in a notebook without widgets
MINILM = require_weights("minilm-l6")  # missing: stops here, saying to run `minibertgen fetch minilm-l6` (~84 MB)
tok = mbg.BertTokenizer.from_pretrained(MINILM)
ids = special_ids(tok)  # decoder start [CLS], end [SEP], pad [PAD]
start = time.perf_counter()
paper = mbg.EncoderDecoderModel.from_encoder_decoder_pretrained(MINILM, MINILM, **ids)
print(f"loaded in {time.perf_counter() - start:.1f} s: {paper.num_parameters():,} parameters\n")
print(paper.load_report)

# %% [markdown]
# The loading report accounts for every tensor. Loaded: each BERT weight, twice (encoder and decoder
# are separate copies here; `tie_encoder_decoder=True` would share them). New: the 6 decoder layers'
# cross-attention (query, key, value, output dense and LayerNorm) and the LM head's bias. Dropped,
# with the reason: token-type embeddings and pooler (BertGeneration has none) and a buffer.
#
# How much of the model is new?
#
# **Predict, then run:** a cross-attention block has the same shapes as a self-attention block, and each layer also has a feed-forward block about twice as large; the word embeddings (30522 x 384) are about half of BERT. Guess the share of the whole bert2bert's parameters that starts random before running the next cell.

# %%
flat = mbg.flatten(paper.params)
new = sum(flat[k].size for k in paper.load_report.new)
print(f"new (random) parameters: {new:,} of {paper.num_parameters():,} ({new / paper.num_parameters():.1%})")

# %% [markdown]
# ## Check: what was loaded is what is in the file
#
# Every loaded tensor must equal the checkpoint's, byte for byte (`weights.read_safetensors` reads
# the file; nothing is unpickled). The encoder's names map one to one; the decoder's sit under
# `decoder.bert.` and `decoder.lm_head.`.

# %%
from minibertgen.weights import read_safetensors

file = read_safetensors(MINILM / "model.safetensors")
checked = 0
for name in paper.load_report.loaded:
    key = name.split(".", 1)[1].removeprefix("bert.")  # "encoder.X" or "decoder.bert.X" -> "X"
    assert np.array_equal(flat[name], file[key]), name
    checked += 1
print(f"{checked} loaded tensors equal the file's")

# %% [markdown]
# ## The other start: cross-attention copied from self-attention
#
# Self- and cross-attention have the same shapes: both map a hidden state $h$ to a query $q = hW_Q + b_Q$
# and keys and values of the states attended to, $k = sW_K + b_K$, $v = sW_V + b_V$, and then
# $\mathrm{softmax}(qk^\top / \sqrt{d})\,v$ through an output projection and a LayerNorm. Only *what*
# is attended differs: the decoder's own prefix, or the encoder's output $s$. So each layer's
# pre-trained self-attention weights are a usable start for its cross-attention: the query and key
# projections already match a word to related words, and the encoder's states are BERT states like the
# decoder's own. `cross_attention_init="self_attention"` copies them (the query, key, value, output
# dense and LayerNorm of every layer; a copy, so the two train apart), and the report says so.

# %%
copied = mbg.EncoderDecoderModel.from_encoder_decoder_pretrained(MINILM, MINILM, cross_attention_init="self_attention", **ids)
print(str(copied.load_report).splitlines()[-1])
layer = copied.params["decoder"]["bert"]["encoder"]["layer"][0]
for part in ("query", "key", "value"):
    assert np.array_equal(layer["crossattention"]["self"][part]["weight"], layer["attention"]["self"][part]["weight"])
flat_copied = mbg.flatten(copied.params)
differs = [k for k in flat if not np.array_equal(flat[k], flat_copied[k])]
print(f"{len(differs)} tensors differ from the paper's warm start, all of them cross-attention:",
      all(".crossattention." in k for k in differs))

# %% [markdown]
# ## The task, the budget, and the question "does it read its input?"
#
# A toy task keeps this short: **copy** the input sentence. The sentences come from a template,
# "the *adjective* *noun* *verb* the *noun*", with 10 adjectives, 15 nouns and 10 verbs: 400 for
# training, 8 held out. Each model gets 100 optimizer steps of batch 8 (so it sees 800 sentences,
# each about twice); the learning rate rises linearly to $5 \cdot 10^{-4}$ over the first 10 steps
# (warmup) and falls linearly to 0 at the end: about 45 s per model on an idle 2-core machine.
#
# The loss alone cannot tell copying from guessing a plausible sentence. So every 20 steps `train`
# also scores the held-out set with its sources **shuffled** among the examples (each target paired
# with another example's source, `train.shuffle_sources`). The **source gap**
#
# $$\Delta = \mathcal{L}(\text{shuffled sources}) - \mathcal{L}(\text{true sources}) \quad\text{(nats per target token)}$$
#
# is what the input is worth to the model. A model that ignores its input scores the same on both:
# $\Delta = 0$. Before any training:

# %%
rng = np.random.default_rng(0)
adjectives = "old red small happy quiet tall young dark green cold".split()
nouns = "cat dog bird man woman child teacher farmer horse king doctor baby girl boy friend".split()
verbs = "sees likes finds helps follows calls meets watches paints feeds".split()


def sentence():
    return f"the {rng.choice(adjectives)} {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(nouns)}"


train_sentences = [sentence() for _ in range(400)]
held_out = [sentence() for _ in range(8)]
pairs = [(s, s) for s in train_sentences]  # (source, target): copy
eval_pairs = [(s, s) for s in held_out]
models = {
    "paper's warm start": paper,
    "warm start, copied": copied,
    "random init": mbg.EncoderDecoderModel(paper.config, seed=0),  # same shapes, nothing pre-trained
}
held_out_examples = encode_pairs(tok, eval_pairs)
for name, model in models.items():
    d = source_dependence(model, held_out_examples, batch_size=8, pad_token_id=ids["pad_token_id"])
    print(f"{name:19s} step 0: held-out loss {d['heldout_loss']:6.3f}, shuffled sources "
          f"{d['shuffled_source_loss']:6.3f}, gap {d['source_gap']:+.3f}")

# %% [markdown]
# At step 0 all three are near $\ln 30522 \approx 10.3$, a uniform guess over the vocabulary (the
# warm-started LM head is BERT's embeddings with no trained output layer). Now the same budget for
# each:
#
# **Predict, then run:** after 100 steps, which of the three models will have the largest source gap $\Delta$? Will the paper's warm start have a lower or a higher held-out loss than random init, and will its gap be closer to 0 or to the copied start's?

# %%
settings = TrainSettings(steps=100, batch_size=8, lr=5e-4, warmup_steps=10, eval_every=20,
                         max_source_len=16, max_target_len=16, seed=0)
workdir = tempfile.mkdtemp(prefix="minibertgen-07-")
results = {}
for name, model in models.items():
    start = time.perf_counter()
    results[name] = train(model, tok, pairs, f"{workdir}/{name.replace(' ', '-').replace(',', '')}", settings,
                          eval_pairs=eval_pairs, save_checkpoints=(name == "warm start, copied"), progress=False)
    last = results[name].history[-1]
    print(f"{name:19s} {time.perf_counter() - start:5.1f} s: held-out loss {last['eval_loss']:.3f}, "
          f"shuffled sources {last['eval_shuffled_loss']:.3f}, gap {last['eval_shuffled_loss'] - last['eval_loss']:+.3f}")

# %%
fig, ax = plt.subplots(figsize=(7.5, 4))
for (name, result), color in zip(results.items(), ("C1", "C0", "C7")):
    evals = [r for r in result.history if r["eval_loss"] != ""]
    steps = [r["step"] for r in evals]
    ax.plot(steps, [r["eval_loss"] for r in evals], "o-", color=color, label=f"{name}: true sources")
    ax.plot(steps, [r["eval_shuffled_loss"] for r in evals], "x--", color=color, label=f"{name}: shuffled sources")
ax.set(xlabel="optimizer step", ylabel="held-out cross-entropy per token", yscale="log",
       title="copying sentences, same budget: the gap is what the input is worth")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Three different stories on one budget:
#
# * **The paper's warm start** (orange) falls fastest at first, and its two curves lie on top of each
#   other until step 80: $\Delta$ is only 0.42 at the end, against 5.12 for the copied start. Its decoder has learnt the template ("the *adjective* *noun*
#   *verb* the *noun*") as a language model and predicts the words mostly from the prefix, and has only begun to read its input. One way to
#   see why: with random query and key projections, each decoder position attends almost uniformly
#   to the source, so what cross-attention adds is close to an average of the encoder states, nearly
#   the same for every input; lowering the loss through the language model is the easier path, and
#   the gradient that would sharpen the attention stays weak. More steps do not end it quickly
#   (`minibertgen demo --table` measures it on sentence fusion).
# * **The copied start** (blue) reads its source from the first evaluation: its shuffled-source loss
#   *rises* while the true-source loss falls to almost zero. It copies.
# * **Random init** (grey) has learnt the template too, from nothing, and barely reads its source
#   yet ($\Delta$ = 0.04). On this tiny 36-word task it is a matter of steps; on sentence fusion (`minibertgen demo`,
#   200 steps) it is far behind the warm start: exact match 0.06 against 1.00 (README).
#
# The warmup matters as much as the start. Measured on this notebook's data: the copied start with
# no warmup (160 steps at a constant-then-decaying $5 \cdot 10^{-4}$) fell into the plateau as well,
# $\Delta = 0.000$ from step 20 to the end, while 16 warmup steps gave a held-out loss of 0.02 by
# step 80. The first large steps, taken while the LM head is untrained, can teach the decoder the
# template before its cross-attention is of any use; a gentle start leaves it the time.
#
# **Which numbers may vary.** The timings always do (they depend on the machine and its load). The losses and gaps are exact for this NumPy, OpenBLAS build and CPU on one BLAS thread (the first cell pins it): everything is seeded (data, initialisation, batch order, dropout). Another thread count, BLAS build or CPU sums products in another order; after 100 steps the losses then differ in the second or third digit. What does not vary: the paper's start stays on or near the plateau ($\Delta$ a small fraction of the copied start's, none of its outputs its input), the copied start copies, and the transformers check at the end passes.
#
# What that means in text (4-beam search):

# %%
batch = tok(held_out, padding=True)
predictions = {}
for name, result in results.items():
    gen = result.model.generate(batch["input_ids"], batch["attention_mask"], num_beams=4, max_new_tokens=12)
    predictions[name] = tok.batch_decode(gen, skip_special_tokens=True)
    exact = sum(p == s for p, s in zip(predictions[name], held_out))
    print(f"{name}: {exact} of {len(held_out)} copied exactly, {len(set(predictions[name]))} distinct outputs")
    for source, text in list(zip(held_out, predictions[name]))[:4]:
        print(f"   {source!r:36s} -> {text!r}")
# The working model reads its input: (nearly) every held-out sentence copied, every output its own.
# Measured: 8 of 8; one miss is allowed, a model that stops copying has 0 or 1.
copied_right = sum(p == s for p, s in zip(predictions["warm start, copied"], held_out))
assert copied_right >= 7 and len(set(predictions["warm start, copied"])) == len(held_out), predictions
# The plateau: the paper's start writes the template, not its input.
assert sum(p == s for p, s in zip(predictions["paper's warm start"], held_out)) <= 1

# %% [markdown]
# Near the plateau in text: the paper's warm start writes good sentences of the template, 8 distinct outputs
# for eight inputs, none of them its input (a source word here and there: it has just begun to read);
# random init writes 2 distinct outputs; the copied start copies every held-out sentence. The paper's random
# cross-attention does learn eventually on a real task with a real budget (Rothe et al. fine-tune for
# hundreds of thousands of steps); on a laptop budget the copied start is the difference between a
# model that works and one that does not, and the paper's start stays one argument away.
#
# ## Check: the checkpoint is a transformers model
#
# `train` saved the fine-tuned model in transformers' layout (`config.json`,
# `generation_config.json`, `model.safetensors`, plus the optimizer state for resuming). transformers
# 4.57.6 loads it as an `EncoderDecoderModel`; it must give our logits and our generated tokens.

# %%
from minibertgen import reference
from minibertgen.testing import assert_close

finetuned = results["warm start, copied"]
print("checkpoint:", finetuned.checkpoint.replace(workdir, "<tmp>"))
if reference.oracle_available():
    torch, transformers = reference.load_oracle()
    hf = transformers.EncoderDecoderModel.from_pretrained(finetuned.checkpoint).eval()
    input_ids, mask = np.array(batch["input_ids"]), np.array(batch["attention_mask"])
    labels = np.array(tok(held_out, padding=True)["input_ids"])
    ours = finetuned.model(input_ids, mask, labels=labels)
    theirs = reference.run_encoder_decoder(hf, input_ids, mask, labels=labels)
    # float32 on both sides, 12 layers, logits of size ~10: rounding ~1e-5
    print("logits, max abs error:", assert_close(ours.logits, theirs["logits"], atol=2e-4, name="logits"))
    ours_gen = finetuned.model.generate(input_ids, mask, max_new_tokens=10)
    with torch.no_grad():
        hf_gen = hf.generate(input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(mask), max_new_tokens=10).numpy()
    assert ours_gen.tolist() == hf_gen.tolist()
    print("greedy generation: identical tokens from transformers' generate()")
else:
    print("transformers is not installed: the byte-for-byte loading check above is this notebook's check")
shutil.rmtree(workdir)

# %% [markdown]
# ## Exercise: copy self-attention into cross-attention
#
# Write `my_copy_cross_attention(stack)`, the "copied" start of this chapter. `stack` is a decoder's parameter tree (`decoder.params["bert"]`); `stack["encoder"]["layer"]` is the list of its layers, each with
#
# * `"attention"`: the self-attention, `{"self": {"query", "key", "value"}, "output": {"dense", "LayerNorm"}}`, each `{"weight", "bias"}`; a relative-position decoder's `"self"` also holds a `"distance_embedding"`;
# * `"crossattention"`: the same layout, random.
#
# Return a **new** tree in which every layer's cross-attention is a copy of that layer's self-attention ($W_Q, b_Q, W_K, b_K, W_V, b_V$, the output dense and the LayerNorm), as new arrays, so that the two train apart; leave out the `distance_embedding` (cross-attention is always absolute: its queries and keys belong to different sequences); keep everything else, and leave the input tree unchanged.
#
# `minibertgen.exercises.check_copy_cross_attention` grades it on small absolute and relative decoders and says what is wrong (a part not copied, key and value swapped, arrays shared instead of copied, the input edited).

# %%
from minibertgen.exercises import check_copy_cross_attention


def my_copy_cross_attention(stack):
    raise NotImplementedError("your code here")


try:
    check_copy_cross_attention(my_copy_cross_attention)
except NotImplementedError:
    print("Not written yet: fill in my_copy_cross_attention above, then run this cell again.")

# %% [markdown]
# The solution is the package's own `model.copy_self_to_cross_attention` (what `cross_attention_init="self_attention"` calls): the checker compares against it.

# %%
check_copy_cross_attention(mbg.model.copy_self_to_cross_attention)

# %% [markdown]
# ## Summary
#
# * A warm-started bert2bert loads every BERT tensor twice (encoder and decoder) and starts only the cross-attention and the LM head's bias new; the loading report accounts for every tensor, and the loaded ones equal the file's byte for byte.
# * With the paper's random cross-attention, a small budget ends on or near the plateau: the decoder learns the targets as a language model, writes sentences of the template but not its input, and its source gap $\Delta$ stays small (0.42 here, against 5.12 for the copied start).
# * Copying each layer's self-attention into its cross-attention (with a warmup) makes the model read its source from the first evaluation: it copies every held-out sentence.
# * The source gap (held-out loss with shuffled sources minus with the true ones) tells reading from guessing when the loss alone cannot.
# * The fine-tuned checkpoint is a transformers `EncoderDecoderModel`: same logits, same generated tokens.
