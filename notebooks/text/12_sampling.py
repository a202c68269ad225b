# Text twin of notebooks/12_sampling.ipynb (cells only; outputs in the notebook). Written by scripts/notebook_text.py.

# %% [markdown]
# # 12 · Sampling: temperature, top-k, top-p
#
# **You will learn:** how a sampler turns one step's scores into a draw; what temperature, top-k and
# top-p (nucleus) do to the distribution and why the order of the warpers matters; how seeds make
# sampling reproducible; how sampled outputs trade likelihood for diversity against greedy and beam search.
#
# **Prerequisites:** notebooks 06 and 11 (the decoder step and generate; beam search and its toy model).
#
# **Time:** about 30 minutes.
#
# Search (notebook 11) looks for the *most likely* output. **Sampling** draws each token from the
# model's distribution instead, so one source gives many outputs. Before the draw, *warpers* reshape
# the distribution. With scores (logits) $z_1, \dots, z_V$ of the next token:
#
# * **temperature** $T$: $\;p_i(T) = \dfrac{\exp(z_i / T)}{\sum_j \exp(z_j / T)}$. $T < 1$ sharpens,
#   $T > 1$ flattens, $T \to 0$ is greedy, $T = 1$ is the model itself;
# * **top-k**: keep the $k$ highest scores, set the others to $-\infty$ (probability exactly 0);
# * **top-p** (nucleus): sort the probabilities $p_{(1)} \ge p_{(2)} \ge \dots$ and keep the smallest
#   prefix $\{(1), \dots, (m)\}$ with $\sum_{r \le m} p_{(r)} \ge p$; always at least one token;
# * **min-p**: keep tokens with $p_i \ge p_{\min} \cdot \max_j p_j$; **typical**: keep the tokens whose
#   surprisal $-\log p_i$ is closest to the entropy $H = -\sum_j p_j \log p_j$, up to mass $p$.
#
# The draw itself is inverse-CDF on one uniform number from a NumPy Generator: the first token whose
# cumulative probability exceeds $u \sim U[0, 1)$.
#
# **Code path:** `minibertgen/processors.py`: `temperature`, `top_k`, `top_p`, `min_p`, `typical`,
# `epsilon_cutoff`, `eta_cutoff`, `build_processors`, `apply_processors`;
# `minibertgen/generate.py`: `generate(do_sample=True, seed=..., rng=...)`, `make_rngs`, `sample_tokens`, `draw_from`.
#
# **Check:** each warper against transformers 4.57.6's warper class of the same name on the same scores;
# the frequencies of our draws against the warped distribution and against torch's draws.

# %% [markdown]
# We need a model whose distributions are worth sampling: the toy of notebook 11, retrained with its
# recipe (`minibertgen.toys.train_reverser`: 300 steps, a few seconds). It **reverses** 4-6 tokens but stops early: after the second
# output token each further token is dropped with probability 0.4 (then eos, token 1). The order of
# the tokens is certain; *where to stop* is not.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minibertgen as mbg
from minibertgen import processors
from minibertgen.generation_config import resolve_settings
from minibertgen.ops import log_softmax
from minibertgen.toys import EOS, START, PAD, V, reverse_and_stop, train_reverser

model = train_reverser()  # 300 steps of notebook 08's loop (a few seconds), returned in float64

inputs, input_mask, _ = reverse_and_stop(np.random.default_rng(5), n=24)  # 24 fresh test inputs
x, x_mask = inputs[:1], input_mask[:1]
print("source:", x[0][x[0] != PAD].tolist())
print("greedy:", model.generate(x, x_mask, max_new_tokens=8)[0].tolist())

# %% [markdown]
# ## Temperature
#
# Take the step after the prefix `[2, 11, 9]`, where the model must choose between going on (token 9)
# and stopping (eos, token 1). Its scores $z$ are one row of logits; `processors.temperature` divides
# them by $T$, and the softmax of the result is the distribution a sampler draws from.
#
# **Predict, then run:** at $T = 2$, does the probability of eos (token 1) go up or down? And does the
# *ranking* of the tokens change at any temperature?

