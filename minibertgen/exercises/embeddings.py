"""Exercise on embeddings: word + position rows (positions continuing after a cache), then LayerNorm (notebook 02)."""

from __future__ import annotations

import numpy as np

from ._grading import _call_learner, _exercise_error, _host


def embeddings_after_past(input_ids, p, past_length, eps):
    """The solution: ``stack.embeddings_forward`` (eval mode) with ``position_offset=past_length``.

    input_ids: (B, T) -> (B, T, D) = LN(E_word[input_ids] + E_pos[past_length + arange(T)]).
    """
    from ..config import BertGenerationConfig
    from ..stack import embeddings_forward

    V, D = p["word_embeddings"]["weight"].shape
    cfg = BertGenerationConfig(vocab_size=V, hidden_size=D, num_attention_heads=1,
                               max_position_embeddings=p["position_embeddings"]["weight"].shape[0],
                               layer_norm_eps=eps)  # fmt: skip
    return embeddings_forward(input_ids, p, cfg, position_offset=past_length)[0]


def _layernorm(x, p, eps, ddof=0):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, ddof=ddof, keepdims=True) + eps) * p["weight"] + p["bias"]


def _wrong_variants(ids, p, past_length, eps):
    """What the classic mistakes compute, to name the one a wrong answer made."""
    words = p["word_embeddings"]["weight"][ids]  # (B, T, D)
    table = p["position_embeddings"]["weight"]
    T = ids.shape[1]
    at = table[past_length + np.arange(T)]  # (T, D)
    ln = p["LayerNorm"]
    x = words + at
    return {
        "restart": (_layernorm(words + table[np.arange(T)], ln, eps),
                    f"the new tokens come after {past_length} cached ones: their positions are past_length + "
                    "arange(T), not arange(T)"),
        "no_position": (_layernorm(words, ln, eps), "add the position rows E_pos[past_length + t] before the LayerNorm"),
        "norm_first": (_layernorm(words, ln, eps) + at,
                       "sum first, normalize after: LN(E_word[x] + E_pos[t]), not LN(E_word[x]) + E_pos[t]"),
        "norm_each": (_layernorm(words, ln, eps) + _layernorm(np.broadcast_to(at, words.shape), ln, eps),
                      "one LayerNorm, of the sum: LN(E_word[x] + E_pos[t])"),
        "unbiased": (_layernorm(x, ln, eps, ddof=1),
                     "BERT's LayerNorm uses the biased variance (divide by D: np.var's default ddof=0)"),
        "std_plus_eps": ((x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + eps) * ln["weight"] + ln["bias"],
                         "eps goes inside the square root: sqrt(var + eps), not std + eps"),
        "no_affine": ((x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps),
                      "finish the LayerNorm with its learned scale and shift: * p['LayerNorm']['weight'] + "
                      "p['LayerNorm']['bias']"),
        "no_eps": ((x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True)) * ln["weight"] + ln["bias"],
                   "add eps to the variance inside the square root"),
    }


def check_embeddings(fn, *, n_cases: int = 12, seed: int = 0) -> None:
    """Grade ``fn(input_ids, p, past_length, eps) -> (B, T, D)`` against ``embeddings_after_past``, that is
    ``stack.embeddings_forward`` (eval mode, no dropout) with ``position_offset=past_length``.

    input_ids: (B, T) ints, the T newest tokens of each row, after ``past_length`` tokens already in
    a KV cache (0 for a whole sequence); p: {"word_embeddings": {"weight": (V, D)},
    "position_embeddings": {"weight": (P, D)}, "LayerNorm": {"weight": (D,), "bias": (D,)}}; eps: the
    LayerNorm epsilon. Returns LN(E_word[input_ids] + E_pos[past_length + arange(T)]).
    """
    name = "check_embeddings"
    rng = np.random.default_rng(seed)
    for case in range(n_cases):
        B, T, D = int(rng.integers(1, 4)), int(rng.integers(1, 6)), int(rng.integers(2, 9))
        V, P = int(rng.integers(5, 20)), 16
        past_length = 0 if case % 3 == 0 else int(rng.integers(1, P - T + 1))
        eps = 1e-12 if case % 2 == 0 else 0.5  # a large eps makes where it goes visible
        p = {"word_embeddings": {"weight": rng.normal(size=(V, D)) * 2.0},
             "position_embeddings": {"weight": rng.normal(size=(P, D)) * 2.0},
             "LayerNorm": {"weight": rng.normal(1.0, 0.5, size=D), "bias": rng.normal(size=D)}}  # fmt: skip
        ids = rng.integers(0, V, size=(B, T))
        expected = embeddings_after_past(ids, p, past_length, eps)
        where = f"case {case}: B={B}, T={T}, D={D}, past_length={past_length}, eps={eps}"
        given = {k: {n: a.copy() for n, a in v.items()} for k, v in p.items()}
        got = _host(_call_learner(name, fn, (ids.copy(), given, past_length, eps), where), name, "the result")
        if any(not np.array_equal(given[k][n], p[k][n]) for k in p for n in p[k]):
            raise _exercise_error(name, f"your function changed the parameters it was given ({where})",
                                  "build new arrays; never write into a weight")
        if got.shape != (B, T, D):
            raise _exercise_error(name, f"shape {got.shape}, expected (B, T, D) = {(B, T, D)} ({where})",
                                  "one D-vector per token: E_word[input_ids] is (B, T, D), the position rows "
                                  "(T, D) broadcast over the batch")
        # float64 values of O(1): the same formula agrees to ~1e-15; every mistake below moves it by O(0.01) or more
        if np.allclose(got, expected, rtol=0.0, atol=1e-9):
            continue
        hint = ("h = LN(E_word[input_ids] + E_pos[past_length + arange(T)]), LN over the last axis with the "
                "biased variance and eps inside the square root, then * weight + bias")
        for wrong, why in _wrong_variants(ids, p, past_length, eps).values():
            if np.allclose(got, wrong, rtol=0.0, atol=1e-9):
                hint = why
                break
        worst = np.unravel_index(int(np.argmax(np.abs(got - expected))), expected.shape)
        raise _exercise_error(name, f"your embeddings differ from the package's by up to "
                                    f"{float(np.abs(got - expected).max()):.3g}, at (b, t, d) = "
                                    f"{tuple(int(i) for i in worst)} ({where})", hint)
    print(f"{name}: all {n_cases} random cases match minibertgen.stack.embeddings_forward (with position_offset)")
