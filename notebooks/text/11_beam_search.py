# Text twin of notebooks/11_beam_search.ipynb (cells only; outputs in the notebook). Written by scripts/notebook_text.py.

# %% [markdown]
# # 11 · Beam search
#
# **You will learn:** why greedy decoding can miss the most likely sequence; how beam search keeps the
# $k$ best partial sequences; what `length_penalty` and `early_stopping` do; how to check a search
# token for token against transformers.
#
# **Prerequisites:** notebooks 06 (the decoder step and its KV cache) and 08 (the training loop).
#
# **Time:** about 30 minutes.
#
# A decoder gives, at each step, a distribution over the next token. We want a likely *sequence*:
#
# $$\hat y = \arg\max_y \log p(y \mid x) = \arg\max_y \sum_{t} \log p(y_t \mid y_{<t}, x).$$
#
# Trying every sequence is impossible ($V^T$ of them). **Greedy** search takes the best token at each
# step, which can walk into a dead end: a likely first token may only have unlikely continuations.
# **Beam search** keeps the $k$ best partial sequences (*beams*). At each step it scores all $k \times V$
# one-token extensions by their running sum $s + \log p(\text{token})$ and keeps the $k$ best; a beam
# that emits end-of-sequence (eos) is set aside as a finished **hypothesis** with score
#
# $$\text{score} = \frac{\sum_t \log p(y_t \mid y_{<t}, x)}{L^{\alpha}} \qquad (L = \text{generated length, eos included;}
# \ \alpha = \texttt{length\_penalty}).$$
#
# Log-probabilities are negative, so longer sequences have lower sums; dividing by $L^\alpha$ with
# $\alpha > 0$ makes longer hypotheses competitive ($\alpha = 0$: raw sums). **`early_stopping`** says
# when to stop once $k$ hypotheses are finished: `True` at once; `False` when the best running beam
# cannot beat the worst finished one (judged at the current length); `"never"` only when it provably
# cannot (judged at `max_length`).
#
# **Code path** (`minibertgen/generate.py`): `generate` → `resolve_settings`, `encode_once`,
# `greedy_search` / `beam_search` (steps 1-8, token for token like transformers 4.57.6),
# `decoder_step` (KV cache), `reorder_past` (each beam follows its parent), `process_scores`,
# `_is_done` (early stopping), `_beam_output`.
#
# **Check:** a grid of settings against transformers' `generate` (sequences equal, scores close);
# without it, the 105 runs recorded in `tests/fixtures/generation/absolute/grid.json`.

# %% [markdown]
# To make the distributions worth searching, we first train a small model on a toy task with a
# built-in ambiguity: **reverse** a sequence of 4-6 tokens, but stop early: after the second output
# token, each further token is dropped with probability 0.4 (then eos). The order of tokens is
# certain, *where to stop* is not, which is exactly what length penalty and early stopping act on.
# (`minibertgen/toys.py` holds the task, `reverse_and_stop`, and `train_reverser`: the training loop of
# notebook 08, 300 steps, a few seconds; read them there.)

# %%
import matplotlib.pyplot as plt
import numpy as np

import minibertgen as mbg
from minibertgen.generate import decoder_step, encode_once, reorder_past
from minibertgen.ops import log_softmax
from minibertgen.exercises import beam_step, ranked_continuations
from minibertgen.toys import EOS, START, PAD, V, reverse_and_stop, train_reverser

model = train_reverser()  # 300 steps of notebook 08's loop (a few seconds), returned in float64

inputs, input_mask, _ = reverse_and_stop(np.random.default_rng(5), n=24)  # 24 fresh test inputs
x, x_mask = inputs[:1], input_mask[:1]
print("source:", x[0][x[0] != PAD].tolist())
print("greedy:", model.generate(x, x_mask, max_new_tokens=8)[0].tolist())
beams = model.generate(x, x_mask, max_new_tokens=8, num_beams=4, num_return_sequences=4,
                       return_dict_in_generate=True, output_scores=True)
for seq, score in zip(beams.sequences, beams.sequences_scores):
    print(f"beam  : {seq.tolist()}  score {score:.3f}")

# %% [markdown]
# Sequences start with the start token (2) and end with eos (1). Shorter beam outputs are padded with
# eos, because the pad id is 0 and the reference pads with `pad or eos` (Python truthiness, kept for
# identical outputs); greedy pads with the pad id.
#
# ## A beam tree
#
# To draw the search we run it step by step ourselves, with the package's pieces:
# `encode_once`, `decoder_step`, `reorder_past`, and `exercises.beam_step` (the exercise at the end
# asks you to write it), the rule "keep the $k$ best of
# the $k \times V$ extensions" (exactly step 3 of `beam_search`). To keep the picture simple eos is
# made impossible here (its bias $-10^4$), so every beam runs the full length. The faded nodes are
# the runners-up that were pruned (`exercises.ranked_continuations`, the next $k$ in the same ranking).

