"""``minibertgen verify``: the reference comparisons a user can trust at a glance.

1. The committed reference dumps (tests/fixtures/, written by transformers 4.57.6 in float64):
   every case is loaded from transformers' own files and run here, in float64 and float32; every
   parameter's gradient; generate() over a grid of greedy and beam settings.
2. The real MiniLM checkpoint, when fetched: against BertModel's published hidden states.
3. Live, when torch + transformers 4.57.6 are installed: fresh random models of each position
   type, built here, copied into transformers, run by both; and the MiniLM encoder vs BertModel.

Prints a table (component, max abs error, tolerance, ok) and returns 1 on any failure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .model import BertGenerationDecoder, BertGenerationEncoder, EncoderDecoderModel
from .testing import max_abs_error

DEFAULT_DUMPS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "reference"

# float64 throughout, activations O(1-10), two layers: ours and torch differ only by rounding order
# (~1e-15 relative); 1e-9 leaves room for that and still catches any real error, which is >= 1e-4.
ATOL64 = 1e-9
# Our float32 model against the float64 reference: float32 eps 6e-8 times logits of size ~10 and a
# few dozen accumulated terms; measured <= 3.6e-6 on every dump, so 2e-5 leaves margin.
ATOL32 = 2e-5
# BertGenerationDecoder's reference loss casts float64 logits to float32 first (ForCausalLMLoss,
# reference §7): float32 log-softmax of ~60 logits of size ~10 rounds to ~1e-6 of the loss.
ATOL_DECODER_LOSS = 5e-6


def dump_cases(folder: Path = DEFAULT_DUMPS) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir() if (p / "case.json").exists())


def read_dump(folder: Path) -> tuple[dict, dict]:
    """(case description, {name: array}) of one dump folder."""
    from safetensors.numpy import load_file

    case = json.loads((folder / "case.json").read_text())
    io = load_file(str(folder / "io.safetensors"))
    if "loss" in io:
        io["loss"] = io["loss"].reshape(())  # safetensors stores a scalar as shape (1,)
    return case, io


def run_case(folder: Path, dtype: str):
    """Load a dump's checkpoint with minibertgen and run its inputs.

    Returns (model, {output name: our array}, {name: reference array}); the output names are the
    dump's (hidden_states.i, logits, loss, ...).
    """
    case, io = read_dump(folder)
    kind = case["kind"]
    if kind == "encoder":
        model = BertGenerationEncoder.from_pretrained(folder, dtype=dtype)
        out = model.forward(io["input_ids"], io["attention_mask"])
        ours = {f"hidden_states.{i}": h for i, h in enumerate(out.hidden_states)}
    elif kind == "decoder":
        model = BertGenerationDecoder.from_pretrained(folder, dtype=dtype)
        cross = model.config.add_cross_attention
        out = model(
            io["input_ids"], io["attention_mask"],
            encoder_hidden_states=io["encoder_hidden_states"].astype(dtype) if cross else None,
            encoder_attention_mask=io["encoder_attention_mask"] if cross else None,
            labels=io["labels"],
        )  # fmt: skip
        ours = {"logits": out.logits, "loss": out.loss}
        ours.update({f"hidden_states.{i}": h for i, h in enumerate(out.hidden_states)})
    else:
        model = EncoderDecoderModel.from_pretrained(folder, dtype=dtype)
        out = model(io["input_ids"], io["attention_mask"], labels=io["labels"])
        ours = {"logits": out.logits, "loss": out.loss, "encoder_last_hidden_state": out.encoder_last_hidden_state}
        ours.update({f"decoder_hidden_states.{i}": h for i, h in enumerate(out.decoder_hidden_states)})
    return model, ours, io


def tolerance(case_name: str, output_name: str, dtype: str) -> float:
    if dtype == "float32":
        return ATOL32
    if output_name == "loss" and case_name.startswith("decoder"):
        return ATOL_DECODER_LOSS
    return ATOL64


def dump_rows(folder: Path = DEFAULT_DUMPS) -> list[tuple[str, float, float]]:
    """(component, max abs error, tolerance) for every dump case, in float64 and float32."""
    rows = []
    for name in dump_cases(folder):
        for dtype in ("float64", "float32"):
            _, ours, io = run_case(Path(folder) / name, dtype)
            for out_name in ("logits", "loss") if "logits" in ours else (max(ours),):
                error = max_abs_error(ours[out_name], io[out_name])
                rows.append((f"dump {name} {out_name} ({dtype})", error, tolerance(name, out_name, dtype)))
    return rows


# float64 gradients of O(0.01-1) sums of a few hundred products: rounding order only (~1e-15)
ATOL_GRAD = 1e-10


def gradient_rows(folder: Path = DEFAULT_DUMPS) -> list[tuple[str, float, float]]:
    """Every parameter's gradient of each bert2bert dump against torch autograd (the worst tensor)."""
    from .weights import flatten

    rows = []
    for name in dump_cases(folder):
        if not name.startswith("bert2bert"):
            continue
        model, _, io = run_case(Path(folder) / name, "float64")
        grads = flatten(model.backward(model(io["input_ids"], io["attention_mask"], labels=io["labels"])))
        error = max(max_abs_error(g, io[f"grad.{k}"]) for k, g in grads.items())
        rows.append((f"dump {name} gradients ({len(grads)} tensors)", error, ATOL_GRAD))
    return rows


