"""The code's structure, tested: the model-level pure forward/backward pair, the decoding keys and
values (``present``) apart from the backward cache, one dispatch for the position types, one
top-candidates rule for beam search, and an import graph without cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import minibertgen as mbg
from minibertgen.attention import position_scores_forward, relative_scores, uses_query_positions
from minibertgen.generate import top_candidates
from minibertgen.stack import decoder_forward, encode, encoder_decoder_backward, encoder_decoder_forward
from minibertgen.exercises import beam_step
from minibertgen.testing import grad_check

from .conftest import perturb

PACKAGE = Path(mbg.__file__).resolve().parent
POSITION_TYPES = ("absolute", "relative_key", "relative_key_query")


def tiny_bert2bert(position_embedding_type, *, enc_hidden=8, tie=False, seed=0):
    def part(hidden, **kw):
        return mbg.BertGenerationConfig(vocab_size=13, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=10, max_position_embeddings=12, hidden_dropout_prob=0.0,
                                        attention_probs_dropout_prob=0.0, position_embedding_type=position_embedding_type,
                                        **kw)  # fmt: skip

    config = mbg.EncoderDecoderConfig(part(8 if tie else enc_hidden), part(8, is_decoder=True, add_cross_attention=True),
                                      tie_encoder_decoder=tie, decoder_start_token_id=1, pad_token_id=0)  # fmt: skip
    return perturb(mbg.EncoderDecoderModel(config, seed=seed, dtype="float64"), seed=seed)


@pytest.mark.parametrize("position_embedding_type", POSITION_TYPES)
@pytest.mark.parametrize(("enc_hidden", "tie"), [(8, False), (6, False), (8, True)], ids=["plain", "projected", "tied"])
def test_the_model_level_pair_passes_grad_check(position_embedding_type, enc_hidden, tie):
    """encoder_decoder_forward/backward on their own, float64, every parameter and the loss path."""
    model = tiny_bert2bert(position_embedding_type, enc_hidden=enc_hidden, tie=tie)
    rng = np.random.default_rng(1)
    ids = rng.integers(2, 13, size=(2, 5))
    mask = np.array([[1.0] * 5, [1.0] * 3 + [0.0] * 2])
    dec_ids = rng.integers(2, 13, size=(2, 4))
    labels = rng.integers(2, 13, size=(2, 4))
    labels[1, -1] = -100  # an ignored position
    cfg = model.config

    def loss(flat):
        out, _ = encoder_decoder_forward(mbg.unflatten(flat), cfg, ids, mask, dec_ids, None, labels)
        return float(out["loss"])

    flat = mbg.flatten(model.params)
    out, cache = encoder_decoder_forward(model.params, cfg, ids, mask, dec_ids, None, labels)
    assert out["logits"].shape == (2, 4, 13)
    grads = mbg.flatten(encoder_decoder_backward(None, cache, cfg))
    assert "enc_to_dec_proj.weight" in grads if enc_hidden != 8 else "enc_to_dec_proj.weight" not in grads
    assert not any(k.startswith("encoder.") for k in grads) if tie else any(k.startswith("encoder.") for k in grads)
    # float64, eps 1e-6: truncation ~1e-12, round-off ~1e-10 (grad_check's defaults)
    grad_check(loss, flat, grads, only={k: (np.arange(v.shape[0]) != 0)[:, None] * np.ones(v.shape)
                                        for k, v in flat.items() if k.endswith("word_embeddings.weight")})  # fmt: skip


def test_the_class_is_the_pure_pair():
    """EncoderDecoderModel.__call__ / .backward add input checks only: same logits, loss, gradients."""
    model = tiny_bert2bert("relative_key_query", enc_hidden=6)
    ids, labels = np.array([[3, 4, 5, 6]]), np.array([[7, 8, 2]])
    out = model(ids, labels=labels)
    grads = mbg.flatten(model.backward(out))
    dec_ids = np.array([[1, 7, 8]])
    pure, cache = encoder_decoder_forward(model.params, model.config, ids, None, dec_ids, np.ones((1, 3)), labels)
    np.testing.assert_array_equal(out.logits, pure["logits"])
    assert float(out.loss) == float(pure["loss"])
    for k, v in mbg.flatten(encoder_decoder_backward(None, cache, model.config)).items():
        np.testing.assert_array_equal(grads[k], v)


@pytest.mark.parametrize("position_embedding_type", POSITION_TYPES)
def test_present_of_a_full_forward_equals_the_keys_and_values_built_step_by_step(position_embedding_type):
    model = tiny_bert2bert(position_embedding_type, enc_hidden=6)
    params, cfg = model.params, model.config
    ids = np.array([[3, 4, 5, 6, 7], [8, 9, 10, 0, 0]])
    mask = (ids != 0).astype(float)
    memory, _, _, _ = encode(params, cfg, ids, mask)
    tokens = np.array([[1, 4, 9, 2], [1, 5, 5, 11]])
    _, _, full, _ = decoder_forward(params["decoder"], cfg.decoder, tokens, memory=memory, memory_mask=mask)
    past = None
    for t in range(tokens.shape[1]):
        _, _, past, _ = decoder_forward(params["decoder"], cfg.decoder, tokens[:, t : t + 1], memory=memory,
                                        memory_mask=mask, past=past)  # fmt: skip
    assert len(past) == len(full) == cfg.decoder.num_hidden_layers
    for step, whole in zip(past, full):
        assert set(step) == set(whole) == {"self", "cross"}
        assert step["self"]["k"].shape == (2, 2, 4, 4)  # (B, H, T, Dh): every position so far
        for part in ("self", "cross"):
            for name in ("k", "v"):
                # float64; the same products in another order: rounding ~1e-15
                np.testing.assert_allclose(step[part][name], whole[part][name], rtol=0, atol=1e-12)


def test_each_position_type_is_dispatched_explicitly_and_an_unknown_one_raises():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(1, 2, 3, 4)), rng.normal(size=(1, 2, 3, 4))
    p = {"distance_embedding": {"weight": rng.normal(size=(2 * 5 - 1, 4))}}
    positions = np.arange(3)
    assert [uses_query_positions(t) for t in POSITION_TYPES] == [False, True, True]
    extra, _ = position_scores_forward(q, k, p, "absolute", None, 5)
    assert extra is None
    key, _ = position_scores_forward(q, k, p, "relative_key", positions, 5)
    key_query, _ = position_scores_forward(q, k, p, "relative_key_query", positions, 5)
    assert key.shape == key_query.shape == (1, 2, 3, 3) and not np.allclose(key, key_query)  # the key term differs
    for bad in ("rotary", "relative", None):
        with pytest.raises(ValueError, match="position_embedding_type"):
            uses_query_positions(bad)
        with pytest.raises(ValueError, match="position_embedding_type"):
            position_scores_forward(q, k, p, bad, positions, 5)
    with pytest.raises(ValueError, match="not a relative position type"):
        relative_scores(q, k, np.zeros((3, 3, 4)), "absolute")


def test_top_candidates_are_best_first_with_ties_in_index_order():
    scores = np.array([[0.5, 2.0, 2.0, -1.0, 2.0, 0.5], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    indices, values = top_candidates(scores, 4)
    assert indices.tolist() == [[1, 2, 4, 0], [0, 1, 2, 3]]  # the tie at the cut (0.5) goes to index 0, not 5
    assert values.tolist() == [[2.0, 2.0, 2.0, 0.5], [1.0, 1.0, 1.0, 1.0]]
    rng = np.random.default_rng(0)
    for _ in range(200):  # with constructed ties: the same as a full stable sort
        row = rng.integers(0, 4, size=(3, 17)).astype(np.float32)
        n = int(rng.integers(1, 18))
        indices, values = top_candidates(row, n)
        full = np.argsort(-row, axis=1, kind="stable")[:, :n]
        assert indices.tolist() == full.tolist()
        np.testing.assert_array_equal(values, np.take_along_axis(row, full, axis=1))
    with pytest.raises(ValueError, match="n must be"):
        top_candidates(scores, 7)


def test_notebook_beam_step_uses_the_same_rule():
    sums = np.array([0.0, -0.5], dtype=np.float32)
    log_probs = np.log(np.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]], dtype=np.float32))
    parents, tokens, new_sums = beam_step(sums, log_probs)
    # candidates: beam 0: -0.69, -1.39, -1.39; beam 1: -1.19, -1.89, -1.89
    assert parents.tolist() == [0, 1] and tokens.tolist() == [0, 0]
    # float32 sums of two terms against float64 logs: float32 rounding, ~1e-7 relative
    np.testing.assert_allclose(new_sums, [np.log(0.5), -0.5 + np.log(0.5)], rtol=1e-6)


# ---------------------------------------------------------------- the import graph


def package_imports() -> dict[str, set[str]]:
    """{module: the package modules it imports}, at any level (function-level imports included)."""
    graph = {}
    for path in PACKAGE.glob("*.py"):
        name = path.stem
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:  # from .x import y
                    targets.add(node.module.split(".")[0])
                elif node.level == 1:  # from . import x
                    targets.update(alias.name for alias in node.names)
                elif node.module and node.module.startswith("minibertgen."):
                    targets.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                targets.update(a.name.split(".")[1] for a in node.names if a.name.startswith("minibertgen."))
        graph[name] = targets - {name}
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    graph = package_imports()
    assert {"model", "stack", "generate", "blocks"} <= set(graph)
    assert "model" not in graph["generate"] and "model" not in graph["stack"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the finder finds one


def test_generate_reads_no_private_member_of_another_module():
    tree = ast.parse((PACKAGE / "generate.py").read_text(encoding="utf-8"))
    private = [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
               and node.attr.startswith("_") and not node.attr.startswith("__")]  # fmt: skip
    assert private == []
