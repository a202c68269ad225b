"""What every exercise checker shares: a graded failure with a hint, calling the learner's code safely,
and bringing its answer to the host as a NumPy array."""

from __future__ import annotations

import numpy as np

from ..backend import to_numpy


def _exercise_error(exercise: str, what: str, hint: str) -> AssertionError:
    return AssertionError(f"{exercise}: {what}\nHint: {hint}")


def _call_learner(exercise: str, fn, args: tuple, where: str):
    """fn(*args), turning any error but NotImplementedError into a graded failure."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as exc:  # the learner's code crashed: say on which input
        raise _exercise_error(
            exercise, f"your function raised {type(exc).__name__}: {exc} ({where})",
            "run it by hand on that input and compare shapes with the docstring",
        ) from exc


def _host(x, exercise: str, what: str) -> np.ndarray:
    try:
        return np.asarray(to_numpy(x))
    except Exception as exc:
        raise _exercise_error(exercise, f"{what} is not an array ({type(x).__name__})", "return a numpy array") from exc


def _tiny_bert2bert(seed: int, position_embedding_type: str, vocab_size: int = 20):
    """A small float64 bert2bert with every weight moved off its init, for the exercise checkers."""
    from ..config import BertGenerationConfig, EncoderDecoderConfig
    from ..model import EncoderDecoderModel
    from ..weights import flatten, unflatten

    part = BertGenerationConfig(vocab_size=vocab_size, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                                intermediate_size=16, max_position_embeddings=24,
                                position_embedding_type=position_embedding_type)  # fmt: skip
    config = EncoderDecoderConfig(part, part, decoder_start_token_id=2, pad_token_id=0, eos_token_id=1)
    model = EncoderDecoderModel(config, seed=seed, dtype="float64")
    rng = np.random.default_rng(seed)
    model.params = unflatten({k: v + rng.normal(0.0, 0.3, v.shape) for k, v in flatten(model.params).items()})
    return model
