"""minibertgen vs transformers + torch on the CPU: the same bert2bert, the same inputs, the same threads.

    python benchmarks/bench_cpu.py --quick          # the main table, 3 repeats: under 5 minutes on 2 cores
    python benchmarks/bench_cpu.py                  # the full run that BENCHMARKS.md records (+ scaling rows)
    python benchmarks/bench_cpu.py --rows encoder,beam1 --threads 2

Both sides run the real MiniLM bert2bert (``weights/minilm-l6``; ``minibertgen fetch minilm-l6``):
ours warm-started with ``EncoderDecoderModel.from_encoder_decoder_pretrained``, saved with
``save_pretrained`` into a temporary folder, and transformers' ``EncoderDecoderModel`` loaded from
that folder, so the two hold identical float32 weights. Each row times the two sides alternately
(ours, torch, torch, ours, ...: slow drifts of a shared machine hit both), after one untimed warm-up
each, and reports medians and the ratio ours/torch (below 1: we are faster).

Rows (``--rows``, comma-separated; default all):

- ``encoder``  encoder forward, batch 8 x 128 tokens (torch under ``inference_mode``);
- ``fwdbwd``   forward + backward with labels, batch 8, source 128, target 32, no dropout;
- ``train``    a full training step with dropout 0.1: forward, backward, clip to norm 1, AdamW
               (ours: ``model.backward``, ``clip_grad_norm``, ``AdamW.step``; torch:
               ``loss.backward``, ``clip_grad_norm_``, ``optimizer.step``);
- ``beam1``, ``beam8``  beam search, 4 beams, exactly 32 new tokens (``min_new_tokens=32``),
               batch 1 and batch 8, sources of 128 tokens;
- ``memory``   peak RSS of two training steps, each side in its own fresh process;
- ``gflops``   matmul FLOPs of the training step / its median time, against this machine's float32
               matmul peak measured here with NumPy (best of n = 1024, 1536, 2048);
- ``scale_encoder``, ``scale_beam``, ``scale_batch``  how cost grows: encoder forward at S = 64 ... 512
               with the fitted exponent, beam search time per token at 8 ... 64 new tokens (flat with
               a KV cache), forward + backward at B = 1 ... 8 (half the repeats of the other rows).

Two transformers, one run: the torch columns are transformers 4.57.6 (the oracle, eager attention:
its BertGeneration has no sdpa) timed alternately with ours in this process, and transformers 5.x
with sdpa attention (``.ci/install-transformers5`` puts it in its own folder; ``--transformers5``),
timed in a child process on the same saved model, same inputs and threads. Each row's ratio is
ours / the faster of the two, and the goals (issue 17) are on that ratio.

Floors: each timed row also gets the time of *its matmuls alone* (the same shapes, float32, NumPy's
BLAS, the same threads; ``forward_gemms``, ``beam_gemms``), plus AdamW's passes over the weights at
this machine's copy bandwidth for the training step, and weights + gradients + AdamW's moments for
peak memory. "ours / floor" says how much of a row is spent outside the products no NumPy
implementation can skip (``--no-floors`` leaves them out).

Thread count: torch gets ``torch.set_num_threads(n)`` with n = the number of threads NumPy's BLAS
(OpenBLAS) uses, read through ctypes; ``--threads n`` sets both. Note that NumPy's elementwise ufuncs
are single-threaded whatever n is, while torch's run on n threads.

This file is a measuring script, not part of the package: it imports torch and transformers
(``pip install "minibertgen[oracle]"``) and is never imported by minibertgen.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import minibertgen as mbg  # noqa: E402
from minibertgen.train import AdamW, clip_grad_norm  # noqa: E402

ALL_ROWS = ("encoder", "fwdbwd", "train", "beam1", "beam8", "memory", "gflops", "scale_encoder", "scale_beam",
            "scale_batch")  # fmt: skip
GOALS = {  # ours / the faster transformers, from issue 17 (gflops: fraction of the matmul peak)
    "encoder": ("<=", 0.9), "fwdbwd": ("<=", 1.0), "train": ("<=", 0.9),
    "beam1": ("<=", 0.5), "beam8": ("<=", 0.6), "memory": ("<=", 0.7), "gflops": (">=", 0.6),
}  # fmt: skip
SPECIAL = {"decoder_start_token_id": 101, "pad_token_id": 0, "eos_token_id": 102}  # MiniLM's [CLS], [PAD], [SEP]
LR, WEIGHT_DECAY, MAX_NORM = 1e-4, 0.01, 1.0


# ================================================================ threads


def _openblas():
    """NumPy's OpenBLAS library (ctypes handle and symbol prefix), or None if not found."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.rsplit("/", 1)[-1].lower()})
    for path in paths:
        lib = ctypes.CDLL(path)
        for get, put in (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                         ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
                         ("openblas_get_num_threads", "openblas_set_num_threads")):  # fmt: skip
            if hasattr(lib, get):
                return lib, get, put
    return None


def blas_threads(set_to: int | None = None) -> int | None:
    """The number of threads NumPy's BLAS uses (after setting it to ``set_to`` if given)."""
    np.ones((2, 2), dtype=np.float32) @ np.ones((2, 2), dtype=np.float32)  # make sure BLAS is loaded
    found = _openblas()
    if found is None:
        return None
    lib, get, put = found
    if set_to is not None:
        getattr(lib, put)(ctypes.c_int(set_to))
    return int(getattr(lib, get)())


