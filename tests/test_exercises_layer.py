"""The checkers of notebook 05 (minibertgen.exercises.layer): the package's solution passes, each
plausible wrong layer or dropout fails with a hint that names its mistake, a stub passes through."""

from __future__ import annotations

import numpy as np
import pytest

from minibertgen.attention import attention_forward
from minibertgen.exercises import check_dropout, check_layer_forward
from minibertgen.ops import activation_forward, dropout_forward, layernorm_forward, linear_forward

# ---------------------------------------------------------------- a layer written from the parts


def attend(x, p, mask_add, num_heads):
    context, _ = attention_forward(x, p["attention"]["self"], mask_add, num_heads)
    return linear_forward(context, p["attention"]["output"]["dense"])[0]


def ffn(h, p, act="gelu"):
    up = linear_forward(h, p["intermediate"]["dense"])[0]  # (B, T, D) -> (B, T, F)
    return linear_forward(activation_forward(up, act)[0], p["output"]["dense"])[0]  # (B, T, F) -> (B, T, D)


def ln(h, p, eps):
    return layernorm_forward(h, p["LayerNorm"], eps)[0]


def post_ln_layer(x, p, mask_add, num_heads, eps):
    a = ln(attend(x, p, mask_add, num_heads) + x, p["attention"]["output"], eps)
    return ln(ffn(a, p) + a, p["output"], eps)


def pre_ln_layer(x, p, mask_add, num_heads, eps):
    a = x + attend(ln(x, p["attention"]["output"], eps), p, mask_add, num_heads)
    return a + ffn(ln(a, p["output"], eps), p)


def layer_without_ffn_residual(x, p, mask_add, num_heads, eps):
    a = ln(attend(x, p, mask_add, num_heads) + x, p["attention"]["output"], eps)
    return ln(ffn(a, p), p["output"], eps)


def layer_without_attention_residual(x, p, mask_add, num_heads, eps):
    a = ln(attend(x, p, mask_add, num_heads), p["attention"]["output"], eps)
    return ln(ffn(a, p) + a, p["output"], eps)


def layer_with_tanh_gelu(x, p, mask_add, num_heads, eps):
    a = ln(attend(x, p, mask_add, num_heads) + x, p["attention"]["output"], eps)
    return ln(ffn(a, p, "gelu_new") + a, p["output"], eps)


def layer_norm_before_the_add(x, p, mask_add, num_heads, eps):
    a = ln(attend(x, p, mask_add, num_heads), p["attention"]["output"], eps) + x
    return ln(ffn(a, p), p["output"], eps) + a


def layer_norm_before_the_attention_add(x, p, mask_add, num_heads, eps):
    a = ln(attend(x, p, mask_add, num_heads), p["attention"]["output"], eps) + x
    return ln(ffn(a, p) + a, p["output"], eps)


def layer_ffn_first(x, p, mask_add, num_heads, eps):
    f = ln(ffn(x, p) + x, p["output"], eps)
    return ln(attend(f, p, mask_add, num_heads) + f, p["attention"]["output"], eps)


def layer_with_swapped_layer_norms(x, p, mask_add, num_heads, eps):
    a = ln(attend(x, p, mask_add, num_heads) + x, p["output"], eps)
    return ln(ffn(a, p) + a, p["attention"]["output"], eps)


def layer_ignoring_the_mask(x, p, mask_add, num_heads, eps):
    return post_ln_layer(x, p, np.zeros_like(mask_add), num_heads, eps)


def layer_writing_into_x(x, p, mask_add, num_heads, eps):
    x += attend(x, p, mask_add, num_heads)
    a = ln(x, p["attention"]["output"], eps)
    return ln(ffn(a, p) + a, p["output"], eps)


def not_written(*args):
    raise NotImplementedError("your code here")


def test_the_package_layer_and_a_layer_from_the_parts_pass(capsys):
    check_layer_forward(post_ln_layer)
    assert capsys.readouterr().out.startswith("check_layer_forward: all 12 random layers match")