# %%
tree_model = mbg.EncoderDecoderModel(model.config, mbg.unflatten({k: v.copy() for k, v in mbg.flatten(model.params).items()}),
                                     dtype="float64")
tree_model.params["decoder"]["lm_head"]["bias"][EOS] -= 1e4  # eos impossible
k, n_new = 3, 5
memory = np.repeat(encode_once(tree_model, x, None), k, axis=0)  # one copy of the encoder output per beam
sums = np.array([0.0] + [-1e9] * (k - 1), dtype=np.float32)  # only beam 0 is live at first
sequences = np.full((k, 1), START)
past, steps = None, []
for _ in range(n_new):
    logits, past = decoder_step(tree_model, sequences[:, -1:], past, memory, None)
    log_probs = log_softmax(logits)  # (k, V) float32
    ranked = ranked_continuations(sums, log_probs, 2 * k)  # the 2k best (beam, token) pairs, best first
    parents, tokens, sums = beam_step(sums, log_probs)  # the k kept: the exercise below
    steps.append(dict(parents=parents, tokens=tokens, sums=sums, pruned=list(zip(*(r[k:] for r in ranked)))))
    sequences = np.concatenate([sequences[parents], tokens[:, None]], axis=1)
    past = reorder_past(past, parents)

best_path, rank = {}, 0  # trace the final best beam back: step -> its rank at that step
for t in range(n_new, 0, -1):
    best_path[t] = rank
    rank = int(steps[t - 1]["parents"][rank])

fig, ax = plt.subplots(figsize=(12, 4.8))
ax.scatter([0], [0], s=600, color="C0", zorder=2)
ax.text(0, 0, str(START), ha="center", va="center", color="white")
for t, st in enumerate(steps, start=1):
    for rank, (b, tok, s) in enumerate(st["pruned"]):
        y = -(k + rank)
        ax.plot([t - 1, t], [-b, y], "--", color="lightgray", zorder=1)
        ax.scatter([t], [y], s=450, color="lightgray", zorder=2)
        ax.text(t, y, str(tok), ha="center", va="center", fontsize=8, color="gray")
    for rank, (b, tok, s) in enumerate(zip(st["parents"], st["tokens"], st["sums"])):
        on_best = best_path.get(t) == rank
        ax.plot([t - 1, t], [-b, -rank], "-", color="C3" if on_best else "C0", lw=3 if on_best else 1.5, zorder=1)
        ax.scatter([t], [-rank], s=600, color="C0", zorder=2)
        ax.text(t, -rank, str(tok), ha="center", va="center", color="white")
        ax.text(t + 0.13, -rank - 0.3, f"{s:.2f}", fontsize=7)
ax.set(xlabel="step", yticks=[], xlim=(-0.4, n_new + 0.5), ylim=(-2 * k + 0.5, 0.6),
       title=f"k = {k}: kept beams (blue, with running sums), pruned runners-up (grey), the final best (red)")
ax.set_xticks(range(n_new + 1))
plt.show()

reference_beams = tree_model.generate(x, num_beams=k, num_return_sequences=k, max_new_tokens=n_new)
print("our step-by-step beams:", sequences.tolist())
print("model.generate        :", reference_beams.tolist())
assert sequences.tolist() == reference_beams.tolist()

# %% [markdown]
# Beams are not lineages that persist: at a step one beam may have two children and another none,
# whenever its extensions are the best. (Ranks are redrawn at each step: the beam at the top is the
# best *so far*.)
#
# ## Length penalty
#
# With eos allowed, hypotheses end at different lengths and $\alpha$ decides among them. Over the 24
# test inputs, the length of the best hypothesis for different `length_penalty` values:
#
# **Predict, then run:** as $\alpha$ grows from $-1$ to $4$, does the mean length of the best hypothesis go up or down? And which of the printed hypotheses wins with $\alpha = 2$?

# %%
def generated_length(seq):
    """Tokens generated up to and including the first eos (the start token excluded)."""
    hits = np.flatnonzero(seq[1:] == EOS)
    return int(hits[0]) + 1 if len(hits) else len(seq) - 1


alphas = [-1.0, 0.0, 0.5, 1.0, 2.0, 4.0]
mean_len = []
for alpha in alphas:
    out = model.generate(inputs, input_mask, num_beams=4, max_new_tokens=8, length_penalty=alpha, early_stopping="never")
    mean_len.append(np.mean([generated_length(s) for s in out]))
plt.figure(figsize=(6, 3))
plt.plot(alphas, mean_len, "o-")
plt.xlabel("length_penalty alpha")
plt.ylabel("mean generated length")
plt.title("best hypothesis, 24 inputs, 4 beams")
plt.show()