# %%
prefix = np.array([[START, 11, 9]])
logits = model(x, x_mask, decoder_input_ids=prefix).logits[0, -1:].astype(np.float32)  # (1, V): one step's scores


def probabilities(scores):
    """softmax over the last axis of one row of scores (1, V) -> (V,); -inf scores get exactly 0."""
    p = np.exp(scores - scores.max())
    return (p / p.sum())[0]


temperatures = [0.5, 1.0, 2.0]
best = np.argsort(-logits[0])[:8]  # the 8 best tokens, best first
fig, ax = plt.subplots(figsize=(8, 3))
width = 0.8 / len(temperatures)
for i, t in enumerate(temperatures):
    p = probabilities(processors.temperature(logits, prefix, t))
    entropy = -(p * np.log(p)).sum()
    print(f"T = {t:3.1f}: entropy {entropy:.3f} nats   " + "  ".join(f"{tok}:{p[tok]:.3f}" for tok in best[:4]))
    ax.bar(np.arange(len(best)) + i * width, p[best], width, label=f"T = {t}")
    assert (np.argsort(-p, kind="stable")[:4] == best[:4]).all()  # dividing by T > 0 keeps the order
ax.set_xticks(np.arange(len(best)) + width, [f"token {t}" for t in best])
ax.set_ylabel("probability of the next token")
ax.set_title("one step's distribution after the prefix [2, 11, 9], at three temperatures")
ax.legend()
plt.show()

# %% [markdown]
# Dividing by $T > 0$ never changes the ranking, only how far apart the probabilities are. $T = 0.5$
# sharpens: the best token (here eos) takes most of the mass and the tail almost vanishes. $T = 2$
# moves mass into the tail: the entropy grows and tokens the model barely rates become drawable,
# which is how high temperatures produce strange outputs.
#
# ## Top-k and top-p: cuts of the sorted distribution
#
# Both warpers sort the probabilities and cut the tail. **Top-k** cuts after a fixed number of tokens;
# **top-p** cuts where the cumulative probability first reaches $p$, so it keeps few tokens when the
# model is sure and many when it is not. The picture shows this step's sorted probabilities, their
# cumulative sum, and where each cut falls.

# %%
order = np.argsort(-logits[0], kind="stable")
sorted_p = probabilities(logits)[order]
cumulative = np.cumsum(sorted_p)
cuts = {
    "top_k 3": processors.top_k(logits, prefix, 3),
    "top_p 0.9": processors.top_p(logits, prefix, 0.9),
    "top_p 0.5": processors.top_p(logits, prefix, 0.5),
    "min_p 0.05": processors.min_p(logits, prefix, 0.05),
    "typical 0.9": processors.typical(logits, prefix, 0.9),
}
for name, scores in cuts.items():
    kept = np.flatnonzero(np.isfinite(scores[0]))
    print(f"{name:12s} keeps {len(kept):2d} tokens: {sorted(kept.tolist(), key=lambda t: -logits[0, t])}")
print("cumulative probability of the sorted tokens:", np.round(cumulative[:5].astype(float), 3).tolist(), "...")
n_p = int(np.isfinite(cuts["top_p 0.9"]).sum())
assert cumulative[n_p - 2] < 0.9 <= cumulative[n_p - 1]  # the nucleus is the smallest prefix reaching p

fig, ax = plt.subplots(figsize=(8, 3.4))
ranks = np.arange(1, V + 1)
ax.bar(ranks, sorted_p, color=["C0" if r <= n_p else "lightgray" for r in ranks], label="probability (kept by top_p 0.9: blue)")
ax.plot(ranks, cumulative, "o-", color="C3", label="cumulative probability")
ax.axhline(0.9, color="C3", ls="--", lw=1)
ax.text(V, 0.92, "p = 0.9", ha="right", color="C3")
ax.axvline(3.5, color="C2", ls=":", lw=2, label="top_k 3 cut")
ax.axvline(n_p + 0.5, color="C3", ls="-.", lw=1.5, label="top_p 0.9 cut")
ax.set(xlabel="rank of the token (1 = most probable)", ylabel="probability", xticks=ranks, ylim=(0, 1.05),
       title="top-k and top-p cut the same sorted list in different places")
