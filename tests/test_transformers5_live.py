"""Live round trips with transformers 5.x (run in a subprocess by tests/transformers5.py; 4.57.6 stays
the oracle of every other test). For each config (tied and untied head, enc_to_dec projection,
tie_encoder_decoder, relative_key, relative_key_query), both ways:

(a) saved here -> 5.x EncoderDecoderModel.from_pretrained -> 5.x's logits equal ours; for relative
    positions the save warns "transformers >= 5", 5.x reports the distance tables unexpected and runs
    the model as absolute (its logits equal ours with the tables removed, and differ from ours);
(b) built (seeded random weights) and saved by 5.x -> loaded here -> our logits equal 5.x's, and
    load_report says what was dropped and why (a 5.x tie_encoder_decoder file loads untied, with a
    warning; a 5.x "relative" file is refused, and runs as 5.x ran it once loaded as absolute).

Plus: the encoder and decoder (tied and untied head) classes each way; greedy generate() tokens each
way; a 4.57.6 tie_encoder_decoder file (decoder.* only) giving 5.x a random encoder. All the 5.x work
is one subprocess (the ``runs`` fixture), started once for the module.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import minibertgen as mbg
from minibertgen import reference
from minibertgen.testing import assert_close
from minibertgen.weights import read_safetensors

from .conftest import perturb, require_oracle
from .transformers5 import require_transformers5, run_jobs

pytestmark = pytest.mark.transformers5

BASE = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
TOP = dict(decoder_start_token_id=2, pad_token_id=0)
GENERATION = dict(decoder_start_token_id=2, bos_token_id=2, eos_token_id=1, pad_token_id=0)
CASES = {  # name: (encoder changes, decoder changes, top-level changes)
    "tied": ({}, {}, {}),
    "untied": ({}, {"tie_word_embeddings": False}, {}),
    "projection": ({"hidden_size": 40}, {}, {}),  # hidden sizes differ: enc_to_dec_proj
    "tie_encoder_decoder": ({}, {}, {"tie_encoder_decoder": True}),
    "relative_key": ({"position_embedding_type": "relative_key"}, {"position_embedding_type": "relative_key"}, {}),
    "relative_key_query": ({"position_embedding_type": "relative_key_query"},
                           {"position_embedding_type": "relative_key_query"}, {}),  # fmt: skip
}
ABSOLUTE = [name for name in CASES if not name.startswith("relative")]
RELATIVE = [name for name in CASES if name.startswith("relative")]

IDS = np.array([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
MASK = (IDS != 0).astype(np.int64)
DEC = np.array([[2, 13, 14, 15], [2, 16, 17, 0]])
DEC_MASK = (DEC != 0).astype(np.int64)
MEMORY = np.random.default_rng(0).normal(size=(2, 3, 32)).astype(np.float32)
MEMORY_MASK = np.array([[1, 1, 1], [1, 1, 0]])
ED_INPUTS = dict(input_ids=IDS, attention_mask=MASK, decoder_input_ids=DEC, decoder_attention_mask=DEC_MASK)
PART_INPUTS = {
    "BertGenerationEncoder": dict(input_ids=IDS, attention_mask=MASK),
    "BertGenerationDecoder": dict(input_ids=DEC, attention_mask=DEC_MASK, encoder_hidden_states=MEMORY,
                                  encoder_attention_mask=MEMORY_MASK),  # fmt: skip
}
GREEDY = dict(max_new_tokens=6, do_sample=False, num_beams=1)
DECODER = {**BASE, "is_decoder": True, "add_cross_attention": True}
PARTS = {  # name: (class name, config)
    "encoder": ("BertGenerationEncoder", BASE),
    "decoder": ("BertGenerationDecoder", DECODER),
    "decoder_untied": ("BertGenerationDecoder", {**DECODER, "tie_word_embeddings": False}),
}

# float32 on both sides, the same maths in another order (5.x: torch sdpa attention and fused
# kernels; here: NumPy matmuls and softmax): measured differences are <= 1.2e-6 on outputs of size ~1-5;
# 2e-5 leaves margin for other BLAS builds, while one mislaid tensor moves them by far more (DIFFERENT).
TOL = dict(atol=2e-5, rtol=2e-5)
# "Another model": 500 x TOL. Float32 rounding stays far below it; running other positions or a
# random encoder moves logits of size ~1-5 far above it.
DIFFERENT = 1e-2


def listed(a) -> dict:
    return {k: np.asarray(v).tolist() for k, v in a.items()}


def ed_configs(name):
    enc, dec, top = CASES[name]
    return {"encoder": {**BASE, **enc}, "decoder": {**BASE, **dec}, "top": {**TOP, **top}, "generation": GENERATION}


def our_model(name, seed):
    c = ed_configs(name)
    config = mbg.EncoderDecoderConfig(mbg.BertGenerationConfig(**c["encoder"]), mbg.BertGenerationConfig(**c["decoder"]),
                                      **c["top"])  # fmt: skip
    return perturb(mbg.EncoderDecoderModel(config, seed=seed), seed=seed)


def our_logits(model):
    return model(IDS, MASK, decoder_input_ids=DEC, decoder_attention_mask=DEC_MASK).logits


def our_part_output(model):
    if isinstance(model, mbg.BertGenerationEncoder):
        return model(IDS, MASK)
    return model(DEC, DEC_MASK, encoder_hidden_states=MEMORY, encoder_attention_mask=MEMORY_MASK).logits


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Everything 5.x does for this module, in one subprocess: {(direction, name): result}, where a
    result has the 5.x ``outputs`` (logits/hidden, tokens), ``info`` (loading info), ``warnings``,
    ``logs``, plus here ``folder``, ``ours`` (the model saved here) and ``save_warnings``."""
    require_transformers5()
    root = tmp_path_factory.mktemp("transformers5")
    keys, jobs, extra = [], [], []
    for i, name in enumerate(CASES):
        model = our_model(name, seed=i)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.save_pretrained(root / f"ours-{name}")
        job = {"kind": "load", "cls": "EncoderDecoderModel", "folder": str(root / f"ours-{name}"), "inputs": listed(ED_INPUTS)}
        built = {"kind": "build", "cls": "EncoderDecoderModel", "folder": str(root / f"5x-{name}"),
                 "configs": ed_configs(name), "seed": 10 + i, "inputs": listed(ED_INPUTS)}  # fmt: skip
        if name == "tied":
            job["generate"] = built["generate"] = {"input_ids": IDS.tolist(), "attention_mask": MASK.tolist(), **GREEDY}
        keys += [("saved here", name), ("saved by 5.x", name)]
        jobs += [job, built]
        extra += [{"ours": model, "save_warnings": [str(w.message) for w in caught]}, {}]
    for i, (part, (cls, config)) in enumerate(PARTS.items()):
        model = perturb(getattr(mbg, cls)(mbg.BertGenerationConfig(**config), seed=20 + i), seed=20 + i)
        model.save_pretrained(root / f"ours-{part}")
        keys += [("saved here", part), ("saved by 5.x", part)]
        jobs += [{"kind": "load", "cls": cls, "folder": str(root / f"ours-{part}"), "inputs": listed(PART_INPUTS[cls])},
                 {"kind": "build", "cls": cls, "folder": str(root / f"5x-{part}"), "configs": {"model": config},
                  "seed": 30 + i, "inputs": listed(PART_INPUTS[cls])}]  # fmt: skip
        extra += [{"ours": model}, {}]
    source = our_model("tie_encoder_decoder", seed=40)
    try:  # a 4.57.6 tie_encoder_decoder file (decoder.* only), when the oracle is here to write it
        hf = reference.hf_model(source.config, mbg.flatten(source.params), dtype="float32")
        hf.save_pretrained(root / "4.57.6-tie_encoder_decoder")
        keys.append(("saved by 4.57.6", "tie_encoder_decoder"))
        jobs.append({"kind": "load", "cls": "EncoderDecoderModel", "folder": str(root / "4.57.6-tie_encoder_decoder"),
                     "inputs": listed(ED_INPUTS)})  # fmt: skip
        extra.append({"ours": source})
    except reference.OracleUnavailable:
        pass
    results = run_jobs(jobs, root / "work")
    return {key: {**result, **more, "folder": job["folder"]}
            for key, job, result, more in zip(keys, jobs, results, extra)}  # fmt: skip


