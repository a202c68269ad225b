"""Demonstrations the notebooks call so that they do not show an answer: the KV cache against the full
forward (06) and the ranked continuations of a beam step (11); and the beam-step exercise (11)."""

from __future__ import annotations

import numpy as np

from ..backend import to_numpy
from ._grading import _call_learner, _exercise_error, _host, _tiny_bert2bert


def cache_vs_full(model, source, source_mask, start_tokens, n_steps: int):
    """Notebook 06's demonstration that the KV cache gives the full forward's numbers (it contains the
    answer of exercise 2, one decoder step, so the notebook calls it rather than showing it).

    Decodes ``n_steps`` greedy tokens after ``start_tokens`` (N, 1): each step runs the decoder on the
    newest token with the cache, and the whole model again on the whole prefix without one. Returns
    the max |cached - full| of each step's logits (in the model's dtype, no float32 cast) and the
    final cache.
    """
    from ..generate import encode_once
    from ..stack import decoder_forward

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
    and their sums, each (n,). ``beam_step`` is its first k; notebook 11's beam tree also draws the
    next k, the pruned runners-up (so the notebook does not show the exercise's answer)."""
    from ..generate import top_candidates

    k, V = log_probs.shape
    candidates = (sums[:, None] + log_probs).reshape(1, -1)  # (k, V) -> (1, k * V)
    top, top_sums = top_candidates(candidates, n)  # the n best flat indices, best first
    return top[0] // V, top[0] % V, top_sums[0]


def beam_step(sums, log_probs):
    """The solution of notebook 11's exercise: one step of beam search for one batch item.

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
    from ..generate import decoder_step, encode_once, reorder_past
    from ..ops import log_softmax

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
