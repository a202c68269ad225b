"""Exercises on attention: the causal mask (notebook 03), the KV cache append and one decoder step (06)."""

from __future__ import annotations

import numpy as np

from ._grading import _call_learner, _exercise_error, _host, _tiny_bert2bert


def check_causal_mask(fn, *, n_cases: int = 30, seed: int = 0) -> None:
    """Grade ``fn(attention_mask, query_len, dtype)`` against ``attention.causal_padding_mask``.

    attention_mask: (B, Tk) 0/1 over every key (earlier, cached positions included); the queries are
    the last ``query_len`` = Tq positions, so query i sits at position (Tk - Tq) + i. The result is
    the additive mask (B, 1, Tq, Tk) in ``dtype``: 0 where query i may see key j (j is not after the
    query, and key j is not padding), ``np.finfo(dtype).min`` elsewhere.
    """
    from ..attention import causal_padding_mask

    name = "check_causal_mask"
    rng = np.random.default_rng(seed)
    for case in range(n_cases):
        B, Tk = int(rng.integers(1, 4)), int(rng.integers(1, 9))
        Tq = Tk if case % 2 == 0 else int(rng.integers(1, Tk + 1))  # odd cases: Tk - Tq cached keys
        dtype = np.float64 if case % 3 else np.float32
        mask = (rng.random((B, Tk)) < 0.7).astype(dtype)
        given = mask.copy()
        where = f"B={B}, Tk={Tk}, query_len={Tq}, dtype={np.dtype(dtype).name}"
        got = _host(_call_learner(name, fn, (given, Tq, dtype), where), name, "the result")
        if not np.array_equal(given, mask):
            raise _exercise_error(name, f"your function changed the attention_mask it was given ({where})",
                                  "build a new array; never write into an input")
        if got.shape != (B, 1, Tq, Tk):
            raise _exercise_error(
                name, f"shape {got.shape}, expected (B, 1, Tq, Tk) = {(B, 1, Tq, Tk)} ({where})",
                "one row per query and one column per key; the axis of size 1 broadcasts over the heads",
            )
        if got.dtype != np.dtype(dtype):
            raise _exercise_error(name, f"dtype {got.dtype}, expected {np.dtype(dtype).name} ({where})",
                                  "the mask is added to scores of that dtype: build it with .astype(dtype)")
        if np.isneginf(got).any() or np.isnan(got).any():
            raise _exercise_error(
                name, f"your mask holds -inf or NaN ({where})",
                "use np.finfo(dtype).min, not -inf: a query that may see no key at all would get "
                "softmax(-inf, ..., -inf) = NaN; with finfo.min it gets a uniform row, as the reference",
            )
        expected = np.asarray(causal_padding_mask(mask, Tq, dtype))
        wrong = np.argwhere((got == 0) != (expected == 0))
        if len(wrong):
            b, _, i, j = (int(v) for v in wrong[0])
            past = Tk - Tq
            says = f"hides key {j} from query {i}" if expected[b, 0, i, j] == 0 else f"lets query {i} see key {j}"
            if j > past + i:
                hint = f"key {j} comes after query {i}'s position {past + i}: the causal part hides it"
            elif mask[b, j] == 0:
                hint = f"key {j} is padding in row {b} (attention_mask[{b}, {j}] = 0): it must be hidden too"
            elif past:
                hint = (f"with {past} cached key(s), query {i} sits at position {past} + {i} = {past + i} "
                        "and may see every key up to and including that position")
            else:
                hint = "query i may see key j exactly when j <= i and attention_mask[b, j] == 1"
            raise _exercise_error(
                name, f"in batch row {b}, your mask {says} ({where}); "
                f"attention_mask[{b}] = {mask[b].astype(int).tolist()}", hint,
            )
        if not np.array_equal(got, expected):
            bad = tuple(int(v) for v in np.argwhere(got != expected)[0])
            raise _exercise_error(
                name, f"hidden entries should be exactly {float(np.finfo(dtype).min)!r}, yours has {float(got[bad])!r} "
                f"at {bad} ({where})", "additive mask: 0 where visible, np.finfo(dtype).min where hidden",
            )
    print(f"{name}: all {n_cases} random cases match minibertgen.attention.causal_padding_mask")



def cached_self_attention(x, p, num_heads, past_kv):
    """The solution of notebook 06's first exercise: self-attention of new tokens with a KV cache.

    x: (B, 1, D) the new token's input; p: {"query", "key", "value"} linears; past_kv: {"k", "v"}
    (B, H, Tp, Dh) or None -> context (B, 1, D) and the grown cache {"k", "v"} (B, H, Tp + 1, Dh).
    One new query may see every earlier key and itself, so no mask is needed. It is
    ``attention.attention_forward`` with ``past_kv``; this only picks the outputs.
    """
    from ..attention import attention_forward

    context, cache = attention_forward(x, p, None, num_heads, past_kv=past_kv)
    return context, {"k": cache["k"], "v": cache["v"]}


