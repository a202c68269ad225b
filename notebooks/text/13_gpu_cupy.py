# Text twin of notebooks/13_gpu_cupy.ipynb (cells only; outputs in the notebook). Written by scripts/notebook_text.py.

# %% [markdown]
# # 13 · On the GPU with CuPy: one switch
#
# **You will learn:** how one array-module seam (`xp = get_xp(x)`) lets the same layer code run on
# NumPy and CuPy; how to move a model between backends; what a GPU speeds up and what it does not;
# how to write a function that works on any backend.
#
# **Prerequisites:** notebooks 05 (the full layer) and 11 (generation).
#
# **Time:** about 20 minutes (this machine has no GPU: everything runs on NumPy, with a note; the
# CuPy columns and checks fill in where a GPU is usable).
#
# CuPy is a NumPy look-alike whose arrays live on an NVIDIA GPU. minibertgen runs unchanged on it,
# because no layer ever names its array library. Every op begins with
#
# ```python
# xp = get_xp(x)      # numpy for host arrays, cupy for device arrays: the array carries its backend
# ```
#
# and calls `xp.exp`, `xp.einsum`, ... from there. The few real differences between the two libraries
# live in one file, `minibertgen/backend.py` (the only one that imports cupy): a duplicate-safe
# `scatter_add` for embedding gradients, `erf` for the exact GELU, and a host-side check of token ids
# (CuPy would wrap a bad id silently instead of raising). The backend is chosen at one boundary:
#
# ```python
# mbg.set_backend("cupy")          # new models and loaded weights go to the GPU
# model.to("cupy")                 # move an existing model (and .to("numpy") back)
# mbg.EncoderDecoderModel.from_pretrained(path, backend="cupy")
# ```
#
# Where CuPy or a GPU is missing, asking for `"cupy"` raises `BackendUnavailableError` saying what is
# missing and how to fix it. This notebook catches it and runs everything on NumPy, so it works on
# any machine; the GPU columns fill in where a GPU is usable.
#
# **Code path:** `backend.set_backend`, `backend.get_xp`, `backend.to_device`, `backend.to_numpy`,
# `backend.BackendUnavailableError`, `EncoderDecoderModel.to`, and every op through `get_xp`.
#
# **Check:** the timed model against transformers (or, without it, the committed dumps); on a GPU,
# CuPy's logits and gradients against NumPy's.

# %%
import inspect
import time

import matplotlib.pyplot as plt
import numpy as np

import minibertgen as mbg
from minibertgen import ops
from minibertgen.backend import BackendUnavailableError

print(inspect.getsource(ops.softmax_forward))

# %%
try:
    mbg.set_backend("cupy")
    GPU = True
    print("CuPy and a GPU are usable: new models now live on the GPU")
except BackendUnavailableError as exc:
    GPU = False
    print(f"No GPU here, so this notebook runs on NumPy only.\n  BackendUnavailableError: {exc}")
print("backend for new arrays:", mbg.get_backend())

# %% [markdown]
# ## A model to time
#
# A mid-sized bert2bert: 4 layers per stack, hidden 256, 4 heads, feed-forward 1024, vocabulary 8000;
# a batch of 8 source and target sequences of 64 tokens, float32. The matrix products of one encoder
# layer cost about
#
# $$\underbrace{8 B T D^2}_{Q, K, V, O} + \underbrace{4 B T D F}_{\text{feed-forward}} + \underbrace{4 B T^2 D}_{QK^\top,\ AV}
# \ \text{FLOPs},$$
#
# a decoder layer adds cross-attention, and the LM head costs $2 B T D V$. The backward is about
# twice the forward.
#
# **Predict, then run:** which of the three jobs below runs at the highest GFLOP/s on the CPU, the encoder forward or forward + backward, and why might the bigger job be the faster per FLOP?

# %%
part = mbg.BertGenerationConfig(vocab_size=8000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                                intermediate_size=1024, max_position_embeddings=128)
config = mbg.EncoderDecoderConfig(part, part, decoder_start_token_id=2, pad_token_id=0, eos_token_id=1)
B, S, T, D, F, V, N = 8, 64, 64, 256, 1024, 8000, 4
rng = np.random.default_rng(0)
src = rng.integers(3, V, size=(B, S))
labels = rng.integers(3, V, size=(B, T))
enc_flops = N * (8 * B * S * D**2 + 4 * B * S * D * F + 4 * B * S**2 * D)
dec_flops = N * (8 * B * T * D**2 + 4 * B * T * D * F + 4 * B * T**2 * D + 4 * B * T * D**2 + 4 * B * S * D**2
                 + 4 * B * T * S * D) + 2 * B * T * D * V
