"""The tutorials' exercise graders: the notebooks end with exercises, and these grade them.

Each chapter's checkers live in their own module and are re-exported here, so a notebook writes
``from minibertgen.exercises import check_causal_mask``. Each checker grades a learner's function
against the package's own on random shapes and seeds. The solutions *are* the package's functions
(or thin views of them), so exercise and implementation can never drift apart, and no notebook
shows one. A wrong answer raises AssertionError saying what is wrong, on which input, with a hint;
a right one prints one line. A stub that raises NotImplementedError is let through unchanged.

- ``attention``: the causal mask (03), the KV cache append and one decoder step (06)
- ``backprop``: softmax's backward (08)
- ``search``: one beam step (11), and the demonstrations 06 and 11 call instead of showing an answer
- ``training``: copying self- into cross-attention for a warm start (09), the warmup schedule (10)
"""

from .attention import cached_self_attention, check_cached_attention, check_causal_mask, check_decoder_step
from .backprop import check_softmax_backward
from .search import beam_step, cache_vs_full, check_beam_step, ranked_continuations
from .training import check_copy_cross_attention, check_warmup_schedule

__all__ = [
    "beam_step", "cache_vs_full", "cached_self_attention", "check_beam_step", "check_cached_attention",
    "check_causal_mask", "check_copy_cross_attention", "check_decoder_step", "check_softmax_backward",
    "check_warmup_schedule", "ranked_continuations",
]  # fmt: skip
