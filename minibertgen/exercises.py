"""The tutorials' exercise graders: the notebooks end with exercises, and these grade them.

Write the causal mask (03), append to the KV cache and take one decoder step (05), softmax's
backward (06), one beam-search step (08). Each checker grades a learner's function against the
package's own on random shapes and seeds. The solutions *are* the package's functions (or, for
``cached_self_attention`` and ``beam_step``, thin views of them), so exercise and implementation
can never drift apart. A wrong answer raises AssertionError saying what is wrong, on which input,
with a hint; a right one prints one line.
"""

from __future__ import annotations

import numpy as np

from .backend import to_numpy


def _exercise_error(exercise: str, what: str, hint: str) -> AssertionError:
    return AssertionError(f"{exercise}: {what}\nHint: {hint}")


def _call_learner(exercise: str, fn, args: tuple, where: str):
    """fn(*args), turning any error but NotImplementedError into a graded failure."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as exc:  # the learner's code crashed: say on which input
        raise _exercise_error(
            exercise, f"your function raised {type(exc).__name__}: {exc} ({where})",
            "run it by hand on that input and compare shapes with the docstring",
        ) from exc


def _host(x, exercise: str, what: str) -> np.ndarray:
    try:
        return np.asarray(to_numpy(x))
    except Exception as exc:
        raise _exercise_error(exercise, f"{what} is not an array ({type(x).__name__})", "return a numpy array") from exc


def check_causal_mask(fn, *, n_cases: int = 30, seed: int = 0) -> None:
    """Grade ``fn(attention_mask, query_len, dtype)`` against ``attention.causal_padding_mask``.

    attention_mask: (B, Tk) 0/1 over every key (earlier, cached positions included); the queries are
    the last ``query_len`` = Tq positions, so query i sits at position (Tk - Tq) + i. The result is
    the additive mask (B, 1, Tq, Tk) in ``dtype``: 0 where query i may see key j (j is not after the
    query, and key j is not padding), ``np.finfo(dtype).min`` elsewhere.
    """
    from .attention import causal_padding_mask

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


def check_softmax_backward(fn, *, n_cases: int = 20, seed: int = 0) -> None:
    """Grade ``fn(dout, probs) -> dx`` against ``ops.softmax_backward``.

    probs = softmax(x) over the last axis, shape (..., N); dout = dL/dprobs, the same shape; dx = dL/dx.
    """
    from .ops import softmax_backward, softmax_forward

    name = "check_softmax_backward"
    rng = np.random.default_rng(seed)
    for case in range(n_cases):
        shape = tuple(int(n) for n in rng.integers(1, 5, size=int(rng.integers(1, 5))))
        shape = shape[:-1] + (int(rng.integers(2, 8)),)  # at least 2 classes: N = 1 has dx = 0 whatever
        probs, _ = softmax_forward(rng.normal(size=shape) * 2.0)
        dout = rng.normal(size=shape)  # random upstream gradient, never ones (STYLE.md 3)
        given_dout, given_probs = dout.copy(), probs.copy()
        where = f"shape {shape}"
        got = _host(_call_learner(name, fn, (given_dout, given_probs), where), name, "dx")
        if not (np.array_equal(given_dout, dout) and np.array_equal(given_probs, probs)):
            raise _exercise_error(name, f"your function wrote into dout or probs ({where})",
                                  "compute a new array; a backward never changes its inputs (STYLE.md 2)")
        if got.shape != shape:
            raise _exercise_error(name, f"dx has shape {got.shape}, expected {shape}",
                                  "dx has the shape of x, which is the shape of probs")
        expected = softmax_backward(dout, probs)
        # float64, N <= 7 terms per sum: rounding is ~1e-16; any mistake is O(0.1)
        if np.allclose(got, expected, rtol=0.0, atol=1e-12):
            continue
        if np.allclose(got, dout * probs, atol=1e-12):
            hint = ("that is only the diagonal part p_i dout_i. Each p_i depends on every x_k: "
                    "dp_i/dx_k = p_i (delta_ik - p_k), so dx_k = sum_i dout_i p_i (delta_ik - p_k)")
        elif np.allclose(got, dout * probs * (1 - probs), atol=1e-12):
            hint = ("p_i (1 - p_i) is only the diagonal of the Jacobian; the off-diagonal entries "
                    "dp_i/dx_k = -p_i p_k add the term -p_k sum_i dout_i p_i")
        elif len(shape) > 1 and np.allclose(got, probs * (dout - (dout * probs).sum(axis=0, keepdims=True)), atol=1e-12):
            hint = "the sum runs over the softmax axis, the last one: axis=-1"
        else:
            hint = ("start from dp_i/dx_k = p_i (delta_ik - p_k) and sum over i with dout_i; keep the "
                    "sum's axis (keepdims=True) so it broadcasts against (..., N)")
        worst = np.unravel_index(int(np.argmax(np.abs(got - expected))), shape)
        raise _exercise_error(
            name, f"dx differs from the package's at {tuple(int(i) for i in worst)}: yours "
            f"{float(got[worst]):.6g}, expected {float(expected[worst]):.6g} ({where})", hint,
        )
    print(f"{name}: all {n_cases} random shapes match minibertgen.ops.softmax_backward")


def _tiny_bert2bert(seed: int, position_embedding_type: str, vocab_size: int = 20):
    """A small float64 bert2bert with every weight moved off its init, for the exercise checkers."""
    from .config import BertGenerationConfig, EncoderDecoderConfig
    from .model import EncoderDecoderModel
    from .weights import flatten, unflatten

    part = BertGenerationConfig(vocab_size=vocab_size, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                                intermediate_size=16, max_position_embeddings=24,
                                position_embedding_type=position_embedding_type)  # fmt: skip
    config = EncoderDecoderConfig(part, part, decoder_start_token_id=2, pad_token_id=0, eos_token_id=1)
    model = EncoderDecoderModel(config, seed=seed, dtype="float64")
    rng = np.random.default_rng(seed)
    model.params = unflatten({k: v + rng.normal(0.0, 0.3, v.shape) for k, v in flatten(model.params).items()})
    return model


def cached_self_attention(x, p, num_heads, past_kv):
    """The solution of notebook 05's first exercise: self-attention of new tokens with a KV cache.

    x: (B, 1, D) the new token's input; p: {"query", "key", "value"} linears; past_kv: {"k", "v"}
    (B, H, Tp, Dh) or None -> context (B, 1, D) and the grown cache {"k", "v"} (B, H, Tp + 1, Dh).
    One new query may see every earlier key and itself, so no mask is needed. It is
    ``attention.attention_forward`` with ``past_kv``; this only picks the outputs.
    """
    from .attention import attention_forward

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
    from .attention import attention_forward, causal_padding_mask

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
    from .generate import decoder_step, encode_once

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


def cache_vs_full(model, source, source_mask, start_tokens, n_steps: int):
    """Notebook 05's demonstration that the KV cache gives the full forward's numbers (it contains the
    answer of exercise 2, one decoder step, so the notebook calls it rather than showing it).

    Decodes ``n_steps`` greedy tokens after ``start_tokens`` (N, 1): each step runs the decoder on the
    newest token with the cache, and the whole model again on the whole prefix without one. Returns
    the max |cached - full| of each step's logits (in the model's dtype, no float32 cast) and the
    final cache.
    """
    from .generate import encode_once
    from .stack import decoder_forward

    memory = encode_once(model, source, source_mask)  # the encoder runs once
    prefix, past, errors = np.asarray(start_tokens), None, []
    for _ in range(n_steps):
        step_logits, _, past, _ = decoder_forward(model.params["decoder"], model.config.decoder, prefix[:, -1:],
                                                  memory=memory, memory_mask=source_mask, past=past)  # fmt: skip
        full = model(source, source_mask, decoder_input_ids=prefix).logits[:, -1]  # recompute everything
        errors.append(float(np.abs(step_logits[:, -1] - full).max()))
        prefix = np.concatenate([prefix, full.argmax(-1)[:, None]], axis=1)
    return errors, past


def ranked_continuations(sums, log_probs, n: int):
    """The ``n`` best (beam, token) continuations of one beam-search step, best first: parents, tokens
    and their sums, each (n,). ``beam_step`` is its first k; notebook 08's beam tree also draws the
    next k, the pruned runners-up (so the notebook does not show the exercise's answer)."""
    from .generate import top_candidates

    k, V = log_probs.shape
    candidates = (sums[:, None] + log_probs).reshape(1, -1)  # (k, V) -> (1, k * V)
    top, top_sums = top_candidates(candidates, n)  # the n best flat indices, best first
    return top[0] // V, top[0] % V, top_sums[0]


def beam_step(sums, log_probs):
    """The solution of notebook 08's exercise: one step of beam search for one batch item.

    sums: (k,) running sums of log-probabilities; log_probs: (k, V) next-token log-probabilities.
    Returns the k best (beam, token) continuations, best first: parents (k,), tokens (k,) and their
    new sums (k,). This is step 3 of ``generate.beam_search`` (before eos handling): candidates scored
    ``sums[beam] + log_probs[beam, token]``, ranked over the flattened k * V grid by
    ``generate.top_candidates`` (the function beam search itself uses), so ties go to the lower
    index. ``check_beam_step`` also runs whole beam searches built on it against ``model.generate``.
    """
    return ranked_continuations(sums, log_probs, log_probs.shape[0])


def check_beam_step(fn, *, n_cases: int = 25, seed: int = 0) -> None:
    """Grade ``fn(sums, log_probs) -> (parents, tokens, new_sums)``: one step of beam search.

    sums: (k,) float32, each running beam's sum of log-probabilities; log_probs: (k, V) float32, the
    next-token log-probabilities of each beam. Returns the k best continuations over all k * V
    (beam, token) pairs, best first: the beam each extends (k,), its new token (k,) and its new sum
    sums[parent] + log_probs[parent, token] (k,). Ties go to the smaller flat index beam * V + token
    (the reference's order). This is step 3 of ``generate.beam_search``; a second part runs a whole
    beam search built on ``fn`` and compares it with ``model.generate(num_beams=k)``.
    """
    from .generate import decoder_step, encode_once, reorder_past
    from .ops import log_softmax

    name = "check_beam_step"
    rng = np.random.default_rng(seed)
    for case in range(n_cases):
        k, V = int(rng.integers(1, 5)), int(rng.integers(5, 13))
        log_probs = np.log(rng.dirichlet(np.ones(V), size=k)).astype(np.float32)  # (k, V)
        if case < 5:  # the first step: only beam 0 is live (the others start at -1e9, as in beam_search)
            sums = np.full(k, -1e9, dtype=np.float32)
            sums[0] = 0.0
        else:
            sums = np.sort(rng.normal(-3.0, 1.5, size=k)).astype(np.float32)[::-1].copy()
        where = f"k={k} beams, V={V}, sums={np.round(sums, 3).tolist()}"
        result = _call_learner(name, fn, (sums.copy(), log_probs.copy()), where)
        if not (isinstance(result, tuple) and len(result) == 3):
            raise _exercise_error(name, f"return (parents, tokens, new_sums), got {type(result).__name__} ({where})",
                                  "three arrays of length k")
        parents, tokens, new_sums = (_host(r, name, n) for r, n in zip(result, ("parents", "tokens", "new_sums")))
        for arr, n in ((parents, "parents"), (tokens, "tokens"), (new_sums, "new_sums")):
            if arr.shape != (k,):
                raise _exercise_error(name, f"{n} has shape {arr.shape}, expected ({k},) ({where})",
                                      "one entry per surviving beam: k of them")
        want_parents, want_tokens, want_sums = beam_step(sums, log_probs)
        if not (np.array_equal(parents, want_parents) and np.array_equal(tokens, want_tokens)):
            if np.array_equal(parents, np.arange(k)):
                hint = ("you kept each beam's own best token; beam search ranks all k * V continuations "
                        "together, so one strong beam may have several children and a weak one none")
            elif set(zip(parents.tolist(), tokens.tolist())) == set(zip(want_parents.tolist(), want_tokens.tolist())):
                hint = "the right continuations in the wrong order: best (highest sum) first"
            elif case < 5 and np.any(parents != 0):
                hint = "a beam's score is its running sum plus the token's log-probability, not the log-probability alone"
            else:
                hint = ("score every (beam, token) pair by sums[beam] + log_probs[beam, token], flatten to k * V, "
                        "take the k largest; beam = index // V, token = index % V")
            raise _exercise_error(
                name, f"you chose (beam, token) pairs {list(zip(parents.tolist(), tokens.tolist()))}, expected "
                f"{list(zip(want_parents.tolist(), want_tokens.tolist()))} ({where})", hint,
            )
        if not np.allclose(new_sums, want_sums, rtol=1e-6, atol=1e-5):  # float32 sums of two terms
            raise _exercise_error(name, f"new_sums {new_sums.tolist()} should be {want_sums.tolist()} ({where})",
                                  "the new sum is sums[parent] + log_probs[parent, token]")

    # Part 2: a whole beam search driven by fn, against model.generate. eos is made unreachable (its
    # bias -1e4), so every hypothesis runs to max_length and the final k are the last step's k best.
    for case, (k, length_penalty) in enumerate(((2, 1.0), (3, 0.0), (4, 2.0))):
        model = _tiny_bert2bert(seed + case, ("absolute", "relative_key_query", "absolute")[case])
        model.params["decoder"]["lm_head"]["bias"][1] -= 1e4  # token 1 is eos
        ids = np.random.default_rng(seed + case).integers(3, model.config.encoder.vocab_size, size=(1, 6))
        n_new = 6
        memory = np.repeat(encode_once(model, ids, None), k, axis=0)
        sequences = np.full((k, 1), model.config.decoder_start_token_id)
        sums = np.full(k, -1e9, dtype=np.float32)
        sums[0] = 0.0
        past = None
        for _ in range(n_new):
            logits, past = decoder_step(model, sequences[:, -1:], past, memory, None)
            result = _call_learner(name, fn, (sums.copy(), np.asarray(log_softmax(logits))), "inside a beam search")
            parents, tokens, sums = (np.asarray(to_numpy(r)) for r in result)
            parents = parents.astype(np.int64)
            sequences = np.concatenate([sequences[parents], tokens.astype(np.int64)[:, None]], axis=1)
            past = reorder_past(past, parents)
            sums = sums.astype(np.float32)
        scores = sums / np.float32(n_new**length_penalty)
        order = np.argsort(-scores, kind="stable")
        reference = model.generate(ids, num_beams=k, num_return_sequences=k, max_new_tokens=n_new,
                                   length_penalty=length_penalty, return_dict_in_generate=True, output_scores=True)  # fmt: skip
        where = f"beam search with k={k}, length_penalty={length_penalty}, {n_new} new tokens"
        if sequences[order].tolist() != reference.sequences.tolist():
            raise _exercise_error(name, f"{where}: your beams {sequences[order].tolist()} differ from "
                                        f"model.generate's {reference.sequences.tolist()}",
                                  "each step must keep the k best (beam, token) pairs over all beams")
        if not np.allclose(scores[order], reference.sequences_scores, rtol=0.0, atol=2e-5):  # float32 sums of ~6 terms
            raise _exercise_error(name, f"{where}: scores {scores[order].tolist()} differ from "
                                        f"{reference.sequences_scores.tolist()}", "new_sums must be the running sums")
    print(f"{name}: {n_cases} random steps match beam search's rule, and beam searches built on your step "
          "equal model.generate(num_beams=k)")