def generation_rows(folder: Path = DEFAULT_DUMPS.parent / "generation") -> list[tuple[str, float, float]]:
    """transformers' generate() over a grid of settings: sequences must be identical (error = the
    number of differing outputs, tolerance 0), scores to float32 accumulation (2e-5)."""
    rows = []
    for grid_file in sorted(Path(folder).glob("*/grid.json")):
        grid = json.loads(grid_file.read_text())
        model = EncoderDecoderModel.from_pretrained(grid_file.parent, dtype="float64")
        ids = np.array(grid["input_ids"])
        differing, score_error = 0, 0.0
        for result in grid["results"]:
            out = model.generate(ids, (ids != 0).astype(int), **grid["ids"], **result["settings"],
                                 return_dict_in_generate=True, output_scores=True)
            differing += out.sequences.tolist() != result["sequences"]
            if result["sequences_scores"] is not None and out.sequences_scores is not None:
                score_error = max(score_error, max_abs_error(out.sequences_scores, result["sequences_scores"]))
        label = f"generate {grid_file.parent.name}: {len(grid['results'])} settings"
        rows.append((f"{label}, sequences differing", float(differing), 0.0))
        rows.append((f"{label}, beam scores", score_error, 2e-5))
    return rows


def live_rows(seed: int = 0) -> list[tuple[str, float, float]]:
    """Fresh random bert2bert models of each position type, against transformers (float64)."""
    from . import reference
    from .config import BertGenerationConfig, EncoderDecoderConfig
    from .weights import flatten

    rows = []
    rng = np.random.default_rng(seed)
    for pos in ("absolute", "relative_key", "relative_key_query"):
        part = BertGenerationConfig(
            vocab_size=50, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=40,
            max_position_embeddings=32, position_embedding_type=pos, initializer_range=0.3,
        )  # fmt: skip
        config = EncoderDecoderConfig(part, part, decoder_start_token_id=2, pad_token_id=0)
        model = EncoderDecoderModel(config, seed=seed, dtype="float64")
        ids = rng.integers(3, 50, size=(2, 9))
        mask = np.ones((2, 9))
        mask[1, 6:] = 0
        labels = rng.integers(3, 50, size=(2, 7))
        ours = model(ids, mask, labels=labels)
        theirs = reference.run_encoder_decoder(reference.hf_model(config, flatten(model.params)), ids, mask, labels=labels)
        rows.append((f"live bert2bert {pos} logits", max_abs_error(ours.logits, theirs["logits"]), ATOL64))
        rows.append((f"live bert2bert {pos} loss", max_abs_error(ours.loss, theirs["loss"]), ATOL64))
    return rows


# Published (reference §13): BertModel's last_hidden_state[0, :2, :3] of all-MiniLM-L6-v2 for
# "Hello, my dog is cute."; 6 decimals published, float32 model: 1e-5.
MINILM_IDS = [101, 7592, 1010, 2026, 3899, 2003, 10140, 1012, 102]
MINILM_PUBLISHED = [[0.012146, -0.013922, 0.227506], [-0.331073, 0.434286, 0.712614]]


def real_checkpoint_rows(live: bool) -> list[tuple[str, float, float]]:
    """The real MiniLM checkpoint, when fetched: against published numbers, and live against BertModel."""
    from .fetch import find_weights

    folder = find_weights("minilm-l6")
    if folder is None:
        return []
    encoder = BertGenerationEncoder.from_pretrained(folder, fold_token_type=True)
    hidden = np.asarray(encoder([MINILM_IDS]))
    rows = [("MiniLM encoder (fold_token_type) vs published BertModel", max_abs_error(hidden[0, :2, :3], MINILM_PUBLISHED), 1e-5)]
    if live:
        from .reference import OracleUnavailable, load_oracle

        try:
            torch, transformers = load_oracle()
        except OracleUnavailable:
            return rows
        bert = transformers.BertModel.from_pretrained(folder).eval()
        with torch.no_grad():
            theirs = bert(torch.tensor([MINILM_IDS])).last_hidden_state.numpy()
        # float32 on both sides through 6 layers of width 384: ~1e-6 measured, 1e-5 bounds it
        rows.append(("live MiniLM encoder vs transformers BertModel", max_abs_error(hidden, theirs), 1e-5))
    return rows


def run_verify(dumps: Path | None = None, live: bool = True) -> int:
    """Print the comparison table; 0 when every row is within tolerance, else 1."""
    from .reference import OracleUnavailable

    folder = Path(dumps) if dumps is not None else DEFAULT_DUMPS
    if not folder.is_dir():
        raise FileNotFoundError(
            f"reference dumps not found at {folder}; they ship with the repository (tests/fixtures/reference), "
            "so run from a clone with `pip install -e .`, or pass --dumps"
        )
    rows = dump_rows(folder) + gradient_rows(folder) + generation_rows(folder.parent / "generation")
    notes = []
    real = real_checkpoint_rows(live)
    if not real:
        notes.append("real checkpoint skipped: run `minibertgen fetch minilm-l6` to include it")
    rows += real
    if live:
        try:
            rows += live_rows()
        except OracleUnavailable as exc:
            notes.append(f"live comparison skipped: {exc}")
    width = max(len(r[0]) for r in rows)
    print(f"{'component':{width}s}  {'max abs error':>13s}  {'tolerance':>9s}  ok")
    failures = 0
    for name, error, tol in rows:
        ok = error <= tol
        failures += not ok
        print(f"{name:{width}s}  {error:13.2e}  {tol:9.0e}  {'yes' if ok else 'NO'}")
    for note in notes:
        print(note)
    print(f"{len(rows) - failures} of {len(rows)} comparisons within tolerance")
    return 1 if failures else 0
