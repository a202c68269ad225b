"""Exercises on the full layer (notebook 05): one post-LN encoder layer, and inverted dropout.

The solutions are the package's own functions: ``blocks.layer_forward`` (eval mode, no
cross-attention) and ``ops.dropout_forward``. When a learner's layer is wrong, the checker also
computes the usual mistakes (pre-LN, a missing residual, the tanh GELU, LayerNorm before the add,
the sub-blocks in the wrong order) from the same parts, and names the one the answer equals.
"""

from __future__ import annotations

import numpy as np

from ._grading import _call_learner, _exercise_error, _host

LAYER_ATOL = 1e-10  # float64: a right answer differs by summation order only (~1e-15), each known mistake by >= 2e-4


def random_layer_case(seed: int):
    """(x, p, mask_add, num_heads, eps) for one encoder layer with random weights, float64.

    x: (B, T, D); p: the layer's parameter tree as in the checkpoint ({"attention": {"self", "output"},
    "intermediate", "output"}); mask_add: the additive padding mask (B, 1, 1, T).
    """
    from ..attention import padding_mask

    rng = np.random.default_rng(seed)
    B, T = int(rng.integers(1, 4)), int(rng.integers(1, 7))
    H, Dh = int(rng.integers(1, 4)), int(rng.choice([4, 8]))  # D >= 4: LayerNorm of 2 features keeps only a sign
    D = H * Dh
    F = int(rng.integers(D, 3 * D + 1))

    def dense(n_out, n_in):  # scaled so the pre-activations are O(1): GELU's curved part matters
        return {"weight": rng.normal(0.0, 1.5 / np.sqrt(n_in), (n_out, n_in)), "bias": rng.normal(0.0, 0.3, n_out)}

    def layer_norm():
        return {"weight": 1.0 + rng.normal(0.0, 0.3, D), "bias": rng.normal(0.0, 0.3, D)}

    p = {
        "attention": {"self": {name: dense(D, D) for name in ("query", "key", "value")},
                      "output": {"dense": dense(D, D), "LayerNorm": layer_norm()}},
        "intermediate": {"dense": dense(F, D)},
        "output": {"dense": dense(D, F), "LayerNorm": layer_norm()},
    }  # fmt: skip
    x = rng.normal(0.0, 1.0, (B, T, D))
    keep = np.ones((B, T))
    keep[1:, T - int(rng.integers(0, T)):] = 0.0  # rows after the first may end in padding
    keep[:, 0] = 1.0  # every row keeps at least one real token
    return x, p, padding_mask(keep, np.float64), H, 1e-12


def _parts(p, mask_add, num_heads, eps, activation="gelu"):
    """The layer's pieces as small functions of the hidden states, for the known mistakes."""
    from ..attention import attention_forward
    from ..ops import activation_forward, layernorm_forward, linear_forward

    def attend(h):  # Wo . Attention(h): (B, T, D) -> (B, T, D)
        context, _ = attention_forward(h, p["attention"]["self"], mask_add, num_heads)
        return linear_forward(context, p["attention"]["output"]["dense"])[0]

    def ffn(h):  # W2 . act(W1 h + b1) + b2: (B, T, D) -> (B, T, F) -> (B, T, D)
        up = linear_forward(h, p["intermediate"]["dense"])[0]
        return linear_forward(activation_forward(up, activation)[0], p["output"]["dense"])[0]

    def ln1(h):
        return layernorm_forward(h, p["attention"]["output"]["LayerNorm"], eps)[0]

    def ln2(h):
        return layernorm_forward(h, p["output"]["LayerNorm"], eps)[0]

    return attend, ffn, ln1, ln2


