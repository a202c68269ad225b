"""Hypothesis strategies for tiny configs and padded inputs, shared by the property and oracle tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from minibertgen.config import ACTIVATIONS, POSITION_EMBEDDING_TYPES, BertGenerationConfig

POSITION_TYPES = st.sampled_from(POSITION_EMBEDDING_TYPES)


@st.composite
def part_configs(draw, **fixed) -> BertGenerationConfig:
    """A tiny BertGeneration stack: 1-4 heads of 1-6 dims, 1-3 layers, any activation and position type."""
    heads = draw(st.integers(1, 4))
    fields = dict(
        vocab_size=draw(st.integers(8, 40)),
        hidden_size=heads * draw(st.integers(1, 6)),
        num_attention_heads=heads,
        num_hidden_layers=draw(st.integers(1, 3)),
        intermediate_size=draw(st.integers(1, 20)),
        hidden_act=draw(st.sampled_from(ACTIVATIONS)),
        max_position_embeddings=draw(st.integers(12, 24)),
        position_embedding_type=draw(POSITION_TYPES),
        initializer_range=draw(st.sampled_from([0.02, 0.3, 1.0])),
        tie_word_embeddings=draw(st.booleans()),
    )
    fields.update(fixed)
    return BertGenerationConfig(**fields)


@st.composite
def padded_ids(draw, vocab_size, max_len, batch=None, min_kept=0):
    """(ids (B, L), mask (B, L)): random ids, each row keeping a random prefix (possibly none)."""
    batch = batch or draw(st.integers(1, 3))
    length = draw(st.integers(1, max_len))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab_size, size=(batch, length))
    kept = [draw(st.integers(min(min_kept, length), length)) for _ in range(batch)]
    mask = (np.arange(length)[None, :] < np.array(kept)[:, None]).astype(np.int64)
    return ids, mask