ax.legend(fontsize=8, loc="center right")
plt.show()

# %% [markdown]
# Top-k 3 keeps three tokens whatever the distribution; top-p 0.9 keeps as many as it takes for the
# cumulative sum to reach 0.9 (see the printed cumulative sums). With $p = 0.5$ the best token's
# probability alone reaches $p$, so the nucleus is that one token: the token that makes the sum cross
# $p$ is always kept. Min-p keeps what is at
# least 5% as likely as the best; typical keeps the tokens whose surprisal is near the entropy, and
# can drop the *best* token when it is far more likely than typical (not here).
#
# ## The order of the warpers matters
#
# `generate` applies the warpers in transformers' order: temperature, top-k, top-p, min-p, typical,
# epsilon, eta (`build_processors` lists the ones a call switches on). Temperature does not change the
# ranking, but it changes the probabilities, and top-p's cut depends on them.
#
# **Predict, then run:** with `temperature=2.0, top_p=0.9`, temperature is applied first. Will the
# nucleus hold more tokens, fewer, or the same as top-p 0.9 applied to the raw scores first (and the
# temperature after)?

# %%
s = resolve_settings(model.config, do_sample=True, temperature=2.0, top_p=0.9, max_new_tokens=8)
steps = processors.build_processors(s)
print("build_processors, in order:", [name for name, _ in steps])
temperature_first = processors.apply_processors(steps, logits, prefix)
top_p_first = processors.temperature(processors.top_p(logits, prefix, 0.9), prefix, 2.0)
for name, scores in (("temperature, then top_p", temperature_first), ("top_p, then temperature", top_p_first)):
    kept = sorted(np.flatnonzero(np.isfinite(scores[0])).tolist(), key=lambda t: -logits[0, t])
    print(f"{name}: {len(kept):2d} tokens kept {kept}")
assert np.isfinite(temperature_first).sum() > np.isfinite(top_p_first).sum()
fig, ax = plt.subplots(figsize=(8, 2.8))
for i, (name, scores) in enumerate((("temperature 2, then top_p 0.9", temperature_first),
                                    ("top_p 0.9, then temperature 2", top_p_first))):
    ax.bar(np.arange(V) + 0.4 * i, probabilities(scores)[order], 0.4, label=name)
ax.set_xticks(np.arange(V) + 0.2, [str(t) for t in order], fontsize=8)
ax.set(xlabel="token (sorted by the model's score)", ylabel="probability drawn from",
       title="the same two warpers, in the two orders")
ax.legend()
plt.show()

# %% [markdown]
# Temperature first flattens the distribution, so the nucleus needs more tokens to reach 0.9 and
# the long tail becomes drawable; top-p first cuts on the model's own distribution, and the
# temperature then only re-spreads the mass among those few survivors. The two orders draw from
# different sets, so an implementation must follow the reference's order to match it.
#
# ## Seeds and reproducibility
#
# Every draw comes from a NumPy Generator: `seed=s` is `rng=np.random.default_rng(s)`; with neither,
# a fresh unseeded one. The same seed gives the same output; `top_k=1` is greedy whatever the seed.

# %%
print("greedy   :", model.generate(x, x_mask, max_new_tokens=8)[0].tolist())
for seed in range(4):
    print(f"seed {seed}   :", model.generate(x, x_mask, max_new_tokens=8, do_sample=True, top_p=0.9, seed=seed)[0].tolist())
again = model.generate(x, x_mask, max_new_tokens=8, do_sample=True, top_p=0.9, seed=0)
assert again.tolist() == model.generate(x, x_mask, max_new_tokens=8, do_sample=True, top_p=0.9, seed=0).tolist()
assert again.tolist() == model.generate(x, x_mask, max_new_tokens=8, do_sample=True, top_p=0.9,
                                        rng=np.random.default_rng(0)).tolist()
assert model.generate(x, x_mask, max_new_tokens=8, do_sample=True, top_k=1, seed=3).tolist() == \
    model.generate(x, x_mask, max_new_tokens=8).tolist()

# 2000 samples of 3 tokens; among those that start with the prefix above, the third token
# should follow softmax(top_p 0.9 scores).
n = 2000
draws = model.generate(np.repeat(x, n, axis=0), np.repeat(x_mask, n, axis=0), max_new_tokens=3, do_sample=True,
                       top_p=0.9, seed=1)
