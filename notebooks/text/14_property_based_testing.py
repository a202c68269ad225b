# Text twin of notebooks/14_property_based_testing.ipynb (cells only; outputs in the notebook). Written by scripts/notebook_text.py.

# %% [markdown]
# # 14 · Exploring with property-based tests
#
# **You will learn:** how to state a property that must hold for all inputs, how hypothesis finds and
# shrinks a counterexample, how to read one (a claim about attention that padding breaks), and how
# to write a property strong enough to catch real bugs.
#
# **Prerequisites:** notebook 03.
#
# **Time:** about 40 minutes.
#
# An example-based test checks one input you thought of. A **property-based** test states something
# that should hold for *all* inputs,
#
# $$\forall x \in \mathcal{X}:\ P(x),$$
#
# and lets a library, here [hypothesis](https://hypothesis.readthedocs.io), search $\mathcal{X}$ for a
# counterexample. When it finds one it **shrinks** it: it keeps simplifying the failing input
# (smaller numbers, shorter lists, fewer dimensions) as long as the property still fails, and reports
# the simplest failure it can reach. A minimal counterexample usually explains itself.
#
# minibertgen's test suite is full of such properties (`tests/test_properties.py`: padding
# invariance, causality; `tests/test_generate.py`: the KV cache equals recomputation, one beam is
# greedy). Here we use the same tool to *explore*: we state a plausible claim about attention, let
# hypothesis refute it, read the counterexample, and find the property that is actually true.
#
# **Code path:** `attention.attention_forward`, `attention.causal_padding_mask`, `attention.additive_mask`,
# `attention.merge_heads`; the decoder stack `model.BertGenerationDecoder` for the reference check.
#
# **Check:** the counterexample's behaviour is the reference's too: a tiny decoder on the same input
# against transformers (or, without it, the committed decoder dump).

# %%
import matplotlib.pyplot as plt
import numpy as np
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

import minibertgen as mbg
from minibertgen.attention import attention_forward, causal_padding_mask, merge_heads

EXPLORE = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                   suppress_health_check=list(HealthCheck))  # reproducible runs, no example database

# %% [markdown]
# ## A plausible claim
#
# In causal self-attention, query 0 may only look at key 0. Its softmax has a single term, so its
# attention weight is 1 and its output must be exactly its own value vector:
#
# $$\text{claim:}\qquad \text{context}_{b,0} = v_{b,0} \quad\text{for every input, every head, every padding mask.}$$
#
# Inputs: batch size, length, heads, head width, a 0/1 padding mask and the weights (from a seed).
#
# **Predict, then run:** will hypothesis find an input that breaks this claim? If it does, what will
# the failing inputs have in common?

# %%
@st.composite
def causal_attention_inputs(draw):
    B, T = draw(st.integers(1, 3), label="B"), draw(st.integers(1, 6), label="T")
    H, Dh = draw(st.integers(1, 3), label="H"), draw(st.integers(1, 4), label="Dh")
    mask = draw(st.lists(st.lists(st.integers(0, 1), min_size=T, max_size=T), min_size=B, max_size=B), label="mask")
    seed = draw(st.integers(0, 2**16), label="seed")
    return B, T, H, Dh, np.array(mask, dtype=np.float64), seed


def run_attention(B, T, H, Dh, mask, seed):
    rng = np.random.default_rng(seed)
    D = H * Dh
    p = {n: {"weight": rng.normal(size=(D, D)), "bias": rng.normal(size=D)} for n in ("query", "key", "value")}
    x = rng.normal(size=(B, T, D))
    context, cache = attention_forward(x, p, causal_padding_mask(mask, T, np.float64), H)
    return x, p, context, cache


@EXPLORE
@given(causal_attention_inputs())
def test_query_0_outputs_its_own_value(example):
    _, _, context, cache = run_attention(*example)
    own_value = merge_heads(cache["v"])[:, 0]  # (B, D)
    assert np.allclose(context[:, 0], own_value, atol=1e-12), "query 0's output is not its own value"


try:
    test_query_0_outputs_its_own_value()
    print("the claim held on every example")
except AssertionError as exc:
    print("hypothesis refuted the claim:")
    for note in getattr(exc, "__notes__", []):
        print("  ", note)

# %% [markdown]
# ## Shrinking, step by step
#
# `hypothesis.find` returns the simplest example that satisfies a condition (here: "breaks the
# claim"). Recording every failing input it meets shows the shrinker at work: it first stumbles on
# some large, messy failure, then simplifies it step by step.

# %%
failures = []


def breaks_the_claim(example):
    _, _, context, cache = run_attention(*example)
    broken = not np.allclose(context[:, 0], merge_heads(cache["v"])[:, 0], atol=1e-12)
    if broken:
        failures.append(example)
    return broken


