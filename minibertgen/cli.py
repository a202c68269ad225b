"""The ``minibertgen`` command.

    minibertgen info DIR       config, parameter count and layout of a checkpoint folder
    minibertgen verify         compare against the committed reference dumps (and live transformers)

Every subcommand exits non-zero with one line on stderr for bad input; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__


def _load_any(path):
    """The right class for a checkpoint folder, by its config.json."""
    from .config import read_json
    from .model import BertGenerationDecoder, BertGenerationEncoder, EncoderDecoderModel

    config = read_json(os.path.join(os.fspath(path), "config.json"))
    if config.get("model_type") == "encoder-decoder":
        return EncoderDecoderModel.from_pretrained(path)
    architectures = config.get("architectures") or []
    if config.get("is_decoder") or any("Decoder" in a or "LMHead" in a for a in architectures):
        return BertGenerationDecoder.from_pretrained(path, strict=False)
    return BertGenerationEncoder.from_pretrained(path, strict=False)


def cmd_info(args) -> int:
    from .weights import flatten

    model = _load_any(args.model)
    print(f"{type(model).__name__} from {args.model}")
    print(f"parameters: {model.num_parameters():,} ({model.dtype}, backend {model.backend})")
    config = model.config.to_dict()
    for part in ("encoder", "decoder"):
        if isinstance(config.get(part), dict):
            config[part] = {k: v for k, v in config[part].items() if k in _SUMMARY_FIELDS}
    print("config:", json.dumps({k: v for k, v in config.items() if k in _SUMMARY_FIELDS or k in ("encoder", "decoder")}, indent=2))
    print("load report:", str(model.load_report).replace("\n", "\n  "))
    if args.layout:
        for name, value in flatten(model.params).items():
            print(f"  {name:70s} {tuple(value.shape)}")
    return 0


_SUMMARY_FIELDS = {
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "max_position_embeddings", "position_embedding_type", "is_decoder", "add_cross_attention",
    "tie_word_embeddings", "tie_encoder_decoder", "decoder_start_token_id", "pad_token_id",
}  # fmt: skip


def cmd_verify(args) -> int:
    from .verify import run_verify

    return run_verify(dumps=args.dumps, live=not args.no_live)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minibertgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"minibertgen {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="show a checkpoint folder's config, size and layout")
    p.add_argument("model", type=Path, help="a checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--layout", action="store_true", help="list every tensor with its shape")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("verify", help="compare minibertgen against the reference dumps and live transformers")
    p.add_argument("--dumps", type=Path, default=None, help="folder of reference dumps (default: the repo's)")
    p.add_argument("--no-live", action="store_true", help="skip the live comparison even if transformers is installed")
    p.set_defaults(func=cmd_verify)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        if args.debug:
            raise
        print(f"minibertgen {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