def _check_cache_content(name: str, theirs: dict, ours: dict, where: str) -> None:
    """The learner's cache must hold the package's keys and values, position by position, in order.

    The context alone cannot catch an order mistake: without positions in the scores, attention is
    the same for any order of the keys (with their values), so a cache that *prepends* gives the
    right context at every step, and so does a key without its bias (q . b_k is the same for every
    key, and softmax ignores a constant). The next user of the cache (a relative-position layer,
    ``reorder_past``, a padding mask over cached keys) would read the wrong positions.
    """
    got = {part: _host(theirs[part], name, f"new_past_kv['{part}']") for part in ("k", "v")}
    # float64 projections of O(1)-O(10) values: the same products agree to ~1e-15; any mistake is O(0.1)
    same = {part: np.allclose(got[part], ours[part], rtol=0.0, atol=1e-9) for part in ("k", "v")}
    if all(same.values()):
        return
    T = ours["k"].shape[2]
    # The hints below use the same 1e-9 as ``same``, for the same reason (float64, mistakes are O(0.1)).
    for part in ("k", "v"):
        if same[part]:
            continue
        if np.allclose(got[part], ours[part][:, :, ::-1], rtol=0.0, atol=1e-9) or (
            T > 1 and np.allclose(got[part][:, :, 0], ours[part][:, :, -1], rtol=0.0, atol=1e-9)
        ):
            hint = ("you put the new position first (prepended). The cache is in time order: the new key and "
                    "value go at the end, np.concatenate([past_kv['k'], k_new], axis=2)")
        elif np.allclose(got[part], ours["v" if part == "k" else "k"], rtol=0.0, atol=1e-9):
            hint = "keys and values are swapped: 'k' holds the keys (x W_K^T + b_K), 'v' the values"
        else:
            wrong = [t for t in range(T) if not np.allclose(got[part][:, :, t], ours[part][:, :, t], atol=1e-9)]
            hint = (f"position(s) {wrong} of the cache are wrong: position t must hold split_heads(linear(x_t, "
                    f"p['{'key' if part == 'k' else 'value'}'])), bias included, for every step t so far")
        raise _exercise_error(name, f"new_past_kv['{part}'] does not hold the {'keys' if part == 'k' else 'values'} "
                                    f"of positions 0..{T - 1} in order ({where})", hint)


def check_cached_attention(fn, *, n_cases: int = 8, seed: int = 0) -> None:
    """Grade ``fn(x, p, num_heads, past_kv) -> (context, new_past_kv)`` (see ``cached_self_attention``).

    Each case decodes a few steps, feeding back the learner's own cache, and compares every step's
    context with the package's and with full (uncached, causal) attention over the whole prefix, and
    the cache itself with the package's, position by position (a prepended cache fails here).
    """
    from ..attention import attention_forward, causal_padding_mask

    name = "check_cached_attention"
    rng = np.random.default_rng(seed)
    for case in range(n_cases):
        B, H, Dh = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 5))
        D, steps = H * Dh, int(rng.integers(2, 6))
        p = {part: {"weight": rng.normal(size=(D, D)), "bias": rng.normal(size=D)} for part in ("query", "key", "value")}
        xs = rng.normal(size=(B, steps, D))
        full, _ = attention_forward(xs, p, causal_padding_mask(np.ones((B, steps)), steps, np.float64), H)
        ours_past = theirs_past = None
        for t in range(steps):
            where = f"case {case}: B={B}, H={H}, Dh={Dh}, step {t} (past of length {t})"
            x = xs[:, t : t + 1]
            ours, ours_past = cached_self_attention(x, p, H, ours_past)
            result = _call_learner(name, fn, (x.copy(), p, H, theirs_past), where)
            if not (isinstance(result, tuple) and len(result) == 2):
                raise _exercise_error(name, f"return (context, new_past_kv), got {type(result).__name__} ({where})",
                                      "the cache you return is what the next step gets as past_kv")
            context, theirs_past = result
            context = _host(context, name, "context")
            if context.shape != (B, 1, D):
                raise _exercise_error(name, f"context shape {context.shape}, expected {(B, 1, D)} ({where})",
                                      "merge the heads back: (B, H, 1, Dh) -> (B, 1, H * Dh)")
            if not isinstance(theirs_past, dict) or set(theirs_past) != {"k", "v"}:
                raise _exercise_error(name, f"new_past_kv must be a dict with keys 'k' and 'v' ({where})",
                                      "return {'k': keys, 'v': values}, each (B, H, Tp + 1, Dh)")
            for part in ("k", "v"):
                got_shape = _host(theirs_past[part], name, f"new_past_kv['{part}']").shape
                if got_shape != (B, H, t + 1, Dh):
                    raise _exercise_error(
                        name, f"new_past_kv['{part}'] has shape {got_shape}, expected {(B, H, t + 1, Dh)} ({where})",
                        "split heads first, then append along the time axis (axis=2): "
                        "np.concatenate([past_kv['k'], k_new], axis=2); at step 0 past_kv is None",
                    )
            _check_cache_content(name, theirs_past, ours_past, where)
            # float64, sums of <= 6 terms of size ~10: 1e-9 is far above rounding, far below any mistake
            if not np.allclose(context, ours, rtol=0.0, atol=1e-9):
                hint = ("the new query attends over every cached key and its own: scores (B, H, 1, Tp + 1) "
                        "= q k^T / sqrt(Dh), softmax over the last axis, then times v")
                # float64 contexts of O(1): the same products agree to ~1e-15; a real use of the past moves them O(0.1)
                if t > 0 and np.allclose(context, attention_forward(x, p, None, H)[0], atol=1e-9):
                    hint = "your context ignores the past: attend over past_kv's keys and values too"
                raise _exercise_error(name, f"the context differs from the package's by "
                                            f"{np.abs(context - ours).max():.3e} ({where})", hint)
            if not np.allclose(context[:, 0], full[:, t], rtol=0.0, atol=1e-9):  # pragma: no cover
                raise _exercise_error(name, f"step {t}: the package's cached attention differs from full causal "
                                            f"attention ({where})", "this is a bug in minibertgen: please report it")
    print(f"{name}: {n_cases} random cases, every step equal to minibertgen.attention.attention_forward with past_kv "
          "and to full causal attention")