minimal = find(causal_attention_inputs(), breaks_the_claim, settings=EXPLORE)
B, T, H, Dh, mask, seed = minimal
print(f"first failure found: B={failures[0][0]}, T={failures[0][1]}, H={failures[0][2]}, Dh={failures[0][3]}, "
      f"mask={failures[0][4].astype(int).tolist()}, seed={failures[0][5]}")
print(f"after shrinking     : B={B}, T={T}, H={H}, Dh={Dh}, mask={mask.astype(int).tolist()}, seed={seed} "
      f"({len(failures)} failing inputs seen)")

size = [ex[0] * ex[1] + ex[2] * ex[3] + int(ex[4].sum()) for ex in failures]
plt.figure(figsize=(7, 3))
plt.plot(size, "o-", ms=3)
plt.xlabel("failing input number (in the order hypothesis met them)")
plt.ylabel("size: B*T + H*Dh + ones in mask")
plt.title("the shrinker simplifies the counterexample")
plt.show()

# %% [markdown]
# The minimal counterexample is one sequence of two tokens, all padding. Its essential feature: the
# **first token is padding**, as in a left-padded batch. A slightly richer case of the same failure,
# the left-padded sequence with mask $[0, 1, 1]$.
#
# **Predict, then run:** which keys may query 0 see here, and what will its row of attention
# probabilities be?

# %%
example = (1, 3, 1, 1, np.array([[0.0, 1.0, 1.0]]), 0)
assert breaks_the_claim(example)
_, _, context, cache = run_attention(*example)
probs = cache["probs"][0, 0]  # (T, T)
keep = causal_padding_mask(example[4], 3, np.float64)[0, 0] == 0
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
im = axes[0].imshow(keep, cmap="Greens", vmin=-0.3, vmax=1.3)
bar = fig.colorbar(im, ax=axes[0], ticks=[0, 1], shrink=0.8)
bar.set_ticklabels(["hidden", "visible"])
axes[0].set(title="keys query i may see (green)", xlabel="key j", ylabel="query i")
im = axes[1].imshow(probs, cmap="Blues", vmin=0, vmax=1)
fig.colorbar(im, ax=axes[1], shrink=0.8, label="probability")
for (i, j), v in np.ndenumerate(probs):
    axes[1].text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v > 0.6 else "black")
axes[1].set(title="attention probabilities", xlabel="key j", ylabel="query i")
for ax in axes:
    ax.set_xticks(range(3))
    ax.set_yticks(range(3))
fig.tight_layout()
plt.show()
print("additive mask of query 0:", causal_padding_mask(example[4], 3, np.float64)[0, 0, 0])

# %% [markdown]
# Query 0's own key is padding and key 1 is in its future, so **every** key is masked: all its
# scores equal $\text{finfo.min}$, and the softmax of equal numbers is uniform. Query 0 then averages
# *all* values, future ones included. This is deliberate: it is what transformers does (notebook 03
# explains why $\text{finfo.min}$ rather than $-\infty$, which would give NaN), and it is harmless,
# because a padded position's output is never used: its label is $-100$ in the loss, and nothing
# reads it downstream. The claim was true only for the cases we had in mind.
#
# ## The true properties
#
# Stated carefully, with the padding in view. For every **real** query $i$ (mask 1), the output
# depends only on real keys at positions $\le i$: changing the input anywhere else, at padding or
# in the future, leaves it unchanged. And when token 0 is real, query 0 does output its own value.

# %%
@EXPLORE
@given(causal_attention_inputs(), st.integers(0, 2**16))
def test_real_queries_see_only_real_past_keys(example, noise_seed):
    B, T, H, Dh, mask, seed = example
    x, p, context, _ = run_attention(*example)
    for b in range(B):
        for i in range(T):
            if mask[b, i] == 0:
                continue  # a padded query: its output is unused (and may average everything)
            hidden = np.ones(T, dtype=bool)
            hidden[: i + 1] = mask[b, : i + 1] == 0  # future keys, and padded past keys
            changed = x.copy()
            changed[b, hidden] += np.random.default_rng(noise_seed).normal(size=(int(hidden.sum()), H * Dh))
            other, _ = attention_forward(changed, p, causal_padding_mask(mask, T, np.float64), H)
            # float64, the same operations on the same visible inputs: the masked terms are exactly 0
            assert np.allclose(other[b, i], context[b, i], atol=1e-12), (b, i)


@EXPLORE
@given(causal_attention_inputs())
def test_a_real_first_token_outputs_its_own_value(example):
    B, T, H, Dh, mask, seed = example
    mask[:, 0] = 1.0  # token 0 is real
    _, _, context, cache = run_attention(B, T, H, Dh, mask, seed)
    assert np.allclose(context[:, 0], merge_heads(cache["v"])[:, 0], atol=1e-12)