print(f"encoder forward {enc_flops / 1e9:.2f} GFLOP; whole forward {(enc_flops + dec_flops) / 1e9:.2f} GFLOP; "
      f"forward + backward ~{3 * (enc_flops + dec_flops) / 1e9:.1f} GFLOP")


def timings(backend, repeats=2):
    """Best-of-`repeats` seconds for three jobs on one backend (the first call warms up caches and kernels)."""
    model = mbg.EncoderDecoderModel(config, seed=0, backend=backend)  # same seed: the same weights on both
    jobs = {
        "encoder forward": lambda: mbg.to_numpy(model.encoder(src)[0, 0, 0]),
        "forward + backward": lambda: mbg.to_numpy(mbg.flatten(model.backward(model(src, labels=labels)))["decoder.lm_head.bias"][0]),
        "beam search (4 beams, 16 tokens, 2 inputs)": lambda: model.generate(src[:2], num_beams=4, max_new_tokens=16),
    }
    result = {}
    for name, job in jobs.items():
        job()  # warm-up
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            job()  # each job ends with a small copy to the host, which waits for the GPU to finish
            best = min(best, time.perf_counter() - start)
        result[name] = best
    return model, result


model_np, times = timings("numpy")
table = {"numpy": times}
if GPU:
    model_gpu, table["cupy"] = timings("cupy")
flops = {"encoder forward": enc_flops, "forward + backward": 3 * (enc_flops + dec_flops)}
print(f"{'job':44s}" + "".join(f"{b:>28s}" for b in table))
for job in times:
    cells = []
    for b in table:
        rate = f" ({flops[job] / table[b][job] / 1e9:5.0f} GFLOP/s)" if job in flops else ""
        cells.append(f"{table[b][job] * 1e3:8.1f} ms{rate}")
    print(f"{job:44s}" + "".join(f"{c:>28s}" for c in cells))

# %%
jobs = list(times)
x = np.arange(len(jobs))
plt.figure(figsize=(8, 3.2))
for i, (b, t) in enumerate(table.items()):
    plt.bar(x + 0.4 * i - 0.2 * (len(table) - 1), [t[j] * 1e3 for j in jobs], width=0.4, label=b)
plt.xticks(x, jobs, fontsize=8)
plt.ylabel("ms (best of 2)")
if GPU:
    plt.yscale("log")  # the two backends can differ by orders of magnitude
plt.title("the same code on " + (" and ".join(table)) + ("" if GPU else " (no GPU usable here)"))
plt.legend()
plt.show()

# %% [markdown]
# On a CPU the matrix products run at tens of GFLOP/s and much of the rest of the time goes to
# element-wise passes (softmax, GELU, LayerNorm); see DESIGN.md §10. A GPU runs both kinds of work
# in parallel over thousands of cores; for generation it helps less, because each step is small and
# the time goes to per-step overhead rather than arithmetic.
#
# ## Check
#
# The numbers we time must be right. Against transformers, on the same weights (float32 on both
# sides); without transformers, the committed reference dumps. On a GPU, CuPy's logits and gradients
# must equal NumPy's up to float32 rounding: the same operations, summed in a different order.

# %%
import warnings

from minibertgen import reference
from minibertgen.testing import assert_close

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice when transformers loads
ids, tgt = src[:2, :16], labels[:2, :12]
ours = model_np(ids, labels=tgt)
if reference.oracle_available():
    theirs = reference.run_encoder_decoder(reference.hf_model(config, mbg.flatten(model_np.params), dtype="float32"),
                                           ids, labels=tgt)
    # float32 on both sides, 8 layers, logits O(1): rounding ~1e-6
    print("numpy vs transformers, logits max abs error:", assert_close(ours.logits, theirs["logits"], atol=1e-4, name="logits"))