def check_decoder_step(fn, *, n_steps: int = 5, seed: int = 0) -> None:
    """Grade ``fn(model, tokens, past, memory, memory_mask) -> (logits, past)`` against
    ``generate.decoder_step``, on tiny bert2bert models of every position type.

    tokens: (N, 1) the newest token of each row; past: the per-layer KV cache (a list with one
    {"self": {"k", "v"}, "cross": {"k", "v"}} per layer) or None at the first step; memory: (N, S, D)
    the encoder output; memory_mask: (N, S) 0/1 or None. Returns the new position's logits (N, V)
    and the grown past.
    """
    from ..generate import decoder_step, encode_once

    name = "check_decoder_step"
    for case, pos in enumerate(("absolute", "relative_key", "relative_key_query")):
        model = _tiny_bert2bert(seed + case, pos)
        rng = np.random.default_rng(seed + case)
        N, S = 2, 5
        ids = rng.integers(3, model.config.encoder.vocab_size, size=(N, S))
        mask = np.ones((N, S))
        mask[1, 3:] = 0.0
        memory = encode_once(model, ids, mask)
        layers = model.config.decoder.num_hidden_layers
        tokens = np.full((N, 1), model.config.decoder_start_token_id)
        ours_past = theirs_past = None
        for t in range(n_steps):
            where = f"{pos} model, step {t} (past of length {t})"
            ours, ours_past = decoder_step(model, tokens, ours_past, memory, mask)
            result = _call_learner(name, fn, (model, tokens.copy(), theirs_past, memory, mask), where)
            if not (isinstance(result, tuple) and len(result) == 2):
                raise _exercise_error(name, f"return (logits, past), got {type(result).__name__} ({where})",
                                      "the past you return is what the next step gets")
            logits, theirs_past = result
            logits = _host(logits, name, "logits")
            if logits.shape != ours.shape:
                raise _exercise_error(name, f"logits shape {logits.shape}, expected {ours.shape} ({where})",
                                      "return the logits of the new position only: logits[:, -1], shape (N, V)")
            if not isinstance(theirs_past, (list, tuple)) or len(theirs_past) != layers:
                raise _exercise_error(name, f"past must be a list with one entry per layer ({layers}) ({where})",
                                      "decoder_forward returns it: logits, hidden_states, present, cache")
            try:
                k_shape = tuple(np.shape(theirs_past[0]["self"]["k"]))
            except (KeyError, TypeError, IndexError):
                k_shape = ()  # not the {"self": {"k", "v"}, "cross": ...} structure
            if k_shape != tuple(ours_past[0]["self"]["k"].shape):
                raise _exercise_error(
                    name, f"past[0]['self']['k'] has shape {k_shape}, expected {tuple(ours_past[0]['self']['k'].shape)} "
                    f"({where})", "each step appends one position to the self-attention keys and values",
                )
            # float64 model, logits cast to float32 at the end: they agree to float32 rounding of O(10)
            if not np.allclose(logits, ours, rtol=0.0, atol=1e-5):
                hint = "run decoder_forward on the new token only, passing past=past, memory and memory_mask"
                if t > 0:
                    hint = ("step 0 was right, a later one is not: pass the past to decoder_forward, so the new "
                            "token gets position len(past) and attends over the cached keys")
                raise _exercise_error(name, f"logits differ from the package's by {np.abs(logits - ours).max():.3e} "
                                            f"({where})", hint)
            tokens = ours.argmax(axis=-1)[:, None]  # both follow the same greedy path
    print(f"{name}: {n_steps} steps on absolute, relative_key and relative_key_query models match "
          "minibertgen.generate.decoder_step")


