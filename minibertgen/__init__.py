"""minibertgen: BertGeneration (bert2bert) from scratch in NumPy + CuPy, verified against transformers.

    import minibertgen as mbg
    cfg = mbg.BertGenerationConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=37)
    model = mbg.EncoderDecoderModel(mbg.EncoderDecoderConfig(cfg, cfg, decoder_start_token_id=2,
                                                             pad_token_id=0), seed=0)
    out = model([[5, 6, 7]], labels=[[8, 9, 1]])
    out.logits.shape, out.loss          # (1, 3, 99), scalar
"""

from .backend import get_backend, get_xp, set_backend, to_device, to_numpy
from .config import BertGenerationConfig, EncoderDecoderConfig
from .model import (
    BertGenerationDecoder,
    BertGenerationEncoder,
    DecoderOutput,
    EncoderDecoderModel,
    EncoderOutput,
    Seq2SeqOutput,
)
from .generate import GenerateOutput, TextStreamer
from .generation_config import GenerationConfig
from .auto_tokenizer import AutoTokenizer
from .tokenization_roberta import RobertaTokenizer
from .tokenization import BatchEncoding, BertGenerationTokenizer, BertTokenizer, TokenizerInputError
from .weights import CheckpointError, LoadReport, flatten, unflatten

__version__ = "0.1.0"

__all__ = [
    "AutoTokenizer",
    "BatchEncoding",
    "BertGenerationConfig",
    "BertGenerationTokenizer",
    "BertTokenizer",
    "GenerateOutput",
    "GenerationConfig",
    "TextStreamer",
    "RobertaTokenizer",
    "TokenizerInputError",
    "BertGenerationDecoder",
    "BertGenerationEncoder",
    "CheckpointError",
    "DecoderOutput",
    "EncoderDecoderConfig",
    "EncoderDecoderModel",
    "EncoderOutput",
    "LoadReport",
    "Seq2SeqOutput",
    "flatten",
    "get_backend",
    "get_xp",
    "set_backend",
    "to_device",
    "to_numpy",
    "unflatten",
]
