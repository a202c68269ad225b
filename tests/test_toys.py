"""minibertgen.toys: the reverse-and-stop task that notebooks 11 and 12 train their tiny model on."""

from __future__ import annotations

import numpy as np

from minibertgen.toys import EOS, PAD, reverse_and_stop


def test_labels_are_the_reversed_source_cut_after_at_least_two_tokens_then_eos():
    src, mask, labels = reverse_and_stop(np.random.default_rng(0), n=200)
    assert src.shape == mask.shape == (200, 6) and labels.shape == (200, 7)
    kept = []
    for s, m, y in zip(src, mask, labels):
        tokens = s[s != PAD]
        assert 4 <= len(tokens) <= 6 and (m == (s != PAD)).all() and (s[len(tokens):] == PAD).all()
        target = y[y != -100]
        keep = len(target) - 1
        assert target[-1] == EOS and 2 <= keep <= len(tokens)
        assert (target[:-1] == tokens[::-1][:keep]).all()
        kept.append(keep)
    # each token after the second is dropped with probability 0.4, so short and full targets both occur
    assert min(kept) == 2 and max(kept) == 6