# ================================================================ timing


def proc_status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB (VmRSS now, VmHWM peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class OtherLoad:
    """How many cores *other* processes kept busy during a stretch of time (/proc/stat minus our
    own CPU time, children included): the benchmark's honesty check on a shared machine."""

    def __enter__(self):
        self.start = self._sample()
        return self

    def __exit__(self, *exc):
        end = self._sample()
        wall, busy, ours = (e - s for e, s in zip(end, self.start, strict=True))
        self.cores = max(0.0, (busy - ours) / wall) if wall > 0 else float("nan")
        return False

    @staticmethod
    def _sample():
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
            busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait
        except (OSError, ValueError):
            busy = float("nan")
        t = os.times()
        return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system


WAIT_IDLE = {"max_s": 0.0, "threshold": 0.3, "busy_starts": 0, "waited_s": 0.0}


def wait_for_quiet() -> None:
    """With ``--wait-idle S``: before a timed call, wait (at most S seconds) until other processes
    use less than 0.3 cores over half a second. Counts the calls that had to start anyway."""
    if WAIT_IDLE["max_s"] <= 0:
        return
    deadline = time.perf_counter() + WAIT_IDLE["max_s"]
    start = time.perf_counter()
    while True:
        with OtherLoad() as load:
            time.sleep(0.5)
        if load.cores < WAIT_IDLE["threshold"]:
            break
        if time.perf_counter() > deadline:
            WAIT_IDLE["busy_starts"] += 1
            break
    WAIT_IDLE["waited_s"] += time.perf_counter() - start


TIME_ONLY = None  # the 5.x child process times only {"torch"}


def alternate(fns: dict, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run each callable ``warmup`` times untimed, then ``repeats`` timed rounds, alternating the
    order every round (A B, B A, ...) so that a machine slowing down or speeding up hits both."""
    names = [name for name in fns if TIME_ONLY is None or name in TIME_ONLY]
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            gc.collect()
            wait_for_quiet()
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def matmul_peak(repeats: int) -> tuple[float, dict]:
    """The best median float32 GFLOP/s of NumPy's ``a @ b`` over n = 1024, 1536, 2048."""
    rng = np.random.default_rng(0)
    by_n = {}
    for n in (1024, 1536, 2048):
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        a @ b
        ts = []
        for _ in range(repeats):
            wait_for_quiet()
            start = time.perf_counter()
            a @ b
            ts.append(time.perf_counter() - start)
        by_n[n] = 2 * n**3 / statistics.median(ts) / 1e9
    return max(by_n.values()), by_n


def torch_matmul_peak(torch, repeats: int) -> float:
    best = 0.0
    for n in (1024, 1536, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        ts = []
        for _ in range(repeats):
            wait_for_quiet()
            start = time.perf_counter()
            a @ b
            ts.append(time.perf_counter() - start)
        best = max(best, 2 * n**3 / statistics.median(ts) / 1e9)
    return best


# ================================================================ FLOPs


def forward_gemms(cfg, B: int, S: int, T: int | None) -> list[tuple[int, int, int, int]]:
    """The matrix products of one forward pass as (count, batch, m, k, n): ``count`` times a
    (batch, m, k) @ (batch, k, n) product. Encoder only when T is None.

    Per encoder layer (N = B S rows): Q, K, V, O (N, D) @ (D, D); the FFN (N, D) @ (D, F) and
    (N, F) @ (F, D); per head, scores (S, Dh) @ (Dh, S) and context (S, S) @ (S, Dh). Per decoder
    layer the same with T rows, plus cross-attention (Q, O on the T rows, K, V on the S memory
    rows, scores T x S); then the LM head (B T, D) @ (D, V).
    """
    enc, dec = cfg.encoder, cfg.decoder
    D, F, H, Ls = enc.hidden_size, enc.intermediate_size, enc.num_attention_heads, enc.num_hidden_layers
    Dh, N = D // H, B * S
    gemms = [(4 * Ls, 1, N, D, D), (Ls, 1, N, D, F), (Ls, 1, N, F, D), (Ls, B * H, S, Dh, S), (Ls, B * H, S, S, Dh)]
    if T is None:
        return gemms
    D, F, H, Ld, V = dec.hidden_size, dec.intermediate_size, dec.num_attention_heads, dec.num_hidden_layers, dec.vocab_size
    Dh, Nt = D // H, B * T
    gemms += [
        (4 * Ld, 1, Nt, D, D), (Ld, B * H, T, Dh, T), (Ld, B * H, T, T, Dh),  # self-attention
        (2 * Ld, 1, Nt, D, D), (2 * Ld, 1, N, D, D), (Ld, B * H, T, Dh, S), (Ld, B * H, T, S, Dh),  # cross-attention
        (Ld, 1, Nt, D, F), (Ld, 1, Nt, F, D), (1, 1, Nt, D, V),  # feed-forward, LM head
    ]  # fmt: skip
    return gemms


def backward_gemms(gemms) -> list[tuple[int, int, int, int, int]]:
    """Each product's backward is two of its size: dX = dY W^T (m, n) @ (n, k), dW = X^T dY (k, m) @ (m, n)."""
    return [g for count, b, m, k, n in gemms for g in ((count, b, m, n, k), (count, b, k, m, n))]


def gemm_flops(gemms) -> float:
    """Multiply-add FLOPs (2 per multiply-accumulate). Elementwise work (softmax, GELU, LayerNorm)
    is not counted: the usual convention, and what "achieved GFLOP/s" compares against the peak."""
    return float(sum(2 * count * b * m * k * n for count, b, m, k, n in gemms))


def forward_flops(cfg, B: int, S: int, T: int | None) -> float:
    return gemm_flops(forward_gemms(cfg, B, S, T))


def train_flops(cfg, B, S, T) -> float:
    """Forward + backward = 3 x forward."""
    gemms = forward_gemms(cfg, B, S, T)
    return gemm_flops(gemms + backward_gemms(gemms))


def beam_gemms(cfg, B: int, S: int, beams: int, new_tokens: int) -> list[tuple[int, int, int, int, int]]:
    """Beam search with a KV cache: the encoder once, each layer's cross K/V once per input, then per
    step the decoder on beams x B rows (self-attention against the cache, cross-attention with each
    input's beams as query rows of one product) and the LM head over the whole vocabulary."""
    dec = cfg.decoder
    D, F, H, Ld, V = dec.hidden_size, dec.intermediate_size, dec.num_attention_heads, dec.num_hidden_layers, dec.vocab_size
    Dh, rows = D // H, beams * B
    gemms = forward_gemms(cfg, B, S, None) + [(2 * Ld, 1, B * S, D, D)]
    for past in range(1, new_tokens + 1):  # the start token, then one key more each step
        gemms += [
            (6 * Ld, 1, rows, D, D), (Ld, rows * H, 1, Dh, past), (Ld, rows * H, 1, past, Dh),
            (Ld, B * H, beams, Dh, S), (Ld, B * H, beams, S, Dh), (Ld, 1, rows, D, F), (Ld, 1, rows, F, D),
            (1, 1, rows, D, V),
        ]  # fmt: skip
    return gemms


# ================================================================ floors: what this machine cannot beat


def time_gemms(gemms, repeats: int = 5) -> float:
    """Seconds NumPy's BLAS needs for these products alone (same shapes, float32, the current
    threads; each distinct shape timed ``repeats`` times into a preallocated output, median x count).
    A row's *floor*: an implementation that calls this BLAS for its matmuls does at least this much."""
    rng = np.random.default_rng(0)
    seconds, cache = 0.0, {}
    for count, b, m, k, n in gemms:
        shape = (b, m, k, n)
        if shape not in cache:
            x = rng.standard_normal((b, m, k), dtype=np.float32)
            w = rng.standard_normal((b, k, n), dtype=np.float32)
            x, w = (x[0], w[0]) if b == 1 else (x, w)
            out = np.empty((m, n) if b == 1 else (b, m, n), dtype=np.float32)
            np.matmul(x, w, out=out)
            ts = []
            for _ in range(repeats):
                start = time.perf_counter()
                np.matmul(x, w, out=out)
                ts.append(time.perf_counter() - start)
            cache[shape] = statistics.median(ts)
        seconds += count * cache[shape]
    return seconds


def memory_bandwidth(repeats: int = 5) -> float:
    """Bytes per second of a large float32 copy (read + write), the best of ``repeats``."""
    a = np.ones(64 * 2**20, dtype=np.float32)  # 256 MiB, far beyond the caches
    b = np.empty_like(a)
    np.copyto(b, a)
    best = min(_timed(lambda: np.copyto(b, a)) for _ in range(repeats))
    return 2 * a.nbytes / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def floors(cfg, n_params: int, bandwidth: float) -> dict[str, tuple[float, str]]:
    """Each timed row's floor in seconds, and what it counts."""
    fwd = forward_gemms(cfg, 8, 128, 32)
    # AdamW reads weights, gradients and both moments and writes weights and moments: 7 float32 passes
    adam = 7 * 4 * n_params / bandwidth
    return {
        "encoder": (time_gemms(forward_gemms(cfg, 8, 128, None)), "its matmuls alone"),
        "fwdbwd": (time_gemms(fwd + backward_gemms(fwd)), "its matmuls alone (backward = 2 per forward matmul)"),
        "train": (time_gemms(fwd + backward_gemms(fwd)) + adam,
                  f"its matmuls alone + AdamW's 7 passes over {n_params / 1e6:.1f} M floats at the copy bandwidth"),
        "beam1": (time_gemms(beam_gemms(cfg, 1, 128, 4, 32)), "its matmuls alone (LM head: weight read per step)"),
        "beam8": (time_gemms(beam_gemms(cfg, 8, 128, 4, 32)), "its matmuls alone (LM head: weight read per step)"),
    }  # fmt: skip


# ================================================================ the two sides


@dataclass
class Sides:
    ours: object
    hf: object
    torch: object
    transformers: object
    folder: str
    attention: str
    attention_note: str
    inputs: dict = field(default_factory=dict)


def load_hf(transformers, folder):
    """transformers' EncoderDecoderModel with its fastest attention: sdpa where supported, else eager."""
    try:
        hf = transformers.EncoderDecoderModel.from_pretrained(folder, attn_implementation="sdpa")
        note = "sdpa"
    except (ValueError, ImportError) as exc:
        hf = transformers.EncoderDecoderModel.from_pretrained(folder, attn_implementation="eager")
        note = f"eager (sdpa refused: {str(exc).split('.')[0]})"
    impl = f"{hf.config.encoder._attn_implementation}/{hf.config.decoder._attn_implementation}"
    return hf, impl, note


def make_inputs(vocab_size: int, seed: int = 0) -> dict:
    """Token ids drawn away from the special ids (< 1000 in the MiniLM vocab); no padding."""
    rng = np.random.default_rng(seed)

    def ids(*shape):
        return rng.integers(1000, vocab_size, shape).astype(np.int64)

    return {"src": ids(8, 128), "labels": ids(8, 32), "beam1": ids(1, 128), "beam8": ids(8, 128)}


def setup(weights: Path | None, folder: str | None = None) -> Sides:
    """Both sides on identical weights: ours warm-started from ``weights`` and saved to a new folder
    that transformers loads; or, given ``folder`` (the 5.x child), both loaded from that folder."""
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    if folder is None:
        ours = mbg.EncoderDecoderModel.from_encoder_decoder_pretrained(weights, weights, **SPECIAL)
        folder = tempfile.mkdtemp(prefix="mbg-bench-")
        ours.save_pretrained(folder)
    else:
        ours = mbg.EncoderDecoderModel.from_pretrained(folder)
    hf, attention, note = load_hf(transformers, folder)
    hf.eval()
    sides = Sides(ours, hf, torch, transformers, folder, attention, note)
    sides.inputs = make_inputs(ours.config.decoder.vocab_size)
    return sides


# ---------------------------------------------------------------- rows


def row_encoder(s: Sides, repeats):
    ids = s.inputs["src"]
    mask = np.ones_like(ids, dtype=np.float32)
    t_ids, t_mask = s.torch.from_numpy(ids), s.torch.ones(ids.shape, dtype=s.torch.long)
    enc = s.ours.encoder

    def ours():
        return enc(ids, attention_mask=mask)

    def torch_side():
        with s.torch.inference_mode():
            return s.hf.encoder(input_ids=t_ids, attention_mask=t_mask).last_hidden_state

    diff = float(np.abs(mbg.to_numpy(ours()) - torch_side().numpy()).max())
    times = alternate({"ours": ours, "torch": torch_side}, repeats)
    flops = forward_flops(s.ours.config, 8, 128, None)
    return times, flops, f"max abs diff of hidden states {diff:.1e}"


def _hf_loss(s: Sides, ids, labels):
    out = s.hf(input_ids=ids, attention_mask=s.torch.ones(ids.shape, dtype=s.torch.long), labels=labels)
    return out.loss


def row_fwdbwd(s: Sides, repeats):
    ids, labels = s.inputs["src"], s.inputs["labels"]
    mask = np.ones_like(ids, dtype=np.float32)
    t_ids, t_labels = s.torch.from_numpy(ids), s.torch.from_numpy(labels)
    s.hf.eval()  # no dropout on either side: equal work, and the losses can be compared
    losses = {}

    def ours():
        out = s.ours(ids, attention_mask=mask, labels=labels)
        s.ours.backward(out)
        losses["ours"] = float(out.loss)

    def torch_side():
        s.hf.zero_grad(set_to_none=True)
        loss = _hf_loss(s, t_ids, t_labels)
        loss.backward()
        losses["torch"] = float(loss)

    times = alternate({"ours": ours, "torch": torch_side}, repeats)
    s.hf.zero_grad(set_to_none=True)
    flops = train_flops(s.ours.config, 8, 128, 32)
    if "ours" not in losses:  # the 5.x child times torch only
        return times, flops, ""
    return times, flops, f"loss ours {losses['ours']:.5f} / torch {losses['torch']:.5f}"


def row_train(s: Sides, repeats):
    """Training steps change the weights: both sides start from the shared weights and are put
    back afterwards (our AdamW returns new arrays, so keeping the old tree is enough)."""
    ids, labels = s.inputs["src"], s.inputs["labels"]
    mask = np.ones_like(ids, dtype=np.float32)
    t_ids, t_labels = s.torch.from_numpy(ids), s.torch.from_numpy(labels)
    saved_params = s.ours.params
    saved_state = {k: v.clone() for k, v in s.hf.state_dict().items()}
    optimizer = AdamW(lr=LR, weight_decay=WEIGHT_DECAY)
    t_optimizer = s.torch.optim.AdamW(s.hf.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    rng = np.random.default_rng(1)
    s.torch.manual_seed(1)
    s.hf.train()  # dropout 0.1, as fine-tuning runs

    def ours():
        out = s.ours(ids, attention_mask=mask, labels=labels, train=True, rng=rng)
        grads = s.ours.backward(out)
        grads, _ = clip_grad_norm(grads, MAX_NORM)
        s.ours.params = optimizer.step(s.ours.params, grads)

    def torch_side():
        t_optimizer.zero_grad(set_to_none=True)
        loss = _hf_loss(s, t_ids, t_labels)
        loss.backward()
        s.torch.nn.utils.clip_grad_norm_(s.hf.parameters(), MAX_NORM)
        t_optimizer.step()

    try:
        times = alternate({"ours": ours, "torch": torch_side}, repeats)
    finally:
        s.ours.params = saved_params
        s.hf.load_state_dict(saved_state)
        s.hf.eval()
        s.hf.zero_grad(set_to_none=True)
    flops = train_flops(s.ours.config, 8, 128, 32)
    return times, flops, "dropout 0.1; AdamW lr 1e-4, wd 0.01; clip 1.0"


def row_beam(s: Sides, repeats, key):
    ids = s.inputs[key]
    mask = np.ones_like(ids, dtype=np.float32)
    t_ids, t_mask = s.torch.from_numpy(ids), s.torch.ones(ids.shape, dtype=s.torch.long)
    kwargs = dict(num_beams=4, max_new_tokens=32, min_new_tokens=32)
    result = {}

    def ours():
        result["ours"] = s.ours.generate(ids, attention_mask=mask, **kwargs)

    def torch_side():
        with s.torch.inference_mode():
            result["torch"] = s.hf.generate(input_ids=t_ids, attention_mask=t_mask, **kwargs).numpy()

    times = alternate({"ours": ours, "torch": torch_side}, repeats)
    if "ours" not in result:  # the 5.x child times torch only
        return times, None, ""
    same = result["ours"].shape == result["torch"].shape and bool((result["ours"] == result["torch"]).all())
    return times, None, f"output {tuple(result['ours'].shape)}, same tokens as torch: {'yes' if same else 'NO'}"


# ---------------------------------------------------------------- scaling: how cost grows


def fitted_exponent(xs, ts) -> float:
    """The slope of log t against log x (least squares): t ~ x^slope."""
    return float(np.polyfit(np.log(xs), np.log(ts), 1)[0])


def scale_encoder(s: Sides, repeats) -> str:
    """Encoder forward at B=8 and S = 64, 128, 256, 512: attention's S^2 term shows at long S."""
    lines, sizes, ours_t, torch_t = [], (64, 128, 256, 512), [], []
    rng = np.random.default_rng(5)
    for S in sizes:
        ids = rng.integers(1000, s.ours.config.encoder.vocab_size, (8, S)).astype(np.int64)
        t_ids = s.torch.from_numpy(ids)

        def ours(ids=ids):
            return s.ours.encoder(ids)

        def torch_side(t_ids=t_ids):
            with s.torch.inference_mode():
                return s.hf.encoder(input_ids=t_ids).last_hidden_state

        times = alternate({"ours": ours, "torch": torch_side}, repeats)
        mo, mt = statistics.median(times["ours"]), statistics.median(times["torch"])
        ours_t.append(mo)
        torch_t.append(mt)
        lines.append(f"| S = {S} | {fmt_time(mo)} | {fmt_time(mt)} | {mo / mt:.2f} |")
    lines.append(f"| fitted exponent (t ~ S^a) | a = {fitted_exponent(sizes, ours_t):.2f} | "
                 f"a = {fitted_exponent(sizes, torch_t):.2f} | |")  # fmt: skip
    return "| encoder forward, B=8 | ours | torch | ours/torch |\n|---|---|---|---|\n" + "\n".join(lines) + "\n"


def scale_beam(s: Sides, repeats) -> str:
    """Beam search (4 beams, B=1) time per new token against the number of new tokens: with a KV
    cache each step costs about the same, so the time per token stays flat."""
    ids = s.inputs["beam1"]
    t_ids = s.torch.from_numpy(ids)
    lines = []
    for n in (8, 16, 32, 64):
        kwargs = dict(num_beams=4, max_new_tokens=n, min_new_tokens=n)

        def ours(kwargs=kwargs):
            return s.ours.generate(ids, **kwargs)

        def torch_side(kwargs=kwargs):
            with s.torch.inference_mode():
                return s.hf.generate(input_ids=t_ids, **kwargs)

        times = alternate({"ours": ours, "torch": torch_side}, repeats)
        mo, mt = statistics.median(times["ours"]), statistics.median(times["torch"])
        lines.append(f"| {n} new tokens | {mo / n * 1e3:.1f} ms | {mt / n * 1e3:.1f} ms | {mo / mt:.2f} |")
    return ("| beam search, 4 beams, B=1, S=128: time per new token | ours | torch | ours/torch |\n|---|---|---|---|\n"
            + "\n".join(lines) + "\n")  # fmt: skip


def scale_batch(s: Sides, repeats) -> str:
    """Forward + backward (no dropout) at S=128, T=32 against the batch size: linear in B once the
    matmuls are big enough to run near the BLAS peak."""
    rng = np.random.default_rng(6)
    lines, sizes, ours_t, torch_t = [], (1, 2, 4, 8), [], []
    s.hf.eval()
    for B in sizes:
        V = s.ours.config.decoder.vocab_size
        ids, labels = rng.integers(1000, V, (B, 128)).astype(np.int64), rng.integers(1000, V, (B, 32)).astype(np.int64)
        t_ids, t_labels = s.torch.from_numpy(ids), s.torch.from_numpy(labels)

        def ours(ids=ids, labels=labels):
            s.ours.backward(s.ours(ids, labels=labels))

        def torch_side(t_ids=t_ids, t_labels=t_labels):
            s.hf.zero_grad(set_to_none=True)
            _hf_loss(s, t_ids, t_labels).backward()

        times = alternate({"ours": ours, "torch": torch_side}, repeats)
        mo, mt = statistics.median(times["ours"]), statistics.median(times["torch"])
        ours_t.append(mo)
        torch_t.append(mt)
        lines.append(f"| B = {B} | {fmt_time(mo)} | {fmt_time(mt)} | {mo / mt:.2f} |")
    s.hf.zero_grad(set_to_none=True)
    lines.append(f"| fitted exponent (t ~ B^a) | a = {fitted_exponent(sizes, ours_t):.2f} | "
                 f"a = {fitted_exponent(sizes, torch_t):.2f} | |")  # fmt: skip
    return ("| forward + backward, S=128, T=32 | ours | torch | ours/torch |\n|---|---|---|---|\n"
            + "\n".join(lines) + "\n")  # fmt: skip


SCALING = {"scale_encoder": scale_encoder, "scale_beam": scale_beam, "scale_batch": scale_batch}


# ---------------------------------------------------------------- memory (child processes)


def child_memory(side: str, folder: str, threads: int, steps: int = 2) -> dict:
    """In a fresh process: load the model, reset the peak-RSS counter, run ``steps`` training steps.

    The peak is the kernel's high-water mark of this process's resident memory, VmHWM in
    /proc/self/status: the same number ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` gives in a
    process that was not forked from a big one. Not getrusage itself: on Linux a child started
    with fork + exec inherits in ru_maxrss the RSS its parent had at the fork (here gigabytes of
    both models), and resetting the counter does not clear that inherited part. Writing 5 to
    /proc/self/clear_refs resets VmHWM, so ``peak_step_kb`` is the peak *during the training
    steps* (weights, gradients, optimizer state and activations included); ``peak_process_kb``
    is the peak of the whole process, loading included.
    """
    blas_threads(threads)
    inputs = make_inputs(30522)
    ids, labels = inputs["src"], inputs["labels"]
    if side == "ours":
        model = mbg.EncoderDecoderModel.from_pretrained(folder)
        optimizer, rng = AdamW(lr=LR, weight_decay=WEIGHT_DECAY), np.random.default_rng(1)
        mask = np.ones_like(ids, dtype=np.float32)

        def step():
            out = model(ids, attention_mask=mask, labels=labels, train=True, rng=rng)
            grads, _ = clip_grad_norm(model.backward(out), MAX_NORM)
            model.params = optimizer.step(model.params, grads)
    else:
        import torch
        import transformers

        torch.set_num_threads(threads)
        transformers.logging.set_verbosity_error()
        warnings.filterwarnings("ignore")
        model, _, _ = load_hf(transformers, folder)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        t_ids, t_labels = torch.from_numpy(ids), torch.from_numpy(labels)
        t_mask = torch.ones(ids.shape, dtype=torch.long)

        def step():
            optimizer.zero_grad(set_to_none=True)
            model(input_ids=t_ids, attention_mask=t_mask, labels=t_labels).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
            optimizer.step()

    gc.collect()
    after_load = proc_status_kb("VmRSS")
    peak_load = proc_status_kb("VmHWM")
    reset = True
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        reset = False
    for _ in range(steps):
        step()
    peak = proc_status_kb("VmHWM")
    return {"rss_after_load_kb": after_load, "peak_step_kb": peak, "peak_process_kb": max(peak, peak_load),
            "reset": reset, "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}  # fmt: skip


def row_memory(s: Sides, threads: int):
    results = {}
    for side in ("ours", "torch"):
        cmd = [sys.executable, __file__, "--child-memory", side, "--model-dir", s.folder, "--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"memory child ({side}) failed:\n{proc.stderr[-2000:]}")
        results[side] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


# ---------------------------------------------------------------- transformers 5.x (child process)

TIMED_ROWS = ("encoder", "fwdbwd", "train", "beam1", "beam8")


def run_row(s: Sides, row: str, repeats: int):
    if row == "encoder":
        return row_encoder(s, repeats)
    if row == "fwdbwd":
        return row_fwdbwd(s, repeats)
    if row == "train":
        return row_train(s, repeats)
    return row_beam(s, max(2, repeats // 2) if row == "beam8" else repeats, row)


def child_torch5(folder: str, rows: list[str], threads: int, repeats: int) -> dict:
    """In a process whose PYTHONPATH puts transformers 5.x first: time the torch side of ``rows``
    with sdpa attention on the parent's saved model (ours is loaded only to build the same Sides)."""
    global TIME_ONLY
    TIME_ONLY = {"torch"}
    s = setup(None, folder)
    s.torch.set_num_threads(threads)
    medians = {row: statistics.median(run_row(s, row, repeats)[0]["torch"]) for row in rows}
    return {"transformers": s.transformers.__version__, "attention": s.attention, "note": s.attention_note,
            "medians": medians}  # fmt: skip


def transformers5_folder(option: str | None) -> str | None:
    """--transformers5 DIR, else $MINIBERTGEN_TRANSFORMERS5, else .ci/install-transformers5's default
    folder when it exists; None when there is none (or --transformers5 none)."""
    if option:
        return None if option == "none" else option
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "minibertgen" / "transformers5"
    found = os.environ.get("MINIBERTGEN_TRANSFORMERS5") or (str(default) if (default / "transformers").is_dir() else "")
    return found or None


def run_torch5(s: Sides, folder5: str, rows: list[str], threads: int, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--child-torch5", "--model-dir", s.folder, "--threads", str(threads),
           "--repeats", str(repeats), "--rows", ",".join(rows), "--wait-idle", str(WAIT_IDLE["max_s"])]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (folder5, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"transformers 5.x child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ================================================================ report


def fmt_time(t: float) -> str:
    return f"{t * 1000:.0f} ms" if t < 10 else f"{t:.1f} s"


def verdict(row: str, value: float) -> str:
    op, goal = GOALS[row]
    met = value <= goal if op == "<=" else value >= goal
    return f"{op} {goal:g}: {'met' if met else 'not met'}"


def describe_machine() -> str:
    model = platform.processor() or "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        model = fields.get("Model name", model).strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs"


def package_origin() -> str:
    """Where the minibertgen being timed lives, and its git commit when that is a checkout."""
    where = Path(mbg.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--", "."], capture_output=True,
                               text=True, check=True).stdout.strip()  # fmt: skip
        return f"{where} (commit {commit}{', with uncommitted changes' if dirty else ''})"
    except (OSError, subprocess.CalledProcessError):
        return f"{where} (not a git checkout)"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the main table only, 3 repeats: under 5 minutes on 2 cores")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds per row (default 7, --quick 3)")
    ap.add_argument("--rows", default=None, help=f"comma-separated subset of {','.join(ALL_ROWS)} (default: all; "
                                                 "--quick: all but the scaling rows)")
    ap.add_argument("--threads", type=int, default=None, help="threads for both sides (default: NumPy's BLAS count)")
    ap.add_argument("--weights", default=None, help="MiniLM checkpoint folder (default: weights/minilm-l6)")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                    help="before each timed call wait up to S seconds for other processes to go quiet (shared machines)")
    ap.add_argument("--out", default=None, help="also write the markdown table to this file")
    ap.add_argument("--transformers5", default=None, metavar="DIR",
                    help="a folder holding transformers 5.x (.ci/install-transformers5); its torch side runs with sdpa in a "
                         "child process (default: $MINIBERTGEN_TRANSFORMERS5 or that script's default folder; 'none' skips it)")
    ap.add_argument("--no-floors", action="store_true", help="skip timing each row's matmuls alone (the floors)")
    ap.add_argument("--child-torch5", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-memory", choices=("ours", "torch"), help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child_memory:
        print(json.dumps(child_memory(args.child_memory, args.model_dir, args.threads)))
        return 0
    if args.child_torch5:
        WAIT_IDLE["max_s"] = args.wait_idle
        blas_threads(args.threads)
        print(json.dumps(child_torch5(args.model_dir, args.rows.split(","), args.threads, args.repeats)))
        return 0

    if args.rows is None:
        args.rows = ",".join(r for r in ALL_ROWS if not (args.quick and r in SCALING))
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(rows) - set(ALL_ROWS))
    if unknown:
        ap.error(f"unknown rows {unknown}; choose from {','.join(ALL_ROWS)}")
    repeats = args.repeats or (3 if args.quick else 7)
    WAIT_IDLE["max_s"] = args.wait_idle
    from minibertgen.fetch import find_weights

    weights = Path(args.weights) if args.weights else find_weights("minilm-l6")
    if weights is None or not (Path(weights) / "model.safetensors").exists():
        print("the MiniLM checkpoint is missing: run `minibertgen fetch minilm-l6` first", file=sys.stderr)
        return 1

    threads = blas_threads(args.threads)
    if threads is None:
        threads = args.threads or os.cpu_count()
        print(f"could not read NumPy's BLAS thread count; using {threads} for torch")
    s = setup(Path(weights))
    s.torch.set_num_threads(threads)
    versions = (f"numpy {np.__version__}, torch {s.torch.__version__}, transformers {s.transformers.__version__}, "
                f"python {platform.python_version()}")  # fmt: skip
    print(f"machine: {describe_machine()}; load average at start {load_average()}")
    print(versions)
    print(f"minibertgen {mbg.__version__} from {package_origin()}")
    print(f"threads: NumPy BLAS {threads}, torch.set_num_threads({threads}) -> {s.torch.get_num_threads()}")
    print(f"transformers attention: {s.attention} ({s.attention_note})")
    print(f"repeats per row: {repeats} timed (+1 warm-up), medians")

    timed = [r for r in TIMED_ROWS if r in rows or (r == "train" and "gflops" in rows)]
    folder5, torch5 = transformers5_folder(args.transformers5), None
    if folder5 and timed:
        started = time.perf_counter()
        torch5 = run_torch5(s, folder5, timed, threads, repeats)
        print(f"transformers {torch5['transformers']} ({folder5}), attention {torch5['attention']} ({torch5['note']}): "
              f"timed in a child process in {time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    elif timed:
        print("transformers 5.x: none found (.ci/install-transformers5, or --transformers5 DIR); 4.57.6 only")
    floor_of, bandwidth = {}, None
    if timed and not args.no_floors:
        bandwidth = memory_bandwidth()
        floor_of = floors(s.ours.config, s.ours.num_parameters(), bandwidth)
        print(f"floors: each row's matmuls alone with NumPy's BLAS; copy bandwidth {bandwidth / 1e9:.1f} GB/s")
    print()

    table = []  # (row label, ours, torch, ratio text, goal text, notes)
    train_median = None
    order = [r for r in ALL_ROWS if r in rows]
    if "gflops" in order and "train" not in order:
        order.insert(order.index("gflops"), "train")  # gflops is read off the train row
    labels = {
        "encoder": "encoder forward, B=8 x S=128",
        "fwdbwd": "forward + backward, B=8, S=128, T=32",
        "train": "training step (fwd, bwd, clip, AdamW)",
        "beam1": "beam search, 4 beams, 32 new tokens, B=1",
        "beam8": "beam search, 4 beams, 32 new tokens, B=8",
    }
    flops_of = {}
    scaling_text = []
    for row in order:
        started, n_rows = time.perf_counter(), len(table)
        other = OtherLoad().__enter__()
        if row in SCALING:
            scaling_text.append(SCALING[row](s, max(2, repeats // 2)))
        elif row in ("encoder", "fwdbwd", "train", "beam1", "beam8"):
            if row == "encoder":
                times, flops, note = row_encoder(s, repeats)
            elif row == "fwdbwd":
                times, flops, note = row_fwdbwd(s, repeats)
            elif row == "train":
                times, flops, note = row_train(s, repeats)
            else:
                times, flops, note = row_beam(s, max(2, repeats // 2) if row == "beam8" else repeats, row)
            mo, mt = statistics.median(times["ours"]), statistics.median(times["torch"])
            m5 = torch5["medians"][row] if torch5 else None
            best = min(mt, m5) if m5 else mt
            ratio = mo / best
            floor, floor_note = floor_of.get(row, (None, ""))
            if floor:
                note += f"; floor = {floor_note}: {fmt_time(floor)}, torch {mt / floor:.2f}x it" + (
                    f", 5.x {m5 / floor:.2f}x" if m5 else "")  # fmt: skip
            if flops:
                flops_of[row] = flops
                note += f"; {flops / 1e9:.1f} GFLOP: ours {flops / mo / 1e9:.0f} GFLOP/s, torch {flops / mt / 1e9:.0f} GFLOP/s"
            if row == "train":
                train_median = (mo, mt)
            spread = f"ours {min(times['ours']):.2f}-{max(times['ours']):.2f} s, torch {min(times['torch']):.2f}-{max(times['torch']):.2f} s"
            if row in rows:
                table.append((labels[row], fmt_time(mo), fmt_time(mt), fmt_time(m5) if m5 else "-", f"{ratio:.2f}",
                              f"{mo / floor:.2f}" if floor else "-", verdict(row, ratio), f"{note} (range {spread})"))  # fmt: skip
        elif row == "memory":
            mem = row_memory(s, threads)
            po, pt = mem["ours"]["peak_step_kb"], mem["torch"]["peak_step_kb"]
            note = (f"peak = VmHWM (see child_memory); RSS after load: ours {mem['ours']['rss_after_load_kb'] / 1024:.0f} MiB, torch "
                    f"{mem['torch']['rss_after_load_kb'] / 1024:.0f} MiB; peak incl. loading: ours "
                    f"{mem['ours']['peak_process_kb'] / 1024:.0f} MiB, torch {mem['torch']['peak_process_kb'] / 1024:.0f} MiB")  # fmt: skip
            if not (mem["ours"]["reset"] and mem["torch"]["reset"]):
                note += " (peak counter could not be reset: step peaks include loading)"
            # the floor: weights, gradients and AdamW's two moments (float32), on top of what loading left
            state = 3 * 4 * s.ours.num_parameters() / 1024 + mem["ours"]["rss_after_load_kb"]
            note += f"; floor = RSS after load + gradients + 2 moments = {state / 1024:.0f} MiB (activations come on top)"
            table.append(("peak RSS, 2 training steps (own process)", f"{po / 1024:.0f} MiB", f"{pt / 1024:.0f} MiB", "-",
                          f"{po / pt:.2f}", f"{po / state:.2f}", verdict("memory", po / pt), note))  # fmt: skip
        elif row == "gflops":
            peak, by_n = matmul_peak(repeats)
            t_peak = torch_matmul_peak(s.torch, repeats)
            mo, mt = train_median
            achieved = flops_of["train"] / mo / 1e9
            by = ", ".join(f"n={n}: {g:.0f}" for n, g in by_n.items())
            note = (f"NumPy float32 matmul peak {peak:.0f} GFLOP/s ({by}); torch matmul peak {t_peak:.0f} GFLOP/s; "
                    f"torch's step reaches {flops_of['train'] / mt / 1e9:.0f} GFLOP/s = {flops_of['train'] / mt / 1e9 / peak:.0%}")  # fmt: skip
            table.append(("training step GFLOP/s vs matmul peak", f"{achieved:.0f} GFLOP/s", "-", "-",
                          f"{achieved / peak:.0%} of peak", "-", verdict("gflops", achieved / peak), note))  # fmt: skip
        other.__exit__(None, None, None)
        if len(table) > n_rows:  # this row added a line: say how busy the machine was meanwhile
            *cells, notes = table[-1]
            table[-1] = (*cells, f"{notes}; other processes used {other.cores:.1f} cores meanwhile")
        print(f"  {row}: done in {time.perf_counter() - started:.0f} s (other processes used {other.cores:.1f} cores)", flush=True)

    v5 = f"transformers {torch5['transformers']} {torch5['attention']}" if torch5 else "transformers 5.x (not run)"
    head = (f"| row | ours (minibertgen) | transformers {s.transformers.__version__} {s.attention} | {v5} | "
            "ours / the faster | ours / floor | goal | notes |\n|---|---|---|---|---|---|---|---|\n")  # fmt: skip
    body = "".join(f"| {' | '.join(cells)} |\n" for cells in table)
    text = head + body
    text += (f"\nthreads {threads} both sides; transformers {s.transformers.__version__} attention: {s.attention} "
             f"(all torch rows); load average at end {load_average()}\n")  # fmt: skip
    if WAIT_IDLE["max_s"] > 0:
        text += (f"--wait-idle {WAIT_IDLE['max_s']:g}: waited {WAIT_IDLE['waited_s']:.0f} s in all for a quiet machine; "
                 f"{WAIT_IDLE['busy_starts']} timed calls started while other processes were busy\n")  # fmt: skip
    if scaling_text:
        text += "\nHow cost grows (medians; the same alternation as above):\n\n" + "\n".join(scaling_text)
    print()
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
