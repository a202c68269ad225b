"""The training chapters' exercise checkers (notebooks 09 and 10): the package's solution passes, each
plausible wrong answer fails with a hint that names its mistake, and a stub passes through."""

from __future__ import annotations

import pytest

from minibertgen.exercises import check_copy_cross_attention, check_warmup_schedule
from minibertgen.model import copy_self_to_cross_attention
from minibertgen.train import linear_schedule

# ---------------------------------------------------------------- the warmup schedule


def ramp_from_one(step, warmup, total):  # counts optimizer steps from 1
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / (total - warmup))


def decay_over_all_steps(step, warmup, total):  # the decay spans total_steps, not what is left after warmup
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / total)


def zero_one_step_early(step, warmup, total):  # takes total_steps - 1 for the last step's index
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - 1 - step) / max(1, total - 1 - warmup))


def goes_negative(step, warmup, total):  # no max(0, ...): after total_steps the lr turns negative
    if step < warmup:
        return step / max(1, warmup)
    return (total - step) / max(1, total - warmup)


def divides_by_zero_warmup(step, warmup, total):
    if step < warmup or warmup == 0:
        return step / warmup
    return max(0.0, (total - step) / (total - warmup))


def warmup_as_a_share(step, warmup, total):  # reads warmup_steps as a share of total_steps
    warmup_steps = round(warmup / 100 * total)
    if step < warmup_steps:
        return step / warmup_steps
    return max(0.0, (total - step) / max(1, total - warmup_steps))


def test_the_package_schedule_passes(capsys):
    check_warmup_schedule(linear_schedule)
    assert "correct on every step" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (ramp_from_one, r"step 0 and its factor is 0"),
    (decay_over_all_steps, r"the peak: at step == warmup_steps the factor is exactly 1"),
    (zero_one_step_early, r"to 0 exactly at step total_steps"),
    (goes_negative, r"stays 0, never negative"),
    (divides_by_zero_warmup, r"do not divide by it"),
    (warmup_as_a_share, r"warmup"),
])  # fmt: skip
def test_a_wrong_schedule_fails_with_its_hint(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        check_warmup_schedule(wrong)


def test_the_schedule_checker_lets_a_stub_through():
    def stub(step, warmup, total):
        raise NotImplementedError("your code here")

    with pytest.raises(NotImplementedError):
        check_warmup_schedule(stub)


# ---------------------------------------------------------------- copying self- into cross-attention


def _layers_with(stack, make_cross):
    layers = [{**layer, "crossattention": make_cross(layer)} for layer in stack["encoder"]["layer"]]
    return {**stack, "encoder": {**stack["encoder"], "layer": layers}}


def output_dense_only(stack):
    def cross(layer):
        out = {k: {n: v.copy() for n, v in w.items()} for k, w in layer["attention"]["output"].items()}
        return {**layer["crossattention"], "output": out}

    return _layers_with(stack, cross)


def shared_arrays(stack):
    def cross(layer):
        parts = {k: w for k, w in layer["attention"]["self"].items() if k != "distance_embedding"}
        return {"self": parts, "output": layer["attention"]["output"]}

    return _layers_with(stack, cross)


def key_and_value_swapped(stack):
    def cross(layer):
        own = layer["attention"]["self"]
        parts = {"query": own["query"], "key": own["value"], "value": own["key"]}
        parts = {k: {n: v.copy() for n, v in w.items()} for k, w in parts.items()}
        return {"self": parts, "output": {k: {n: v.copy() for n, v in w.items()} for k, w in layer["attention"]["output"].items()}}

    return _layers_with(stack, cross)


def with_distance_embedding(stack):
    def cross(layer):
        return {"self": {k: {n: v.copy() for n, v in w.items()} for k, w in layer["attention"]["self"].items()},
                "output": {k: {n: v.copy() for n, v in w.items()} for k, w in layer["attention"]["output"].items()}}  # fmt: skip

    return _layers_with(stack, cross)


def in_place(stack):
    for layer in stack["encoder"]["layer"]:
        for part in ("query", "key", "value"):
            for leaf in ("weight", "bias"):
                layer["crossattention"]["self"][part][leaf][...] = layer["attention"]["self"][part][leaf]
        for part in ("dense", "LayerNorm"):
            for leaf in ("weight", "bias"):
                layer["crossattention"]["output"][part][leaf][...] = layer["attention"]["output"][part][leaf]
    return stack


def test_the_package_copy_passes(capsys):
    check_copy_cross_attention(copy_self_to_cross_attention)
    assert "is a copy of its self-attention" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (output_dense_only, r"copy the query, key and value projections too"),
    (shared_arrays, r"(?s)shares its arrays .*copy the arrays"),
    (key_and_value_swapped, r"(?s)key weight .*holds the self-attention's value"),
    (with_distance_embedding, r"cross-attention is always absolute"),
    (in_place, r"the input tree was edited"),
    (lambda stack: stack, r"copy the query, key and value"),
])  # fmt: skip
def test_a_wrong_copy_fails_with_its_hint(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        check_copy_cross_attention(wrong)


def test_the_copy_checker_lets_a_stub_through():
    def stub(stack):
        raise NotImplementedError("your code here")

    with pytest.raises(NotImplementedError):
        check_copy_cross_attention(stub)