def assert_clean(run):
    """5.x loaded every tensor, silently (it logs a LOAD REPORT table only when keys are missing or unexpected)."""
    info = run["info"]
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and info["mismatched_keys"] == [], info
    assert run["logs"] == [] and run["warnings"] == [], (run["logs"], run["warnings"])


def load_report_5x(run, status) -> str:
    """The LOAD REPORT table 5.x logged (one is expected), which lists keys as ``status``."""
    reports = [log for log in run["logs"] if "LOAD REPORT" in log]
    assert len(reports) == 1 and status in reports[0], run["logs"]
    return reports[0]


# ---------------------------------------------------------------- (a) saved here, loaded by 5.x


@pytest.mark.parametrize("name", ABSOLUTE)
def test_saved_here_runs_the_same_in_5x(runs, name):
    run = runs[("saved here", name)]
    assert run["save_warnings"] == [] and run["dtype"] == "torch.float32"
    assert_clean(run)
    assert_close(run["outputs"]["logits"], our_logits(run["ours"]), **TOL, name=f"{name} logits")


@pytest.mark.parametrize("name", RELATIVE)
def test_saved_here_relative_warns_and_5x_runs_it_absolute(runs, name):
    run = runs[("saved here", name)]
    assert any("transformers >= 5" in w for w in run["save_warnings"]), run["save_warnings"]
    tables = sorted(k for k in read_safetensors(f"{run['folder']}/model.safetensors") if "distance_embedding" in k)
    assert tables and run["info"]["unexpected_keys"] == tables and run["info"]["missing_keys"] == []
    assert "distance_embedding" in load_report_5x(run, "UNEXPECTED")  # what a 5.x user is shown
    theirs, ours = run["outputs"]["logits"], our_logits(run["ours"])
    assert np.abs(theirs - ours).max() > DIFFERENT  # 5.x runs another model than the one saved ...
    absolute = {k: v for k, v in mbg.flatten(run["ours"].params).items() if "distance_embedding" not in k}
    config = run["ours"].config
    as_absolute = mbg.EncoderDecoderModel(
        mbg.EncoderDecoderConfig(config.encoder.replace(position_embedding_type="absolute"),
                                 config.decoder.replace(position_embedding_type="absolute"), **TOP),
        params=mbg.unflatten(absolute),
    )  # fmt: skip
    assert_close(theirs, our_logits(as_absolute), **TOL, name="5.x logits vs ours without distance tables")  # ... absolute


