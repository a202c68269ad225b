"""The tutorials' exercise graders: the notebooks end with exercises, and these grade them.

Each chapter's checkers live in their own module and are re-exported here, so a notebook writes
``from minibertgen.exercises import check_causal_mask``. Each checker grades a learner's function
against the package's own on random shapes and seeds. The solutions *are* the package's functions
(or thin views of them), so exercise and implementation can never drift apart, and no notebook
shows one. A wrong answer raises AssertionError saying what is wrong, on which input, with a hint;
a right one prints one line. A stub that raises NotImplementedError is let through unchanged.

- ``tokenization``: WordPiece's greedy longest-match-first cut of one word (01)
- ``embeddings``: word + position rows, positions continuing after a KV cache, then LayerNorm (02)
- ``attention``: the causal mask (03), the KV cache append and one decoder step (06)
- ``positions``: the relative-distance table index for each (query, key) pair, cache included (04)
- ``layer``: one post-LN encoder layer and inverted dropout (05)
- ``loss``: labels -> decoder_input_ids (the right shift) and the masked mean cross-entropy (07)
- ``backprop``: softmax's backward and the masked cross-entropy's backward (08)
- ``training``: copying self- into cross-attention for a warm start (09), the warmup schedule (10)
- ``search``: one beam step (11), and the demonstrations 06 and 11 call instead of showing an answer
- ``sampling``: the top-p (nucleus) cut (12)
- ``backend``: a LayerNorm that runs on any array module, graded on a tracing backend (13)
- ``properties``: a hypothesis property of softmax that must catch planted bugs (14)
"""

from .attention import cached_self_attention, check_cached_attention, check_causal_mask, check_decoder_step
from .backend import check_layer_norm_any_backend
from .backprop import check_cross_entropy_backward, check_softmax_backward
from .embeddings import check_embeddings, embeddings_after_past
from .layer import check_dropout, check_layer_forward, inverted_dropout, post_ln_layer
from .loss import check_masked_loss, check_shift_right, masked_cross_entropy
from .positions import check_relative_distances, relative_distance_index
from .properties import PLANTED_BUGS, check_softmax_property, softmax_inputs, softmax_property
from .sampling import check_top_p
from .search import beam_step, cache_vs_full, check_beam_step, ranked_continuations
from .tokenization import check_wordpiece
from .training import check_copy_cross_attention, check_warmup_schedule

__all__ = [
    "PLANTED_BUGS", "beam_step", "cache_vs_full", "cached_self_attention", "check_beam_step",
    "check_cached_attention", "check_causal_mask", "check_copy_cross_attention", "check_cross_entropy_backward",
    "check_decoder_step", "check_dropout", "check_embeddings", "check_layer_forward",
    "check_layer_norm_any_backend", "check_masked_loss", "check_relative_distances", "check_shift_right",
    "check_softmax_backward", "check_softmax_property", "check_top_p", "check_warmup_schedule", "check_wordpiece",
    "embeddings_after_past", "inverted_dropout", "masked_cross_entropy", "post_ln_layer", "ranked_continuations",
    "relative_distance_index", "softmax_inputs", "softmax_property",
]  # fmt: skip
