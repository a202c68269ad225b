"""The exercises of the training chapters: copying self-attention into cross-attention for a warm
start (09), and the learning-rate schedule of the fine-tuning recipe, linear warmup then linear decay (10).

The solutions are the package's own ``model.copy_self_to_cross_attention`` and ``train.linear_schedule``.
"""

from __future__ import annotations

import numpy as np

from ._grading import _call_learner, _exercise_error, _host, _tiny_bert2bert

# ---------------------------------------------------------------- 10: the warmup schedule


def _schedule_hint(step: int, warmup: int, total: int, expected: float, got: float) -> str:
    """What the first wrong step says about the mistake."""
    if step == 0 and warmup > 0:
        return ("the first optimizer step is step 0 and its factor is 0: the ramp is step / warmup_steps "
                "(transformers' LambdaLR counts from 0), not (step + 1) / warmup_steps")  # fmt: skip
    if step < warmup:
        return "during warmup the factor rises linearly from 0 at step 0 to 1 at step warmup_steps: step / warmup_steps"
    if step == warmup:
        return ("the peak: at step == warmup_steps the factor is exactly 1, where the decay starts; the decay "
                "runs over the total_steps - warmup_steps steps after the warmup, not over all total_steps")  # fmt: skip
    if got < 0:
        return "after total_steps the factor stays 0, never negative: max(0, ...)"
    return ("after the warmup the factor falls linearly from 1 at step warmup_steps to 0 exactly at step "
            "total_steps: (total_steps - step) / (total_steps - warmup_steps)")


def check_warmup_schedule(fn, *, seed: int = 0) -> None:
    """Grade ``fn(step, warmup_steps, total_steps) -> float``: the learning-rate factor of optimizer
    step ``step`` (0-based) for linear warmup then linear decay, the schedule of
    transformers' ``get_linear_schedule_with_warmup``: it rises linearly from 0 at step 0 to 1 at
    step ``warmup_steps`` (both integers; 0 means no warmup), then falls linearly to 0 at step
    ``total_steps``, and stays 0 after it. The lr of step k is ``lr * fn(k, warmup_steps, total_steps)``.

    Every step from 0 to total_steps + 2 is checked, for schedules with no warmup, a one-step
    warmup, a warmup of all the steps, and random ones.
    """
    from ..train import linear_schedule

    name = "check_warmup_schedule"
    rng = np.random.default_rng(seed)
    cases = [(10, 100), (0, 20), (1, 7), (5, 5), (3, 4)]
    cases += [(int(w), int(t)) for t in rng.integers(2, 300, size=10) for w in rng.integers(0, t + 1, size=1)]
    for warmup, total in cases:
        for step in range(total + 3):
            where = f"step={step}, warmup_steps={warmup}, total_steps={total}"
            try:
                got = _call_learner(name, fn, (step, warmup, total), where)
            except AssertionError as exc:
                if warmup > 0:
                    raise
                raise _exercise_error(name, str(exc).split("\n")[0].split(": ", 1)[1],
                                      "warmup_steps may be 0 (no warmup): do not divide by it then") from exc
            try:
                got = float(_host(got, name, "the factor"))
            except (TypeError, ValueError):
                raise _exercise_error(name, f"returned {got!r}, not a number ({where})", "return one float") from None
            expected = linear_schedule(step, warmup, total)
            if not (np.isfinite(got) and abs(got - expected) <= 1e-9 + 1e-9 * abs(expected)):
                raise _exercise_error(name, f"the factor at {where} is {got:.6g}, expected {expected:.6g}",
                                      _schedule_hint(step, warmup, total, expected, got))  # fmt: skip
    print(f"check_warmup_schedule: correct on every step of {len(cases)} schedules (no warmup, all warmup, random)")


# ---------------------------------------------------------------- 09: copying self- into cross-attention

_ATTENTION_PARTS = ("query", "key", "value")


