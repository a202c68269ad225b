"""Bad input gets a clear error: the table of docs/errors.md, as parametrized tests, plus fuzzing.

CASES is the one source of the table: ``python scripts/make_error_table.py`` writes docs/errors.md
from it, and ``test_the_documented_table_is_current`` fails when the two drift apart.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minibertgen as mbg
from minibertgen.tokenization import BertGenerationTokenizer, BertTokenizer
from minibertgen.weights import CheckpointError, read_safetensors, write_safetensors

from .conftest import SHARED

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
SPM = SHARED / "fixtures" / "test_sentencepiece.model"
PART = dict(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
            max_position_embeddings=16)  # fmt: skip


@dataclass
class Case:
    area: str
    bad_input: str
    error: type
    match: str  # a regex the message must contain
    trigger: Callable  # trigger(tmp_path) raises


def saved(tmp, kind="encoder"):
    """A tiny checkpoint folder of ``kind`` in tmp/kind."""
    folder = tmp / kind
    part = mbg.BertGenerationConfig(**PART)
    if kind == "encoder":
        mbg.BertGenerationEncoder(part).save_pretrained(folder)
    else:
        mbg.EncoderDecoderModel(mbg.EncoderDecoderConfig(part, part, decoder_start_token_id=2, pad_token_id=0,
                                                         eos_token_id=1)).save_pretrained(folder)  # fmt: skip
    return folder


def edit_tensors(folder, edit):
    tensors = read_safetensors(folder / "model.safetensors")
    edit(tensors)
    write_safetensors(folder / "model.safetensors", tensors)
    return folder


def edit_config(folder, edit):
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def edit_bytes(folder, edit):
    path = folder / "model.safetensors"
    path.write_bytes(edit(path.read_bytes()))
    return folder


def header_lie(data: bytes) -> bytes:
    """Double one tensor's end offset in the header, keeping its length: the header lies."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"][1] += 4
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= n, "the edited header must fit in the original's space"
    return data[:8] + text.ljust(n) + data[8 + n :]