def _known_mistakes(x, p, mask_add, num_heads, eps):
    """[(the output each mistake gives on this input, "the mistake: its fix")]."""
    attend, ffn, ln1, ln2 = _parts(p, mask_add, num_heads, eps)
    _, ffn_tanh, _, _ = _parts(p, mask_add, num_heads, eps, activation="gelu_new")
    a = ln1(attend(x) + x)  # the right first half
    pre = x + attend(ln1(x))
    after_ffn_first = ln2(ffn(x) + x)
    return [
        (pre + ffn(ln2(pre)), "pre-LN (x + f(LN(x))): BERT is post-LN, LN(x + f(x)), the LayerNorm comes after the add"),
        (ln2(ffn(ln1(attend(x)) + x)) + ln1(attend(x)) + x,
         "LayerNorm before the residual add (LN(f(h)) + h) in both sub-blocks: add first, then normalize: LN(f(h) + h)"),
        (ln2(ffn(ln1(attend(x)) + x) + ln1(attend(x)) + x),
         "LayerNorm before the attention's residual add: add first, then normalize: a = LN(attention(x) + x)"),
        (ln2(ffn(a)) + a, "LayerNorm before the FFN's residual add: the FFN sub-block is LN(ffn(a) + a)"),
        (ln2(ffn(ln1(attend(x))) + ln1(attend(x))), "no residual around attention: a = LN(attention(x) + x)"),
        (ln2(ffn(a)), "no residual around the feed-forward block: out = LN(ffn(a) + a)"),
        (ln2(ffn(ln1(attend(x)))), "no residual connections: each sub-block is LN(f(h) + h)"),
        (ln2(ffn_tanh(a) + a), "the tanh approximation of GELU: BERT's 'gelu' is the exact 0.5 x (1 + erf(x / sqrt 2))"),
        (ln2(ffn(a) + x), "the FFN's residual is the layer input x: it must be its own input a, the attention output"),
        (ln1(attend(after_ffn_first) + after_ffn_first),
         "the feed-forward block before attention: attention comes first, the FFN reads its output"),
    ]


def post_ln_layer(x, p, mask_add, num_heads, eps):
    """The solution of check_layer_forward: ``blocks.layer_forward`` in eval mode, in the exercise's signature."""
    from ..blocks import layer_forward
    from ..config import BertGenerationConfig

    cfg = BertGenerationConfig(hidden_size=x.shape[-1], num_attention_heads=num_heads, layer_norm_eps=eps, vocab_size=8,
                               intermediate_size=p["intermediate"]["dense"]["weight"].shape[0])  # fmt: skip
    return layer_forward(x, p, cfg, mask_add)[0]


def inverted_dropout(x, rate, rng, train):
    """The solution of check_dropout: ``ops.dropout_forward`` without its cache."""
    from ..ops import dropout_forward

    return dropout_forward(x, rate, rng, train)[0]


def check_layer_forward(fn, *, n_cases: int = 12, seed: int = 0) -> None:
    """Grade ``fn(x, p, mask_add, num_heads, eps) -> out`` against ``blocks.layer_forward`` (eval mode).

    x: (B, T, D) float64 hidden states; p: one encoder layer's parameters ({"attention": {"self":
    {"query", "key", "value"}, "output": {"dense", "LayerNorm"}}, "intermediate": {"dense"},
    "output": {"dense", "LayerNorm"}}); mask_add: the additive mask (B, 1, 1, T); eps: LayerNorm's.
    The answer is BERT's post-LN layer without dropout: a = LN1(Wo Attention(x) + x), then
    out = LN2(W2 GELU(W1 a + b1) + b2 + a), with the exact erf GELU. Returns None; raises
    AssertionError naming the mistake.
    """
    name = "check_layer_forward"
    for case in range(n_cases):
        x, p, mask_add, num_heads, eps = random_layer_case(seed + case)
        B, T, D = x.shape
        where = f"case {case}: B={B}, T={T}, D={D}, heads={num_heads}, {int((mask_add != 0).sum())} padded key(s)"
        given = x.copy()
        got = _host(_call_learner(name, fn, (given, p, mask_add, num_heads, eps), where), name, "the result")
        if not np.array_equal(given, x):
            raise _exercise_error(name, f"your function changed the x it was given ({where})",
                                  "h = h + ... makes a new array; h += ... writes into the caller's")
        if got.shape != x.shape:
            raise _exercise_error(name, f"shape {got.shape}, expected (B, T, D) = {x.shape} ({where})",
                                  "the layer maps (B, T, D) to (B, T, D): the FFN goes up to F and back down to D")
        expected = post_ln_layer(x, p, mask_add, num_heads, eps)
        err = float(np.abs(got - expected).max()) if np.isfinite(got).all() else float("inf")
        if err <= LAYER_ATOL:
            continue
        for wrong, hint in _known_mistakes(x, p, mask_add, num_heads, eps):
            if np.allclose(got, wrong, rtol=0.0, atol=LAYER_ATOL):
                mistake, fix = hint.split(": ", 1)
                raise _exercise_error(name, f"max abs error {err:.2e} ({where}): your layer computes {mistake}", fix)
        raise _exercise_error(
            name, f"max abs error {err:.2e}, tolerance {LAYER_ATOL:g} ({where})",
            "a = LN1(Wo . attention(x) + x) with p['attention']['output']; then "
            "LN2(W2 . gelu(W1 . a + b1) + b2 + a) with p['intermediate'] and p['output']; "
            "each LayerNorm uses its own block's weights, eps as given",
        )
    print(f"{name}: all {n_cases} random layers match minibertgen.blocks.layer_forward (eval mode)")