one = model.generate(x, x_mask, num_beams=4, num_return_sequences=4, max_new_tokens=8, length_penalty=0.0,
                     return_dict_in_generate=True, output_scores=True)
for seq, raw in zip(one.sequences, one.sequences_scores):
    L = generated_length(seq)
    print(f"L = {L:2d}  sum log p = {raw:7.3f}  score with alpha=2: {raw / L**2:7.3f}  {seq[: L + 1].tolist()}")

# %% [markdown]
# With $\alpha = 0$ the shortest hypotheses win (each token only lowers the sum); raising $\alpha$
# divides longer sums by more and the winner gets longer. For this source the shortest hypothesis is
# so much more likely that even $\alpha = 2$ keeps the printed ranking: dividing by $L^2$ favours
# the length-4 hypotheses, but not enough to overtake it.
#
# ## Early stopping
#
# `early_stopping` trades search effort for quality. We count the decoder steps each setting runs
# (by wrapping `decoder_step`) and how often its best sequence differs from the most thorough
# setting, `"never"`:

# %%
import minibertgen.generate as generate_module

counted = {"steps": 0}
original_step = generate_module.decoder_step


def counting_step(*args):
    counted["steps"] += 1
    return original_step(*args)


generate_module.decoder_step = counting_step
try:
    results = {}
    for es in (True, False, "never"):
        counted["steps"] = 0
        out = model.generate(inputs, input_mask, num_beams=4, max_new_tokens=8, length_penalty=2.0, early_stopping=es)
        results[es] = (counted["steps"], out)
finally:
    generate_module.decoder_step = original_step

def up_to_eos(seq):
    """start ... eos: what was generated. Rows of the outputs are padded to the batch's longest, and
    settings that stop earlier give narrower outputs, so whole rows are not comparable."""
    return seq[: generated_length(seq) + 1].tolist()


best = results["never"][1]
for es, (n, seqs) in results.items():
    differ = sum(up_to_eos(a) != up_to_eos(b) for a, b in zip(seqs, best))
    print(f"early_stopping={es!s:6s}: {n:3d} decoder steps for the batch, best sequence differs from 'never' on {differ} of 24")
plt.figure(figsize=(5, 2.6))
plt.bar([str(e) for e in results], [n for n, _ in results.values()])
plt.ylabel("decoder steps")
plt.xlabel("early_stopping")
plt.show()

# %% [markdown]
# Stopping early costs nothing here: `True` runs 6 decoder steps and `False` 8, against 8 for
# `"never"`, and both return a different best sequence from `"never"` on 0 of the 24 inputs (compared
# up to eos: outputs of settings that stop earlier are narrower arrays, so whole rows would always
# differ). With $\alpha = 2$ a longer hypothesis could still overtake the finished ones, but on these
# inputs none does: for the other 24 the answer was final after 6 steps, and `True` saved a quarter
# of the decoder steps for free.
#
# ## Greedy vs beam
#
# Is beam search's answer more probable? Score every output by its true log-probability under the
# model (a teacher-forced forward pass), over 24 inputs. With $\alpha = 0$ beam search maximizes
# exactly this quantity over the sequences it considers:
#
# **Predict, then run:** on how many of the 24 inputs will 4-beam search find a *less* likely output than greedy?

# %%
def sequence_log_prob(model, source, mask, seq):
    seq = seq[: generated_length(seq) + 1]  # start ... eos
    logits = model(source[None], mask[None], decoder_input_ids=seq[None, :-1]).logits[0].astype(np.float32)
    return float(np.take_along_axis(log_softmax(logits), seq[1:, None], axis=1).sum())


g = model.generate(inputs, input_mask, max_new_tokens=8)
b = model.generate(inputs, input_mask, max_new_tokens=8, num_beams=4, length_penalty=0.0)
lg = np.array([sequence_log_prob(model, s, m, q) for s, m, q in zip(inputs, input_mask, g)])
lb = np.array([sequence_log_prob(model, s, m, q) for s, m, q in zip(inputs, input_mask, b)])
plt.figure(figsize=(4.5, 4.5))
plt.scatter(lg, lb)
lims = [min(lg.min(), lb.min()) - 0.2, max(lg.max(), lb.max()) + 0.2]
plt.plot(lims, lims, "--", color="gray")
plt.xlabel("log p(greedy output)")
plt.ylabel("log p(beam output), 4 beams")
plt.title("the more probable output, by input")
plt.show()
print(f"beam better on {np.sum(lb > lg + 1e-6)}, equal on {np.sum(np.abs(lb - lg) <= 1e-6)}, worse on {np.sum(lb < lg - 1e-6)} of 24")