same_prefix = draws[(draws[:, :3] == prefix[0]).all(axis=1), 3]
expected = probabilities(cuts["top_p 0.9"])
observed = np.bincount(same_prefix, minlength=V) / len(same_prefix)
print(f"{len(same_prefix)} of {n} samples start with {prefix[0].tolist()}")
for t in np.flatnonzero(expected > 0):
    print(f"  token {t:2d}: expected {expected[t]:.3f}, observed {observed[t]:.3f}")
distance = 0.5 * np.abs(observed - expected).sum()
print(f"total variation distance {distance:.3f}")
# With m >= 1000 draws the standard error of each frequency is at most 0.5 / sqrt(m) <= 0.016;
# a correct sampler stays well under 0.05 here, a wrong one (e.g. ignoring top_p) does not.
assert len(same_prefix) >= 1000 and distance < 0.05
assert observed[expected == 0].sum() == 0  # nothing outside the nucleus is ever drawn

# %% [markdown]
# ## Diversity against likelihood
#
# Greedy and beam search give one output per source; sampling gives many, and the temperature sets
# how adventurous they are. Over the 24 test inputs we draw 20 samples each at several temperatures
# (no top-k or top-p) and measure two things: how many *distinct* outputs a source gets, and the mean
# log-probability $\log p(y \mid x)$ of a sample under the model itself ($T = 1$, a teacher-forced
# forward pass). Greedy and 4-beam search are the single points at one distinct output.

# %%
def first_eos_mask(seqs):
    """(N, L) generated rows -> (N, L-1) True for the tokens up to and including the first eos."""
    is_eos = seqs[:, 1:] == EOS
    return np.cumsum(is_eos, axis=1) - is_eos < 1  # no eos strictly before


def log_prob(sources, masks, seqs):
    """log p(seq | source) of each row under the model (start token excluded, up to the first eos)."""
    logits = model(sources, masks, decoder_input_ids=seqs[:, :-1]).logits.astype(np.float32)  # (N, L-1, V)
    picked = np.take_along_axis(log_softmax(logits), seqs[:, 1:, None], axis=2)[..., 0]  # (N, L-1)
    return (picked * first_eos_mask(seqs)).sum(axis=1)  # later positions follow eos: not part of the output