def check_dropout(fn, *, seed: int = 0) -> None:
    """Grade ``fn(x, rate, rng, train) -> out`` against ``ops.dropout_forward`` (its first output).

    Inverted dropout: in training, zero each entry independently with probability ``rate`` (drawn
    from ``rng``, a numpy Generator) and scale the kept ones by 1 / (1 - rate), so the expected
    value is unchanged; in eval (``train=False``), or with rate 0, return x unchanged.
    """
    name = "check_dropout"
    data = np.random.default_rng(seed)
    x = data.choice([-1.0, 1.0], (64, 128)) * data.uniform(0.5, 2.0, (64, 128))  # no zeros: a zero means dropped

    def run(rate, train, draw_seed, where):
        given = x.copy()
        got = _host(_call_learner(name, fn, (given, rate, np.random.default_rng(draw_seed), train), where), name,
                    "the result")  # fmt: skip
        if not np.array_equal(given, x):
            raise _exercise_error(name, f"your function changed the x it was given ({where})",
                                  "compute x * mask into a new array; never write into an input")
        if got.shape != x.shape:
            raise _exercise_error(name, f"shape {got.shape}, expected {x.shape} ({where})", "dropout is elementwise")
        return got

    for rate in (0.1, 0.5):
        where = f"train=False, rate={rate}"
        if not np.array_equal(run(rate, False, 1, where), x):
            raise _exercise_error(name, f"the output differs from x in eval mode ({where})",
                                  "dropout is active only in training: with train=False return x unchanged")
    where = "train=True, rate=0.0"
    if not np.array_equal(run(0.0, True, 1, where), x):
        raise _exercise_error(name, f"the output differs from x ({where})", "with rate 0 nothing is dropped or scaled")

    for case, rate in enumerate((0.1, 0.25, 0.5)):
        where = f"train=True, rate={rate}, x of shape {x.shape}"
        got = run(rate, True, 10 + case, where)
        kept = got != 0
        if kept.all():
            raise _exercise_error(name, f"no entry was zeroed ({where})",
                                  "draw one uniform number per entry with rng.random(x.shape) and drop it where it is < rate")
        if np.allclose(got[kept], x[kept], rtol=1e-12, atol=0.0):
            raise _exercise_error(
                name, f"the kept entries are not scaled ({where})",
                f"inverted dropout divides the kept entries by 1 - rate (here x / {1 - rate:g}), so that the expected "
                "value stays x and eval needs no rescaling",
            )
        if np.allclose(got[kept], x[kept] * (1.0 - rate), rtol=1e-12, atol=0.0):
            raise _exercise_error(name, f"the kept entries are multiplied by 1 - rate ({where})",
                                  "divide by 1 - rate instead: the expected value must stay x")
        if not np.allclose(got[kept], x[kept] / (1.0 - rate), rtol=1e-12, atol=0.0):
            raise _exercise_error(name, f"the kept entries are not x / (1 - rate) ({where})",
                                  "each entry is either 0 or x / (1 - rate)")
        dropped = 1.0 - kept.mean()
        sigma = np.sqrt(rate * (1 - rate) / x.size)
        if abs(dropped - rate) > 6 * sigma:
            hint = ("rate is the probability of DROPPING an entry, not of keeping it" if abs(dropped - (1 - rate)) < 6 * sigma
                    else "each entry is dropped independently with probability rate: rng.random(x.shape) < rate")  # fmt: skip
            raise _exercise_error(name, f"{dropped:.3f} of the entries were zeroed, expected about {rate} ({where})", hint)
        again = run(rate, True, 10 + case, where + ", the same seed again")
        if not np.array_equal(again, got):
            raise _exercise_error(name, f"two calls with equally seeded rngs gave different masks ({where})",
                                  "draw the mask from the rng you are given (rng.random), not from np.random")
        other = run(rate, True, 99 + case, where + ", another seed")
        if np.array_equal(other != 0, kept):
            raise _exercise_error(name, f"two different rngs gave the same mask ({where})",
                                  "draw a fresh random mask from the rng on every call")
    print(f"{name}: eval is the identity; in training 3 rates drop the right fraction and scale by 1/(1-rate), "
          "as minibertgen.ops.dropout_forward")