else:
    from pathlib import Path

    from minibertgen.verify import run_case

    dump = Path(mbg.__file__).resolve().parents[1] / "tests" / "fixtures" / "reference" / "bert2bert_absolute_tied"
    _, dump_ours, io = run_case(dump, "float32")
    print("transformers is not installed; float32 logits vs the committed dump:",
          assert_close(dump_ours["logits"], io["logits"], atol=2e-5, name="logits"))  # float32 rounding of O(10) logits
if GPU:
    gpu_out = model_gpu(ids, labels=tgt)
    print("type of the GPU logits:", type(gpu_out.logits).__module__, "-> mbg.to_numpy brings them to the host")
    print("cupy vs numpy logits:", assert_close(mbg.to_numpy(gpu_out.logits), ours.logits, atol=1e-4, name="logits"))
    g_np = mbg.flatten(model_np.backward(model_np(ids, labels=tgt)))
    g_gpu = mbg.to_numpy(mbg.flatten(model_gpu.backward(gpu_out)))
    worst = max(assert_close(g_gpu[k], g_np[k], atol=1e-4, rtol=1e-3, name=k) for k in g_np)  # float32 sums
    print(f"cupy vs numpy: all {len(g_np)} gradients agree (worst abs error {worst:.1e})")
    mbg.set_backend("numpy")  # back to the default for anything that follows
else:
    print("no GPU: the CuPy comparison runs where `mbg.set_backend('cupy')` succeeds")

# %% [markdown]
# ## Exercise: a LayerNorm for any backend
#
# Write `my_layer_norm(x, weight, bias, eps)`: BERT's LayerNorm over the last axis,
#
# $$\mathrm{LN}(x) = \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}} \odot w + b, \qquad
# \mu = \frac1D \sum_d x_d, \quad \sigma^2 = \frac1D \sum_d (x_d - \mu)^2 \ \text{(biased)},$$
#
# for `x` $(\dots, D)$ and `weight`, `bias` $(D,)$, returning an array on **the same backend and with the
# same dtype** as `x`. It must not name `np.` for its arithmetic and must not copy to the host: get the
# module with `xp = get_xp(x)` (or use the arrays' own methods and operators).
#
# `check_layer_norm_any_backend` grades it three ways: on NumPy arrays against `ops.layernorm_forward`;
# on a *tracing backend*, arrays that behave like device arrays (NumPy's own functions and
# `np.asarray` refuse them, `.get()` copies to the host and is counted) and whose module `get_xp`
# returns; and on CuPy where a GPU is usable. It names the usual mistakes: `np.` in the code, a copy
# to the host, the unbiased variance, eps outside the square root, the wrong axis, a float64 upcast.
#
# **Predict, then run:** the stub below raises `NotImplementedError`. What happens to a version that
# computes `np.sqrt(var + eps)` with `import numpy as np`: does it pass on NumPy arrays, and on the
# tracing backend?

# %%
from minibertgen.backend import get_xp  # noqa: F401  (for your solution)
from minibertgen.exercises import check_layer_norm_any_backend


def my_layer_norm(x, weight, bias, eps):
    raise NotImplementedError("your code here")


try:
    check_layer_norm_any_backend(my_layer_norm)
except NotImplementedError:
    print("Not written yet: fill in my_layer_norm above, then run this cell again.")

# %% [markdown]
# The solution is the package's `ops.layernorm_forward` (its first result); the checker passes it:

# %%
check_layer_norm_any_backend(lambda x, weight, bias, eps: ops.layernorm_forward(x, {"weight": weight, "bias": bias}, eps)[0])

# %% [markdown]
# ## Summary
#
# - Every op asks its input for its module (`xp = get_xp(x)`), so the same code runs on NumPy and CuPy;
#   `backend.py` is the one file that knows them apart (`scatter_add`, `erf`, the token-id check).
# - The backend is chosen at one boundary (`set_backend`, `model.to`, `backend=` on loading); asking
#   for CuPy where it cannot run raises `BackendUnavailableError`, which this notebook catches.
# - On the CPU the matrix products run at tens of GFLOP/s; a GPU helps training far more than
#   step-by-step generation.
# - The timed model equals transformers (float32); on a GPU, CuPy's logits and gradients equal NumPy's.
# - A function written against the seam passes on a tracing backend that refuses `np.` and host copies.