def check_copy_cross_attention(fn, *, seed: int = 0) -> None:
    """Grade ``fn(stack) -> stack``: a warm start's "copied" cross-attention.

    ``stack`` is a decoder's parameter tree (``decoder.params["bert"]``): ``stack["encoder"]["layer"]``
    is a list of layers, each with ``"attention"`` (self-attention: ``"self"`` holding
    ``query``/``key``/``value``, each ``{"weight", "bias"}``, and maybe a ``distance_embedding``;
    ``"output"`` holding ``dense`` and ``LayerNorm``) and ``"crossattention"`` of the same layout.
    Return a tree in which every layer's cross-attention is a *copy* of the same layer's
    self-attention: query, key, value, output dense and LayerNorm, new arrays (the two train apart);
    never the ``distance_embedding`` (cross-attention is always absolute); everything else as it
    was, and the input tree unchanged. The solution is ``model.copy_self_to_cross_attention``.
    """
    from ..model import copy_self_to_cross_attention
    from ..weights import flatten

    name = "check_copy_cross_attention"
    for case, kind in enumerate(("absolute", "relative_key", "relative_key_query")):
        stack = _tiny_bert2bert(seed + case, kind).params["decoder"]["bert"]
        before = {k: v.copy() for k, v in flatten(stack).items()}
        where = f"a {len(stack['encoder']['layer'])}-layer decoder with position_embedding_type={kind!r}"
        out = _call_learner(name, fn, (stack,), where)
        if not isinstance(out, dict) or "encoder" not in out:
            raise _exercise_error(name, f"returned {type(out).__name__}, not a parameter tree ({where})",
                                  "return the whole stack tree, with the same keys as the input")  # fmt: skip
        changed = [k for k, v in flatten(stack).items() if not np.array_equal(v, before[k])]
        if changed:
            raise _exercise_error(name, f"the input tree was edited: {changed[0]} changed ({where})",
                                  "build a new tree ({**layer, 'crossattention': ...}) and leave the input as it was")  # fmt: skip
        expected, got = flatten(copy_self_to_cross_attention(stack)), flatten(out)
        extra = sorted(set(got) - set(expected))
        if any("crossattention" in k and "distance_embedding" in k for k in extra):
            raise _exercise_error(name, f"the cross-attention got a distance_embedding ({where})",
                                  "cross-attention is always absolute (queries and keys are different sequences): "
                                  "copy query, key and value, not the relative-position table")  # fmt: skip
        if sorted(got) != sorted(expected):
            missing = sorted(set(expected) - set(got))
            raise _exercise_error(name, f"the tree's tensors differ: missing {missing[:3]}, unexpected {extra[:3]} ({where})",
                                  "keep every tensor of the input, and give each cross-attention the same five parts")  # fmt: skip
        for i, layer in enumerate(out["encoder"]["layer"]):
            self_attn, cross = stack["encoder"]["layer"][i]["attention"], layer["crossattention"]
            for part in _ATTENTION_PARTS:
                w = _host(cross["self"][part]["weight"], name, f"layer {i}'s cross-attention {part}")
                if np.array_equal(w, self_attn["self"][part]["weight"]):
                    continue
                other = [p for p in _ATTENTION_PARTS if p != part and np.array_equal(w, self_attn["self"][p]["weight"])]
                hint = (f"it holds the self-attention's {other[0]}: copy each projection to the same place "
                        "(query to query, key to key, value to value)" if other else
                        "copy the query, key and value projections too, not only the output dense and LayerNorm")  # fmt: skip
                raise _exercise_error(name, f"layer {i}: the cross-attention's {part} weight is not the "
                                      f"self-attention's {part} ({where})", hint)  # fmt: skip
        for key, value in expected.items():
            if not np.array_equal(_host(got[key], name, key), value):
                hint = ("copy the output part too: dense (weight, bias) and LayerNorm (weight, bias)"
                        if ".crossattention.output." in key else
                        "copy weights and biases both" if ".crossattention." in key else
                        "leave everything but the cross-attention as it was")  # fmt: skip
                raise _exercise_error(name, f"{key} is wrong ({where})", hint)
        for i, layer in enumerate(out["encoder"]["layer"]):
            self_attn, cross = stack["encoder"]["layer"][i]["attention"], layer["crossattention"]
            pairs = [(cross["self"][p][leaf], self_attn["self"][p][leaf]) for p in _ATTENTION_PARTS for leaf in ("weight", "bias")]
            pairs += [(cross["output"][p][leaf], self_attn["output"][p][leaf]) for p in ("dense", "LayerNorm")
                      for leaf in ("weight", "bias")]  # fmt: skip
            if any(np.shares_memory(a, b) for a, b in pairs):
                raise _exercise_error(name, f"layer {i}: the cross-attention shares its arrays with the "
                                      f"self-attention ({where})",
                                      "copy the arrays (.copy()): shared arrays would train as one, and an in-place "
                                      "update of one would change the other")  # fmt: skip
    print("check_copy_cross_attention: every layer's cross-attention is a copy of its self-attention "
          "(absolute and relative decoders), the rest unchanged")  # fmt: skip