def distinct_per_input(seqs, n_samples):
    keep = first_eos_mask(seqs)
    texts = [tuple(row[1:][k].tolist()) for row, k in zip(seqs, keep)]
    return np.mean([len(set(texts[i * n_samples:(i + 1) * n_samples])) for i in range(len(texts) // n_samples)])


n_samples, sample_temperatures = 20, [0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
many, many_mask = np.repeat(inputs, n_samples, axis=0), np.repeat(input_mask, n_samples, axis=0)  # (480, 6)
rows = {}
for t in sample_temperatures:
    seqs = model.generate(many, many_mask, max_new_tokens=8, do_sample=True, temperature=t, top_k=0, seed=0)
    rows[f"T = {t}"] = (distinct_per_input(seqs, n_samples), log_prob(many, many_mask, seqs).mean())
for name, kw in (("greedy", {}), ("beam 4", dict(num_beams=4, length_penalty=0.0))):
    seqs = model.generate(inputs, input_mask, max_new_tokens=8, **kw)
    rows[name] = (1.0, log_prob(inputs, input_mask, seqs).mean())
for name, (distinct, lp) in rows.items():
    print(f"{name:9s}: {distinct:5.2f} distinct outputs of {n_samples} per input, mean log p {lp:7.3f}")
assert rows["beam 4"][1] >= rows["greedy"][1] > rows["T = 1.0"][1] > rows["T = 2.0"][1]

fig, ax = plt.subplots(figsize=(6.5, 4))
sampled = [rows[f"T = {t}"] for t in sample_temperatures]
ax.plot([d for d, _ in sampled], [lp for _, lp in sampled], "o-", label="sampling, 20 per input")
for t, (d, lp) in zip(sample_temperatures, sampled):
    ax.annotate(f"T={t}", (d, lp), textcoords="offset points", xytext=(6, 4), fontsize=8)
for name, marker in (("greedy", "s"), ("beam 4", "*")):
    ax.plot(*rows[name], marker, markersize=10, label=name)
ax.set(xlabel="distinct outputs per input (of 20 samples)", ylabel="mean log p(output | source)",
       title="diversity costs likelihood: 24 inputs")
ax.legend()
plt.show()

# %% [markdown]
# A low temperature gives nearly greedy outputs: few distinct ones, almost greedy's likelihood.
# Raising it buys diversity and pays in likelihood: at high temperatures most samples are distinct
# and far less probable under the model (a wrong token somewhere, or no stop at the right place).
# Beam search sits at the other end: one output, the most likely of all. Which end is right depends
# on the task: translation wants likely, story writing wants varied.
#
# ## Check against the reference
#
# Each warper must equal transformers 4.57.6's class of the same name on the same scores: the same
# tokens set to $-\infty$, the same finite values (float32, at most one rounding). The scores are
# this model's logits at every step of a few outputs, plus random rows with ties.

# %%
import warnings

from scipy import stats

from minibertgen import reference

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when transformers loads
seqs = model.generate(inputs[:6], input_mask[:6], max_new_tokens=6)
step_logits = model(inputs[:6], input_mask[:6], decoder_input_ids=seqs[:, :-1]).logits.astype(np.float32).reshape(-1, V)
ties = np.random.default_rng(0).choice([-2.0, 0.0, 0.5, 1.0], size=(8, V)).astype(np.float32)
scores = np.concatenate([step_logits, ties])  # (N, V)
seq0 = np.zeros((len(scores), 1), dtype=np.int64)
ours = {
    "TemperatureLogitsWarper(0.7)": processors.temperature(scores, seq0, 0.7),
    "TopKLogitsWarper(4)": processors.top_k(scores, seq0, 4),
    "TopPLogitsWarper(0.8)": processors.top_p(scores, seq0, 0.8),
    "MinPLogitsWarper(0.1)": processors.min_p(scores, seq0, 0.1),
    "TypicalLogitsWarper(0.9)": processors.typical(scores, seq0, 0.9),
    "EpsilonLogitsWarper(0.02)": processors.epsilon_cutoff(scores, seq0, 0.02),
    "EtaLogitsWarper(0.02)": processors.eta_cutoff(scores, seq0, 0.02),
}
if reference.oracle_available():
    torch, transformers = reference.load_oracle()
    g = transformers.generation.logits_process
    theirs_warpers = [g.TemperatureLogitsWarper(0.7), g.TopKLogitsWarper(4), g.TopPLogitsWarper(0.8),
                      g.MinPLogitsWarper(0.1), g.TypicalLogitsWarper(0.9), g.EpsilonLogitsWarper(0.02),
                      g.EtaLogitsWarper(0.02)]
    for (name, got), warper in zip(ours.items(), theirs_warpers, strict=True):
        want = warper(torch.from_numpy(seq0), torch.from_numpy(scores.copy())).numpy()
        assert (np.isinf(got) == np.isinf(want)).all(), name
        finite = np.isfinite(want)
        assert np.allclose(got[finite], want[finite], rtol=2.4e-7, atol=0), name  # at most 1 float32 ulp apart
        print(f"{name:27s}: equal on {len(scores)} rows, {int((~finite).sum())} scores cut to -inf")
else:
    print("transformers is not installed: the warpers' comparison with the reference runs where it is "
          "(tests/test_sampling.py records the same)")

# %% [markdown]
# What does **not** match: the draws. transformers samples with `torch.multinomial` on torch's own
# random generator; minibertgen draws inverse-CDF from a NumPy Generator. Seeding both with 0 gives
# different streams, so the sampled tokens differ. What must match is the *distribution*: below, 3000
# first tokens from each library (same model, `temperature=1.5, top_p=0.95`), compared token by token
# and with a chi-square test of the two frequency tables.

# %%
kw = dict(do_sample=True, temperature=1.5, top_p=0.95, max_new_tokens=1)
n = 3000
ours_first = model.generate(np.repeat(x, n, axis=0), np.repeat(x_mask, n, axis=0), seed=0, **kw)[:, 1]
warped = model.generate(x, x_mask, return_dict_in_generate=True, output_scores=True, seed=0, **kw).scores[0][0]
expected = probabilities(warped[None].astype(np.float64))
support = np.flatnonzero(expected > 0)
assert set(ours_first.tolist()) <= set(support.tolist())  # nothing outside the nucleus
if reference.oracle_available():
    hf = reference.hf_model(model.config, mbg.flatten(model.params))
    torch.manual_seed(0)
    with torch.no_grad():
        theirs_first = hf.generate(input_ids=torch.tensor(np.repeat(x, n, axis=0)),
                                   attention_mask=torch.tensor(np.repeat(x_mask, n, axis=0)).long(),
                                   decoder_start_token_id=START, eos_token_id=EOS, pad_token_id=PAD,
                                   **kw).numpy()[:, 1]  # fmt: skip
    same = np.mean(ours_first == theirs_first)
    table = np.array([np.bincount(ours_first, minlength=V)[support], np.bincount(theirs_first, minlength=V)[support]])
    chi2, p_value, dof, _ = stats.chi2_contingency(table)
    print(f"seed 0 on both sides: the same token in {same:.1%} of the {n} draws (not a shared stream)")
    print(f"{'token':>5s} {'expected':>9s} {'ours':>7s} {'torch':>7s}")
    for t, (a, b) in zip(support, table.T):
        print(f"{t:5d} {expected[t]:9.3f} {a / n:7.3f} {b / n:7.3f}")
    print(f"chi-square test, ours against torch's frequencies: chi2 = {chi2:.1f} on {dof} dof, p = {p_value:.2f}")
    assert same < 0.9 and p_value > 0.001
else:
    counts = np.bincount(ours_first, minlength=V)[support]
    chi2 = ((counts - n * expected[support]) ** 2 / (n * expected[support])).sum()
    p_value = stats.chi2.sf(chi2, len(support) - 1)
    print(f"transformers is not installed: ours against the warped distribution, chi-square p = {p_value:.2f}")
    assert p_value > 0.001

# %% [markdown]
# ## Exercise: the nucleus
#
# Write `my_top_p(scores, p)`:
#
# * `scores`: $(N, V)$ float32, one row of next-token scores per sequence; `p`: a float in $[0, 1]$;
# * return an array of the same shape: in each row keep the smallest set of best tokens whose
#   probabilities $\mathrm{softmax}(\text{scores})$ sum to **at least** $p$ (the token that makes the
#   sum reach $p$ is in), and always at least the best token; every other score becomes `-inf`, and
#   kept scores are returned unchanged.
#
# `check_top_p` grades it on hand-made and random rows against `processors.top_p`, and names the
# usual mistakes: dropping the token that crosses $p$, keeping no token at all, summing in index order
# instead of sorted order, summing logits instead of probabilities.

# %%
from minibertgen.exercises import check_top_p


def my_top_p(scores, p):
    raise NotImplementedError("your code here")


try:
    check_top_p(my_top_p)
except NotImplementedError:
    print("Not written yet: fill in my_top_p above, then run this cell again.")

# %% [markdown]
# The solution is the package's `processors.top_p` (transformers' `TopPLogitsWarper`); the checker passes it:

# %%
check_top_p(lambda scores, p: processors.top_p(scores, None, p))

# %% [markdown]
# ## Summary
#
# - Sampling draws each token from $\mathrm{softmax}(z / T)$ after the warpers; one source gives many outputs.
# - Temperature keeps the ranking and changes the spread; top-k and top-p cut the sorted distribution
#   after $k$ tokens or where the cumulative probability reaches $p$ (the crossing token kept).
# - The warpers' order matters: temperature before top-p keeps a different set than after; `generate`
#   follows transformers' order (`build_processors`).
# - A seed (`seed=` or `rng=`) makes a sample reproducible; raising $T$ buys distinct outputs at the
#   cost of likelihood, against greedy and beam search's single most likely one.
# - Each warper equals transformers' class of the same name; the draws differ from torch's (another
#   random stream) but their frequencies agree (chi-square).