@pytest.mark.parametrize(("wrong", "named"), [
    (pre_ln_layer, r"pre-LN"),
    (layer_without_ffn_residual, r"no residual around the feed-forward block"),
    (layer_without_attention_residual, r"no residual around attention"),
    (layer_with_tanh_gelu, r"tanh approximation of GELU"),
    (layer_norm_before_the_add, r"LayerNorm before the residual add"),
    (layer_norm_before_the_attention_add, r"LayerNorm before the attention's residual add"),
    (layer_ffn_first, r"feed-forward block before attention"),
    (layer_with_swapped_layer_norms, r"each LayerNorm uses its own block's weights"),
    (layer_ignoring_the_mask, r"max abs error"),
    (layer_writing_into_x, r"changed the x it was given"),
], ids=lambda v: getattr(v, "__name__", None))  # fmt: skip
def test_a_wrong_layer_fails_naming_its_mistake(wrong, named):
    with pytest.raises(AssertionError, match=rf"^check_layer_forward: (.|\n)*{named}"):
        check_layer_forward(wrong)


def test_every_failure_has_a_hint():
    for wrong in (pre_ln_layer, layer_with_tanh_gelu, layer_ignoring_the_mask):
        with pytest.raises(AssertionError, match=r"\nHint: "):
            check_layer_forward(wrong)


def test_every_known_mistake_is_far_outside_the_tolerance_on_every_case():
    """Each graded case tells every named mistake from the right layer (the tanh GELU, the closest, by
    ~1e-4 per output: far above float64 rounding), so none slips through on a lucky shape."""
    from minibertgen.exercises.layer import LAYER_ATOL, _known_mistakes, post_ln_layer, random_layer_case

    for case in range(12):
        x, p, mask_add, num_heads, eps = random_layer_case(case)
        right = post_ln_layer(x, p, mask_add, num_heads, eps)
        for wrong, hint in _known_mistakes(x, p, mask_add, num_heads, eps):
            assert np.abs(wrong - right).max() > 1e5 * LAYER_ATOL, (case, hint)


def test_a_layer_stub_passes_through():
    with pytest.raises(NotImplementedError):
        check_layer_forward(not_written)


# ---------------------------------------------------------------- dropout


def package_dropout(x, rate, rng, train):
    return dropout_forward(x, rate, rng, train)[0]


def dropout_always_on(x, rate, rng, train):
    return package_dropout(x, rate, rng, True)


def dropout_unscaled(x, rate, rng, train):
    return x * (rng.random(x.shape) >= rate) if train else x


def dropout_scaled_by_keep(x, rate, rng, train):
    return x * (rng.random(x.shape) >= rate) * (1 - rate) if train else x


def dropout_keeping_with_rate(x, rate, rng, train):
    return x * (rng.random(x.shape) < rate) / (1 - rate) if train and rate else x


def dropout_from_the_global_rng(x, rate, rng, train):
    return x * (np.random.random(x.shape) >= rate) / (1 - rate) if train and rate else x


def dropout_with_a_fixed_mask(x, rate, rng, train):
    return x * (np.random.default_rng(0).random(x.shape) >= rate) / (1 - rate) if train and rate else x


def test_the_package_dropout_passes(capsys):
    check_dropout(package_dropout)
    assert capsys.readouterr().out.startswith("check_dropout: eval is the identity")


@pytest.mark.parametrize(("wrong", "named"), [
    (dropout_always_on, r"active only in training"),
    (dropout_unscaled, r"not scaled(.|\n)*divides the kept entries by 1 - rate"),
    (dropout_scaled_by_keep, r"multiplied by 1 - rate"),
    (dropout_keeping_with_rate, r"probability of DROPPING"),
    (dropout_from_the_global_rng, r"from the rng you are given"),
    (dropout_with_a_fixed_mask, r"fresh random mask"),
], ids=lambda v: getattr(v, "__name__", None))  # fmt: skip
def test_a_wrong_dropout_fails_naming_its_mistake(wrong, named):
    with pytest.raises(AssertionError, match=rf"^check_dropout: (.|\n)*{named}"):
        check_dropout(wrong)


def test_a_dropout_stub_passes_through():
    with pytest.raises(NotImplementedError):
        check_dropout(not_written)


def test_the_solutions_the_notebook_shows_passing_pass(capsys):
    """05 ends its exercises with the package's own functions in the exercises' signatures."""
    from minibertgen.exercises import inverted_dropout, post_ln_layer

    check_layer_forward(post_ln_layer)
    check_dropout(inverted_dropout)
    assert capsys.readouterr().out.count("\n") == 2