# %% [markdown]
# Beam search is not guaranteed to beat greedy (it prunes too, just less), but with $\alpha = 0$ it
# usually finds a sequence at least as likely.
#
# ## Check against the reference
#
# transformers' `generate` on the same weights, for a grid of settings: the sequences must be equal
# and the scores (`output_scores=True`) equal up to float32 rounding. Without transformers we replay
# the grid recorded from transformers 4.57.6 in `tests/fixtures/generation/absolute/grid.json`.

# %%
import itertools
import json
import warnings
from pathlib import Path

from minibertgen import reference
from minibertgen.testing import assert_close

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when transformers loads
SCORE_ATOL = 2e-5  # float32 sums of ~10 log-probabilities divided by a length factor: rounding ~1e-6
pairs, pair_mask = inputs[:3], input_mask[:3].astype(int)
if reference.oracle_available():
    torch, _ = reference.load_oracle()
    hf = reference.hf_model(model.config, mbg.flatten(model.params))
    n = 0
    for k, alpha, es in itertools.product([1, 2, 4], [0.0, 1.0, 2.0], [True, False, "never"]):
        kw = dict(num_beams=k, length_penalty=alpha, early_stopping=es, max_new_tokens=10, num_return_sequences=k,
                  decoder_start_token_id=START, eos_token_id=EOS, pad_token_id=PAD)
        ours = model.generate(pairs, pair_mask, **kw, return_dict_in_generate=True, output_scores=True)
        with torch.no_grad():
            theirs = hf.generate(input_ids=torch.tensor(pairs), attention_mask=torch.tensor(pair_mask), do_sample=False,
                                 output_scores=True, return_dict_in_generate=True, **kw)
        assert ours.sequences.tolist() == theirs.sequences.tolist(), kw
        if k > 1:
            assert_close(ours.sequences_scores, theirs.sequences_scores.numpy(), atol=SCORE_ATOL, name=str(kw))
        n += 1
    print(f"{n} settings: sequences identical to transformers' generate, scores within {SCORE_ATOL}")
else:
    folder = Path(mbg.__file__).resolve().parents[1] / "tests" / "fixtures" / "generation" / "absolute"
    grid = json.loads((folder / "grid.json").read_text())
    fixture = mbg.EncoderDecoderModel.from_pretrained(folder, dtype="float64")
    ids = np.array(grid["input_ids"])
    for r in grid["results"]:
        out = fixture.generate(ids, (ids != 0).astype(int), **grid["ids"], **r["settings"], return_dict_in_generate=True, output_scores=True)
        assert out.sequences.tolist() == r["sequences"], r["settings"]
        if r["sequences_scores"] is not None:
            assert_close(out.sequences_scores, r["sequences_scores"], atol=SCORE_ATOL, name=str(r["settings"]))
    print(f"transformers is not installed: all {len(grid['results'])} recorded runs reproduced")

# %% [markdown]
# ## Exercise: one beam step
#
# Write `my_beam_step(sums, log_probs)` for one batch item:
#
# * `sums`: $(k,)$ float32, each beam's running sum of log-probabilities;
# * `log_probs`: $(k, V)$ float32, each beam's next-token log-probabilities;
# * return `(parents, tokens, new_sums)`, each $(k,)$: the $k$ best (beam, token) pairs over all
#   $k \times V$, best first, with `new_sums[i] = sums[parents[i]] + log_probs[parents[i], tokens[i]]`.
#   Ties go to the smaller flat index `beam * V + token`.
#
# `check_beam_step` grades it on random inputs, then runs whole beam searches built on your step and
# compares them with `model.generate(num_beams=k)`.

# %%
from minibertgen.exercises import check_beam_step


def my_beam_step(sums, log_probs):
    raise NotImplementedError("your code here")


try:
    check_beam_step(my_beam_step)
except NotImplementedError:
    print("Not written yet: fill in my_beam_step above, then run this cell again.")

# %% [markdown]
# The solution is `minibertgen.exercises.beam_step`, the rule used above to draw the tree:

# %%
check_beam_step(beam_step)

# %% [markdown]
# ## Summary
#
# - Greedy search takes the best token at each step; beam search keeps the $k$ best partial sequences
#   over all $k \times V$ one-token extensions, and beams are re-ranked (and re-parented) at every step.
# - A finished hypothesis is scored by its sum of log-probabilities divided by $L^\alpha$: raising
#   `length_penalty` favours longer outputs.
# - `early_stopping` trades decoder steps for the chance that a longer hypothesis overtakes the finished ones.
# - With $\alpha = 0$ beam search found an output at least as likely as greedy's on every test input.
# - Sequences and scores equal transformers' `generate` on a grid of settings; sampling comes next, in notebook 12.