test_real_queries_see_only_real_past_keys()
test_a_real_first_token_outputs_its_own_value()
print("both properties held on 300 generated examples each")

# %% [markdown]
# ## Check against the reference
#
# The counterexample is the reference's behaviour too. A tiny causal decoder (one layer, one head),
# run by minibertgen and by transformers on a left-padded input, gives the same numbers at *every*
# position, padded ones included; without transformers, the committed decoder dump must match.

# %%
import warnings

from minibertgen import reference
from minibertgen.testing import assert_close

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when transformers loads
cfg = mbg.BertGenerationConfig(vocab_size=12, hidden_size=4, num_hidden_layers=1, num_attention_heads=1,
                               intermediate_size=8, is_decoder=True, initializer_range=0.5)
decoder = mbg.BertGenerationDecoder(cfg, seed=0, dtype="float64")
ids = np.array([[5, 7, 9]])
dec_mask = np.array([[0, 1, 1]])  # left padding: the counterexample's situation
ours = decoder(ids, dec_mask)
if reference.oracle_available():
    theirs = reference.run_decoder(reference.hf_model(cfg, mbg.flatten(decoder.params)), ids, dec_mask)
    for i, (a, b) in enumerate(zip(ours.hidden_states, theirs["hidden_states"])):
        assert_close(a, b, atol=1e-12, name=f"hidden_states[{i}]")  # float64, one layer: rounding only
    print("transformers agrees at every position, padded ones included; max logit error:",
          assert_close(ours.logits, theirs["logits"], atol=1e-12, name="logits"))
else:
    from pathlib import Path

    from minibertgen.verify import run_case

    dump = Path(mbg.__file__).resolve().parents[1] / "tests" / "fixtures" / "reference" / "decoder_absolute_tied"
    _, dump_ours, io = run_case(dump, "float64")
    for name, value in dump_ours.items():
        tol = 5e-6 if name == "loss" else 1e-9  # the reference's decoder loss is computed in float32
        assert_close(value, io[name], atol=tol, name=name)
    print(f"transformers is not installed: the decoder dump's {len(dump_ours)} tensors match")

# %% [markdown]
# ## Exercise: a property that catches bugs
#
# A property is only as good as the bugs it catches. Write `my_softmax_property(softmax, x)`: it
# calls `softmax(x)` on an array `x` that hypothesis draws (`minibertgen.exercises.softmax_inputs()`:
# float64 arrays of one to three axes, with values large enough that $e^x$ alone overflows) and asserts
# what must be true of a softmax over the last axis **for every such x**, without a trusted
# implementation to compare with:
#
# $$p = \operatorname{softmax}(x), \qquad p_{\dots i} = \frac{e^{x_{\dots i}}}{\sum_j e^{x_{\dots j}}}.$$
#
# The checker runs your property under hypothesis, first with `ops.softmax_forward`, where it must
# hold for every drawn `x`, then with softmaxes that have planted bugs, where it must fail on some
# `x` for each. When a bug slips through, the checker names it. Mind floating point: a probability
# can underflow to exactly 0.0, and a sum of floats is rarely exactly 1.

# %%
from minibertgen.exercises import check_softmax_property


def my_softmax_property(softmax, x):
    raise NotImplementedError("your code here")


try:
    check_softmax_property(my_softmax_property)
except NotImplementedError:
    print("Not written yet: fill in my_softmax_property above, then run this cell again.")

# %% [markdown]
# How the checker answers a property that is true but too weak: checking only that rows sum to 1
# catches some of the bugs, not all.

# %%
def rows_sum_to_one(softmax, x):  # true of every softmax, and too weak
    assert np.allclose(softmax(x).sum(axis=-1), 1.0)


try:
    check_softmax_property(rows_sum_to_one)
except AssertionError as exc:
    print(exc)

# %% [markdown]
# The solution, `minibertgen.exercises.softmax_property`, holds for the package's softmax and catches every planted bug:

# %%
from minibertgen.exercises import softmax_property  # the solution

check_softmax_property(softmax_property)

# %% [markdown]
# ## Summary
#
# * A property-based test states what must hold for all inputs; hypothesis searches for a
#   counterexample and shrinks it to a minimal one, which usually explains itself.
# * The plausible claim "query 0 outputs its own value" is false when token 0 is padding: every key
#   is masked, the softmax of equal scores is uniform, and query 0 averages all values, exactly as
#   the reference does (harmlessly: a padded position's output is never used).
# * The true properties keep the padding in view: a real query depends only on the real keys at or
#   before it, and a real first token outputs its own value.
# * A good property pins behaviour down without an oracle (shape, finiteness, sums, order, dependence
#   on the input) and is judged by the bugs it catches.