def test_a_4576_tie_encoder_decoder_file_gives_5x_a_random_encoder(runs):
    require_oracle()
    run = runs[("saved by 4.57.6", "tie_encoder_decoder")]
    file_keys = read_safetensors(f"{run['folder']}/model.safetensors")
    assert not [k for k in file_keys if k.startswith("encoder.")]  # 4.57.6 writes the shared stack once
    stack = sorted("encoder." + k.removeprefix("decoder.bert.") for k in file_keys
                   if k.startswith("decoder.bert.") and ".crossattention." not in k)  # fmt: skip
    assert run["info"]["missing_keys"] == stack and run["info"]["unexpected_keys"] == []
    load_report_5x(run, "MISSING")
    assert np.abs(run["outputs"]["logits"] - our_logits(run["ours"])).max() > DIFFERENT  # 5.x no longer ties


# ---------------------------------------------------------------- (b) saved by 5.x, loaded here


def dropped(report) -> dict:
    return dict(report.dropped)


@pytest.mark.parametrize("name", ABSOLUTE)
def test_saved_by_5x_runs_the_same_here(runs, name):
    run = runs[("saved by 5.x", name)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = mbg.EncoderDecoderModel.from_pretrained(run["folder"])
    report, file_keys = ours.load_report, set(read_safetensors(f"{run['folder']}/model.safetensors"))
    # every tensor of the file loaded or dropped with a reason (an untied head's lm_head.decoder.bias loads
    # as our lm_head.bias, the file's own lm_head.bias being the one dropped)
    assert report.new == [] and len(report.loaded) + len(report.dropped) == len(file_keys)
    assert_close(our_logits(ours), run["outputs"]["logits"], **TOL, name=f"{name} logits")
    reasons = dropped(report)
    if name == "untied":  # 5.x's untied head writes two biases (the perturbation moved them apart); one is used
        assert {"decoder.lm_head.decoder.bias", "decoder.lm_head.decoder.weight"} <= file_keys
        assert reasons.pop("decoder.lm_head.bias").startswith("differs from lm_head.decoder.bias")
    else:  # tied, 5.24 writes only decoder.lm_head.bias: nothing to drop
        assert not [k for k in file_keys if k.startswith("decoder.lm_head.decoder.")]
    assert reasons == {}, reasons
    if name == "tie_encoder_decoder":  # 5.x saves two different stacks under a config that says tied
        assert json.load(open(f"{run['folder']}/config.json"))["tie_encoder_decoder"] is True
        assert any("differ" in str(w.message) for w in caught) and ours.config.tie_encoder_decoder is False
        assert any("loaded untied" in note for note in report.notes)
    else:
        assert not caught, [str(w.message) for w in caught]


@pytest.mark.parametrize("name", RELATIVE)
def test_a_5x_relative_file_is_refused_and_runs_as_5x_ran_it_when_loaded_absolute(runs, name, tmp_path):
    run = runs[("saved by 5.x", name)]
    saved = json.load(open(f"{run['folder']}/config.json"))
    assert saved["encoder"]["position_embedding_type"] == name  # stored by 5.x, which writes no tables
    assert not [k for k in read_safetensors(f"{run['folder']}/model.safetensors") if "distance_embedding" in k]
    with pytest.raises(mbg.CheckpointError, match="position_embedding_type='absolute'"):
        mbg.EncoderDecoderModel.from_pretrained(run["folder"])
    # The way out for a bert2bert file: say absolute in config.json (the parts take position_embedding_type=).
    edited = tmp_path / "absolute"
    edited.mkdir()
    for f in ("model.safetensors", "generation_config.json"):
        (edited / f).write_bytes(open(f"{run['folder']}/{f}", "rb").read())
    for part in ("encoder", "decoder"):
        saved[part]["position_embedding_type"] = "absolute"
    (edited / "config.json").write_text(json.dumps(saved))
    ours = mbg.EncoderDecoderModel.from_pretrained(edited)
    assert ours.load_report.new == []
    assert_close(our_logits(ours), run["outputs"]["logits"], **TOL, name=f"{name} (5.x) logits")


# ---------------------------------------------------------------- the parts, and generate


@pytest.mark.parametrize("part", sorted(PARTS))
def test_parts_round_trip_both_ways(runs, part):
    here, there = runs[("saved here", part)], runs[("saved by 5.x", part)]
    cls = PARTS[part][0]
    key = "hidden" if cls == "BertGenerationEncoder" else "logits"
    assert_clean(here)
    assert_close(here["outputs"][key], our_part_output(here["ours"]), **TOL, name=f"{part} saved here")
    ours = getattr(mbg, cls).from_pretrained(there["folder"])
    assert ours.load_report.new == [] and ours.config.tie_word_embeddings == PARTS[part][1].get("tie_word_embeddings", True)
    assert_close(our_part_output(ours), there["outputs"][key], **TOL, name=f"{part} saved by 5.x")


def test_greedy_generate_gives_the_same_tokens_both_ways(runs):
    here, there = runs[("saved here", "tied")], runs[("saved by 5.x", "tied")]
    np.testing.assert_array_equal(here["outputs"]["tokens"], here["ours"].generate(IDS, MASK, **GREEDY))
    ours = mbg.EncoderDecoderModel.from_pretrained(there["folder"])
    np.testing.assert_array_equal(ours.generate(IDS, MASK, **GREEDY), there["outputs"]["tokens"])


def test_the_harness_refuses_a_transformers_that_is_not_5x(tmp_path, monkeypatch):
    fake = tmp_path / "site" / "transformers"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("__version__ = '4.57.6'\n")
    monkeypatch.setenv("MINIBERTGEN_TRANSFORMERS5", str(tmp_path / "site"))
    with pytest.raises(RuntimeError, match="expected transformers 5.x"):
        run_jobs([], tmp_path / "work")