def sharded(tmp, *, index_of=None, duplicate=False):
    """A tiny encoder saved as two shards and model.safetensors.index.json.

    index_of(weight_map) -> what the index file holds instead of the right one; duplicate=True also
    writes the first shard's first tensor into the second shard."""
    folder = saved(tmp)
    tensors = read_safetensors(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"a.safetensors": names[: len(names) // 2], "b.safetensors": names[len(names) // 2 :]}
    if duplicate:
        shards["b.safetensors"] = shards["b.safetensors"] + names[:1]
    for shard, members in shards.items():
        write_safetensors(folder / shard, {k: tensors[k] for k in members})
    weight_map = {k: shard for shard, members in reversed(shards.items()) for k in members}
    index = index_of(weight_map) if index_of else {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def outside(weight_map):
    """An index whose first shard is a path out of the folder (to a copy placed there)."""
    name = next(iter(weight_map))
    return {"weight_map": {**weight_map, name: "../elsewhere.safetensors"}}


def load_encoder(folder, **kw):
    return mbg.BertGenerationEncoder.from_pretrained(folder, **kw)


def model():
    part = mbg.BertGenerationConfig(**PART)
    return mbg.EncoderDecoderModel(mbg.EncoderDecoderConfig(part, part, decoder_start_token_id=2, pad_token_id=0,
                                                            eos_token_id=1))  # fmt: skip


def config(**kw):
    return mbg.BertGenerationConfig(**{**PART, **kw})


def cli(*args):
    """Run the CLI in a subprocess; raise SystemExit-like error text for the table."""
    result = subprocess.run([sys.executable, "-m", "minibertgen", *map(str, args)], capture_output=True, text=True)
    raise CliFailed(result.returncode, result.stderr)


class CliFailed(Exception):
    def __init__(self, code, stderr):
        super().__init__(f"exit {code}: {stderr.strip()}")
        self.code, self.stderr = code, stderr


def training():
    import minibertgen.train

    return minibertgen.train


def jsonl(path, pairs):
    path.write_text("".join(json.dumps({"source": s, "target": t}) + "\n" for s, t in pairs))
    return path


def tiny_run(out, pairs=(("ab", "ba"), ("abc", "cba")), lr=1e-3, **kw):
    """One step of a tiny bert2bert on letters (the CharTokenizer of test_train) into ``out``."""
    from .test_train import CharTokenizer, tiny_model

    T = training()
    return T.train(tiny_model(), CharTokenizer(), pairs, out, T.TrainSettings(steps=1, batch_size=2, lr=lr),
                   progress=False, **kw)  # fmt: skip


def with_free_space(free, action):
    """Run ``action`` while shutil.disk_usage reports ``free`` bytes free."""
    import shutil
    from unittest import mock

    real = shutil.disk_usage
    with mock.patch.object(shutil, "disk_usage", lambda p: real(p)._replace(free=free)):
        return action()


def negative_moment(checkpoint):
    path = Path(checkpoint) / "optimizer.safetensors"
    moments = read_safetensors(path)
    name = next(k for k in moments if k.startswith("v."))
    moments[name] = moments[name] - 1.0
    write_safetensors(path, moments)
    return checkpoint


TrainingError = training().TrainingError

CASES = [
    # ---- checkpoints
    Case("checkpoint", "missing folder", FileNotFoundError, "checkpoint folder not found|config file not found",
         lambda t: load_encoder(t / "absent")),
    Case("checkpoint", "config.json that is not JSON", ValueError, "is not valid JSON",
         lambda t: load_encoder((lambda f: (f / "config.json").write_text("{oops") and f)(saved(t)))),
    Case("checkpoint", "config.json of another model type", ValueError, "'gpt2' is not a BERT-family model",
         lambda t: load_encoder(edit_config(saved(t), lambda c: c.update(model_type="gpt2")))),
    Case("checkpoint", "config.json lacking the encoder part (bert2bert)", ValueError, "lacks its 'encoder' config",
         lambda t: mbg.EncoderDecoderModel.from_pretrained(edit_config(saved(t, "ed"), lambda c: c.pop("encoder")))),
    Case("checkpoint", "config.json with a wrongly typed field", ValueError, "tie_word_embeddings must be true or false",
         lambda t: load_encoder(edit_config(saved(t), lambda c: c.update(tie_word_embeddings="no")))),
    Case("checkpoint", "no model.safetensors", FileNotFoundError, "no model.safetensors",
         lambda t: load_encoder((lambda f: (f / "model.safetensors").unlink() or f)(saved(t)))),
    Case("checkpoint", "only a pickle-based pytorch_model.bin", CheckpointError, "never unpickles.*save_pretrained",
         lambda t: load_encoder((lambda f: ((f / "model.safetensors").unlink(), (f / "pytorch_model.bin").write_bytes(b"x"), f)[2])(saved(t)))),
    Case("checkpoint", "truncated model.safetensors", CheckpointError, "truncated or corrupt",
         lambda t: load_encoder(edit_bytes(saved(t), lambda b: b[:-64]))),
    Case("checkpoint", "a header that is not JSON", CheckpointError, "header is not valid JSON",
         lambda t: load_encoder(edit_bytes(saved(t), lambda b: b[:8] + b"!" + b[9:]))),
    Case("checkpoint", "a header that lies about offsets", CheckpointError, "do not fit",
         lambda t: load_encoder(edit_bytes(saved(t), header_lie))),
    Case("checkpoint", "a weight stored as integers", CheckpointError, "expected a floating-point type",
         lambda t: load_encoder(edit_tensors(saved(t), lambda d: d.update({"embeddings.LayerNorm.bias": np.zeros(8, np.int32)})))),
    Case("checkpoint", "a tensor of the wrong shape", CheckpointError, r"has shape \(9,\), but the config needs \(8,\)",
         lambda t: load_encoder(edit_tensors(saved(t), lambda d: d.update({"embeddings.LayerNorm.bias": np.zeros(9, np.float32)})))),
    Case("checkpoint", "a missing tensor", CheckpointError, "missing tensors.*output.dense.bias",
         lambda t: load_encoder(edit_tensors(saved(t), lambda d: d.pop("encoder.layer.0.output.dense.bias")))),
    Case("checkpoint", "an unexpected tensor", CheckpointError, "unexpected tensors.*mystery",
         lambda t: load_encoder(edit_tensors(saved(t), lambda d: d.update(mystery=np.zeros(2, np.float32))))),
    Case("checkpoint", "a config that disagrees with the weights", CheckpointError, "config.json does not match the weights",
         lambda t: load_encoder(edit_config(saved(t), lambda c: c.update(vocab_size=31)))),
    Case("checkpoint", "config.json holding a list", ValueError, r"config.json holds an array, expected a JSON object",
         lambda t: load_encoder((lambda f: (f / "config.json").write_text("[1, 2]") and f)(saved(t)))),
    Case("checkpoint", "config.json holding null", ValueError, r"config.json holds null, expected a JSON object",
         lambda t: load_encoder((lambda f: (f / "config.json").write_text("null") and f)(saved(t)))),
    Case("checkpoint", "config.json that is not UTF-8", ValueError, r"config.json is not UTF-8 text: byte 0xff at offset 7",
         lambda t: load_encoder((lambda f: (f / "config.json").write_bytes(b'{"a": "\xff"}') and f)(saved(t)))),
    Case("checkpoint", "a config too big for this machine's memory", ValueError, r"parameters .* more than this machine's .* GiB of memory",
         lambda t: load_encoder(edit_config(saved(t), lambda c: c.update(vocab_size=10**12)), strict=False)),
    Case("checkpoint", "a weight holding NaN", CheckpointError, r"embeddings.LayerNorm.bias holds 1 non-finite values \(1 NaN, 0 inf\).*allow_nonfinite=True",
         lambda t: load_encoder(edit_tensors(saved(t), lambda d: d["embeddings.LayerNorm.bias"].__setitem__(3, np.nan)))),
    Case("checkpoint", "a shard index holding a list", ValueError, r"index.json holds an array",
         lambda t: load_encoder(sharded(t, index_of=lambda m: list(m)))),
    Case("checkpoint", "a shard index pointing outside the folder", CheckpointError, r"shard '../elsewhere.safetensors' is not a file name inside",
         lambda t: load_encoder(sharded(t, index_of=outside))),
    Case("checkpoint", "a tensor in two shards", CheckpointError, r"is in two shards, a.safetensors and b.safetensors",
         lambda t: load_encoder(sharded(t, duplicate=True))),
    Case("checkpoint", "a shard index naming a tensor no shard holds", CheckpointError, r"lists tensors that no shard holds: .*ghost",
         lambda t: load_encoder(sharded(t, index_of=lambda m: {"weight_map": {**m, "ghost": "a.safetensors"}}))),
    Case("checkpoint", "a bert2bert folder loaded as an encoder", ValueError, "EncoderDecoderModel.from_pretrained",
         lambda t: load_encoder(saved(t, "ed"))),
    # ---- model inputs
    Case("input", "token ids outside [0, vocab_size)", ValueError, r"token id 30, outside \[0, 30\)",
         lambda t: model()([[1, 30]], labels=[[1]])),
    Case("input", "non-integer token ids", ValueError, "integer token ids",
         lambda t: model()([[1.5, 2.0]], labels=[[1]])),
    Case("input", "a sequence longer than max_position_embeddings", ValueError, "longer than max_position_embeddings",
         lambda t: model()([list(range(1, 18))], labels=[[1]])),
    Case("input", "an attention mask of the wrong shape", ValueError, "attention_mask has shape",
         lambda t: model()([[1, 2]], [[1, 1, 1]], labels=[[1]])),
    Case("input", "a mask with values other than 0 and 1", ValueError, "only 0 and 1",
         lambda t: model()([[1, 2]], [[1, 0.5]], labels=[[1]])),
    Case("input", "labels not matching decoder_input_ids", ValueError, "labels has shape",
         lambda t: model()([[1, 2]], decoder_input_ids=[[2, 3]], labels=[[1]])),
    Case("input", "an empty batch", ValueError, "is empty",
         lambda t: model()(np.zeros((0, 4), int), labels=[[1]])),
    Case("input", "NaN in encoder_hidden_states", ValueError, "NaN or infinite",
         lambda t: model().decoder([[1, 2]], encoder_hidden_states=np.full((1, 2, 8), np.nan))),
    # ---- configs
    Case("config", "heads not dividing hidden_size", ValueError, "must be a multiple of num_attention_heads",
         lambda t: config(hidden_size=10, num_attention_heads=4)),
    Case("config", "an unknown activation", ValueError, "hidden_act 'gelu2' is not supported",
         lambda t: config(hidden_act="gelu2")),
    Case("config", "an unknown position type", ValueError, "position_embedding_type 'rotary'",
         lambda t: config(position_embedding_type="rotary")),
    Case("config", "a zero or negative size", ValueError, "num_hidden_layers must be a positive integer",
         lambda t: config(num_hidden_layers=0)),
    Case("config", "cross-attention on a non-decoder", ValueError, "add_cross_attention=True needs is_decoder=True",
         lambda t: mbg.BertGenerationDecoder(config(add_cross_attention=True))),
    Case("config", "tie_encoder_decoder with different shapes", ValueError, "tie_encoder_decoder needs equal hidden_size",
         lambda t: mbg.EncoderDecoderConfig(config(), config(hidden_size=12, num_attention_heads=2), tie_encoder_decoder=True)),
    # ---- generation
    Case("generate", "num_beams < 1", ValueError, "num_beams must be an integer >= 1",
         lambda t: model().generate([[1, 2]], num_beams=0)),
    Case("generate", "num_return_sequences > num_beams", ValueError, "num_return_sequences .* must be <= num_beams",
         lambda t: model().generate([[1, 2]], num_beams=2, num_return_sequences=3)),
    Case("generate", "a negative length", ValueError, "min_new_tokens must be an integer >= 0",
         lambda t: model().generate([[1, 2]], max_new_tokens=3, min_new_tokens=-1)),
    Case("generate", "max_new_tokens beyond the position table", ValueError, "exceeds what the decoder's max_position_embeddings",
         lambda t: model().generate([[1, 2]], max_new_tokens=20)),
    Case("generate", "no start token anywhere", ValueError, "decoder_start_token_id \\(or bos_token_id\\) is needed",
         lambda t: mbg.EncoderDecoderModel(mbg.EncoderDecoderConfig(config(bos_token_id=None), config(bos_token_id=None))).generate([[1, 2]], max_new_tokens=3)),
    Case("generate", "a misspelt argument", ValueError, "unknown argument 'num_beam'; did you mean num_beams\\?",
         lambda t: model().generate([[1, 2]], num_beam=2)),
    Case("generate", "a transformers argument not implemented here", ValueError, "'num_beam_groups' is a transformers argument that minibertgen does not support",
         lambda t: model().generate([[1, 2]], num_beam_groups=2)),
    Case("generate", "a temperature of 0 when sampling", ValueError, "temperature must be a positive number",
         lambda t: model().generate([[1, 2]], do_sample=True, temperature=0.0, max_new_tokens=3)),
    Case("generate", "sampling where every token is banned", ValueError, "no token left to draw",
         lambda t: model().generate([[1, 2]], do_sample=True, max_new_tokens=3, suppress_tokens=list(range(model().config.decoder.vocab_size)))),
    Case("generate", "a streamer with beam search", ValueError, "streamer= works with greedy decoding and sampling only",
         lambda t: model().generate([[1, 2]], num_beams=2, max_new_tokens=3, streamer=object())),
    # ---- tokenizers
    Case("tokenizer", "bytes instead of text", TypeError, "str",
         lambda t: BertGenerationTokenizer(SPM).encode(b"\xff\xfe")),
    Case("tokenizer", "a vocab file that is not a sentencepiece model", ValueError, "sentencepiece",
         lambda t: BertGenerationTokenizer((lambda p: (p.write_text("not a model"), p)[1])(t / "x.model"))),
    Case("tokenizer", "truncation without max_length", ValueError, "max_length",
         lambda t: BertGenerationTokenizer(SPM)(["a b c"], truncation=True)),
    Case("tokenizer", "a missing vocab.txt", FileNotFoundError, "vocab",
         lambda t: BertTokenizer(t / "vocab.txt")),
    Case("tokenizer", "a vocab.txt that is not UTF-8", ValueError, r"vocab.txt is not UTF-8 text: byte 0xe9 at offset 9",
         lambda t: BertTokenizer((lambda p: (p.write_bytes(b"[PAD]\ncaf\xe9\n"), p)[1])(t / "vocab.txt"))),
    # ---- training
    Case("train", "a data line that is not JSON", ValueError, r"data.jsonl:1: not a JSON object",
         lambda t: __import__("minibertgen.train").train.read_pairs((lambda p: (p.write_text("{x\n"), p)[1])(t / "data.jsonl"))),
    Case("train", "a learning rate that is not finite", ValueError, r"lr must be a finite number > 0, got inf",
         lambda t: training().TrainSettings(lr=float("inf"))),
    Case("train", "a nan --max-grad-norm", ValueError, r"max_grad_norm must be a finite number > 0, got nan",
         lambda t: training().TrainSettings(max_grad_norm=float("nan"))),
    Case("train", "a new run in a folder holding a run", TrainingError, r"holds a training run .*--resume",
         lambda t: (tiny_run(t / "run"), tiny_run(t / "run"))),
    Case("train", "a new run in a folder with other files", TrainingError, r"is not empty .*a new run needs an empty",
         lambda t: ((t / "run").mkdir(), (t / "run" / "notes.txt").write_text("x"), tiny_run(t / "run"))),
    Case("train", "a folder another process is training in", TrainingError, r"in use by another training run \(pid",
         lambda t: ((t / "run").mkdir(), (t / "run" / "train.lock").write_text(f"{os.getppid()}\n"), tiny_run(t / "run"))),
    Case("train", "an --out that cannot be written", TrainingError, r"cannot write in --out .*; give a writable folder",
         lambda t: ((t / "file").write_text("x"), tiny_run(t / "file" / "run"))),
    Case("train", "too little free space for a checkpoint", TrainingError, r"not enough free space in .* for a checkpoint",
         lambda t: with_free_space(0, lambda: tiny_run(t / "run"))),
    Case("train", "an example longer than the model's positions", TrainingError, r"data.jsonl:2: the source is 20 tokens after --max-source-len",
         lambda t: tiny_run(t / "run", training().read_pairs(jsonl(t / "data.jsonl", [("ab", "ab"), ("x" * 18, "ab")])))),
    Case("train", "--resume with other settings", TrainingError, r"this run differs from the one in .*: lr 0.001 -> 0.002",
         lambda t: (tiny_run(t / "run"), tiny_run(t / "run", lr=2e-3, resume=True))),
    Case("train", "--resume with a smaller data file", TrainingError, r"the --train data \(2 examples, sha256 \w+\.\.\. -> 1, ",
         lambda t: (tiny_run(t / "run"), tiny_run(t / "run", [("ab", "ba")], resume=True))),
    Case("train", "an optimizer state with negative second moments", ValueError, r"v\.\S+ holds negative values",
         lambda t: training().read_optimizer_state(negative_moment(tiny_run(t / "run").checkpoint))),
    # ---- command line: one line on stderr, non-zero exit, no traceback
    Case("cli", "info on a missing folder", CliFailed, r"exit 1: minibertgen info: error: .*not found", lambda t: cli("info", t / "absent")),
    Case("cli", "encode on a missing folder", CliFailed, r"exit 1: minibertgen encode: error", lambda t: cli("encode", t / "absent", "hi")),
    Case("cli", "train on a missing data file", CliFailed, r"exit 1: minibertgen train: error: data file not found",
         lambda t: cli("train", "--train", t / "none.jsonl", "--out", t / "run", "--model", t)),
    Case("cli", "train with --lr inf", CliFailed, r"exit 1: minibertgen train: error: lr must be a finite number > 0, got inf",
         lambda t: cli("train", "--train", t / "none.jsonl", "--out", t / "run", "--model", t, "--lr", "inf")),
    Case("cli", "generate with a bad argument", CliFailed, r"exit 2: minibertgen generate: error: argument --num-beams",
         lambda t: cli("generate", "--model", t, "x", "--num-beams", "many")),
    Case("cli", "fetch of an unknown checkpoint", CliFailed, r"exit 1: minibertgen fetch: error: unknown checkpoint",
         lambda t: cli("fetch", "no-such-model")),
    Case("cli", "demo with no held-out pairs", CliFailed, r"exit 1: minibertgen demo: error: the demo needs at least one training and one held-out pair",
         lambda t: cli("demo", "--heldout", "0", "--out", t / "demo", "--no-progress")),
    Case("cli", "info on a config.json holding a list", CliFailed, r"exit 1: minibertgen info: error: .*holds an array",
         lambda t: cli("info", (lambda f: (f / "config.json").write_text("[1, 2]") and f)(saved(t)))),
    Case("cli", "info on a config too big for memory", CliFailed, r"exit 1: minibertgen info: error: the config asks for",
         lambda t: cli("info", edit_config(edit_tensors(saved(t), lambda d: d.clear() or d.update(x=np.zeros(1, np.float32))),
                                           lambda c: c.update(vocab_size=10**12)))),
    Case("cli", "generate --file that is not UTF-8", CliFailed, r"exit 1: minibertgen generate: error: .*src.txt is not UTF-8 text",
         lambda t: cli("generate", "--model", saved(t, "ed"), "--file", (lambda p: (p.write_bytes(b"caf\xe9\n"), p)[1])(t / "src.txt"))),
    Case("cli", "verify with a missing dumps folder", CliFailed, r"exit 1: minibertgen verify: error: reference dumps not found",
         lambda t: cli("verify", "--dumps", t / "absent", "--no-live")),
]  # fmt: skip


def message_of(case: Case, tmp_path) -> str:
    with pytest.raises(case.error) as info:
        case.trigger(tmp_path)
    return str(info.value)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.area}: {c.bad_input}" for c in CASES])
def test_bad_input_gets_its_documented_error(case, tmp_path):
    message = message_of(case, tmp_path)
    assert re.search(case.match, message, re.S), f"{case.bad_input}: got {message!r}"
    if case.error is CliFailed:
        assert "Traceback" not in message and message.count("\n") == 0, message


def render_table(tmp_path_factory) -> str:
    lines = ["# Bad input and the error it gets", "",
             "Generated from `tests/test_errors.py` by `python scripts/make_error_table.py`; the tests check",
             "every row. Messages show one example (paths shortened to DIR).", "",
             "| area | bad input | error | message |", "|---|---|---|---|"]  # fmt: skip
    for case in CASES:
        tmp = tmp_path_factory.mktemp("case")
        message = message_of(case, tmp).replace(str(tmp), "DIR").replace("|", "\\|").replace("\n", " ")
        name = "exit code + one line on stderr" if case.error is CliFailed else case.error.__name__
        lines.append(f"| {case.area} | {case.bad_input} | {name} | {message[:160]} |")
    return "\n".join(lines) + "\n"


def table_rows(text: str) -> list[list[str]]:
    """(area, bad input, error) of each row; the message column is an example, checked above."""
    return [[cell.strip() for cell in line.split(" | ")[:3]] for line in text.splitlines() if line.startswith("| ") and "---" not in line]


def test_the_documented_table_is_current():
    documented = table_rows(DOCS.read_text())[1:]  # without the header row
    expected = [[f"| {c.area}", c.bad_input, "exit code + one line on stderr" if c.error is CliFailed else c.error.__name__]
                for c in CASES]  # fmt: skip
    assert documented == expected, "run: python scripts/make_error_table.py"


# ---------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    folder = saved(tmp_path_factory.mktemp("fuzz"))
    return (folder / "model.safetensors").read_bytes(), (folder / "config.json").read_text()


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_checkpoints_load_or_fail_clearly(good_file, tmp_path, data):
    """Truncations, byte flips and header edits: a clear error or a correct load, never another exception."""
    blob, config_text = good_file
    n = int.from_bytes(blob[:8], "little")
    mutation = data.draw(st.sampled_from(["truncate", "flip", "header"]))
    if mutation == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif mutation == "flip":
        position = data.draw(st.integers(0, len(blob) - 1))
        blob = blob[:position] + bytes([blob[position] ^ data.draw(st.integers(1, 255))]) + blob[position + 1 :]
    else:
        position = data.draw(st.integers(8, 8 + n - 1))
        blob = blob[:position] + data.draw(st.binary(min_size=1, max_size=4)) + blob[position + 1 :]
    folder = tmp_path / "f"
    folder.mkdir(exist_ok=True)
    (folder / "model.safetensors").write_bytes(blob)
    (folder / "config.json").write_text(config_text)
    try:
        model = mbg.BertGenerationEncoder.from_pretrained(folder)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        assert str(exc), "errors must say something"
        return
    assert model.num_parameters() > 0  # a flip in the data itself loads: the values are just different


json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=5)  # fmt: skip


@settings(max_examples=150)
@given(field=st.sampled_from(sorted(mbg.BertGenerationConfig().to_dict())), value=json_values)
def test_fuzzed_config_fields_give_a_config_or_a_value_error(field, value):
    d = {**mbg.BertGenerationConfig(**PART).to_dict(), field: value}
    try:
        cfg = mbg.BertGenerationConfig.from_dict(d)
    except ValueError as exc:
        assert field in str(exc) or "model_type" in str(exc)
        return
    assert cfg.hidden_size % cfg.num_attention_heads == 0


@settings(max_examples=200)
@given(text=st.text(max_size=60))
def test_tokenizers_take_any_unicode(text):
    for tok in (BertGenerationTokenizer(SPM),):
        ids = tok.encode(text)
        assert all(0 <= i < len(tok) for i in ids)
        assert isinstance(tok.decode(ids), str)


def test_cli_usage_errors_are_one_line():
    result = subprocess.run([sys.executable, "-m", "minibertgen", "train", "--steps", "x"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--help" in result.stderr
    assert io.StringIO(result.stdout).read() == ""


def test_a_nonfinite_checkpoint_loads_only_when_asked(tmp_path):
    folder = edit_tensors(saved(tmp_path), lambda d: d["embeddings.LayerNorm.bias"].__setitem__(3, np.inf))
    with pytest.raises(CheckpointError, match=r"1 non-finite values \(0 NaN, 1 inf\)"):
        load_encoder(folder)
    loaded = load_encoder(folder, allow_nonfinite=True)  # for inspecting a diverged run
    assert np.isinf(loaded.params["embeddings"]["LayerNorm"]["bias"][3])


def test_an_index_may_place_each_tensor_in_its_own_shard(tmp_path):
    """The shard checks refuse only what is wrong: a correct two-shard folder loads every tensor."""
    whole = load_encoder(saved(tmp_path / "one"))
    split = load_encoder(sharded(tmp_path / "two"))
    assert split.load_report.new == [] and len(split.load_report.loaded) == len(whole.load_report.loaded)


def test_an_unexpected_exception_is_a_one_line_bug_report_unless_debug(monkeypatch, capsys, tmp_path):
    from minibertgen import cli as cli_module

    def broken(args):
        raise TypeError("unsupported operand")  # stands for a bug: not an error the user can fix

    monkeypatch.setattr(cli_module, "cmd_info", broken)
    assert cli_module.main(["info", str(tmp_path)]) == cli_module.INTERNAL_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: TypeError: unsupported operand" in err and "please report" in err
    with pytest.raises(TypeError):
        cli_module.main(["--debug", "info", str(tmp_path)])
