"""Training runs lose nothing (issue 16, items 1-5): a run owns its folder, holds a lock, fails
before step 1 on what it can know then, resumes bit for bit, and never saves non-finite numbers.

Each test here failed on the behaviour before the fix (50c8f25); the comment on each says how.
"""

from __future__ import annotations

import json
import os
import signal
import string
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minibertgen as mbg
from minibertgen.cli import main
from minibertgen.train import (
    LOCK_FILE,
    TrainingError,
    TrainSettings,
    global_norm,
    latest_checkpoint,
    read_optimizer_state,
    read_pairs,
    train,
)
from minibertgen.weights import read_safetensors, write_safetensors

from .test_train import PAIRS, CharTokenizer, tiny_model

ROOT = Path(__file__).resolve().parents[1]
QUICK = TrainSettings(steps=3, batch_size=2, lr=1e-3, save_every=1)


def run(out, settings=QUICK, model=None, pairs=PAIRS, **kw):
    return train(model or tiny_model(), CharTokenizer(), pairs, out, settings, progress=False, **kw)


def write_pairs(path, pairs) -> Path:
    path.write_text("".join(json.dumps({"source": s, "target": t}) + "\n" for s, t in pairs))
    return path


def tiny_bert(folder) -> Path:
    """A tiny BERT-like checkpoint with a WordPiece vocab.txt (letters): the CLI's --warm-start input."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.ascii_lowercase, *("##" + c for c in string.ascii_lowercase)]
    part = mbg.BertGenerationConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=24, max_position_embeddings=32)  # fmt: skip
    mbg.BertGenerationEncoder(part, seed=0).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return folder


def cli_args(tmp_path, out, *extra):
    bert = tmp_path / "bert" if (tmp_path / "bert").is_dir() else tiny_bert(tmp_path / "bert")
    data = write_pairs(tmp_path / "train.jsonl", PAIRS)
    return ["train", "--train", str(data), "--out", str(out), "--warm-start", str(bert), "--batch-size", "2", *extra]


# ================================================================ 1. the run owns its folder


def test_a_new_run_refuses_a_folder_holding_a_run_and_leaves_it_whole(tmp_path):
    # before: exit 0, printed checkpoint-000002 that pruning had deleted, and loss.csv overwritten
    run(tmp_path, TrainSettings(steps=4, batch_size=2, save_every=1))
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    with pytest.raises(TrainingError, match=r"holds a training run \(latest checkpoint-000004\).*--resume.*another --out"):
        run(tmp_path, TrainSettings(steps=2, batch_size=2, save_every=1))
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_a_new_run_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(TrainingError, match=r"is not empty \(notes.txt\): a new run needs an empty or new --out"):
        run(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_the_cli_names_resume_for_a_used_folder(tmp_path, capsys):
    assert main(cli_args(tmp_path, tmp_path / "run", "--steps", "1")) == 0
    capsys.readouterr()
    assert main(cli_args(tmp_path, tmp_path / "run", "--steps", "1")) == 1
    err = capsys.readouterr().err
    assert "--resume" in err and err.count("\n") == 1, err


def test_pruning_and_resume_touch_only_the_runs_own_checkpoints(tmp_path):
    # before: pruning kept the highest-numbered checkpoint-* folders of any origin (deleting the
    # user's checkpoint-000000), and --resume continued the foreign checkpoint-000099
    settings = TrainSettings(steps=5, batch_size=2, save_every=1, keep_checkpoints=2)
    other = run(tmp_path / "other", TrainSettings(steps=2, batch_size=2, save_every=1)).checkpoint
    run(tmp_path / "run", settings, stop_at=2)
    user = tmp_path / "run" / "checkpoint-000000"
    user.mkdir()
    (user / "keep-me.txt").write_text("a user's folder that happens to be named like a checkpoint")
    os.rename(other, tmp_path / "run" / "checkpoint-000099")  # a complete checkpoint of another run
    assert latest_checkpoint(tmp_path / "run").endswith("checkpoint-000002")
    result = run(tmp_path / "run", settings, resume=True)
    assert result.checkpoint.endswith("checkpoint-000005") and [r["step"] for r in result.history] == [1, 2, 3, 4, 5]
    names = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("checkpoint-"))
    assert names == ["checkpoint-000000", "checkpoint-000004", "checkpoint-000005", "checkpoint-000099"]
    assert (user / "keep-me.txt").exists()


# ================================================================ 2. one process per folder


def test_a_live_lock_refuses_at_once_and_a_stale_one_is_replaced(tmp_path, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tmp_path.joinpath(LOCK_FILE).write_text(f"{sleeper.pid}\n")
        with pytest.raises(TrainingError, match=rf"in use by another training run \(pid {sleeper.pid}"):
            run(tmp_path)
        assert latest_checkpoint(tmp_path) is None
    finally:
        sleeper.kill()
        sleeper.wait()
    # the same pid, now gone: the lock is stale (before: there was no lock at all)
    result = run(tmp_path)
    assert result.checkpoint.endswith("checkpoint-000003")
    assert "stale lock" in capsys.readouterr().err
    assert not (tmp_path / LOCK_FILE).exists(), "the lock is released when the run ends"


def test_two_concurrent_runs_one_wins_the_other_fails_fast(tmp_path):
    # before: both exited 0 and printed the same checkpoint; only one run's files survived
    out = tmp_path / "run"
    args = cli_args(tmp_path, out, "--steps", "400")
    first = subprocess.Popen([sys.executable, "-m", "minibertgen", *args], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (out / LOCK_FILE).exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)
        started = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "minibertgen", *args], cwd=ROOT, capture_output=True, text=True)
        took = time.monotonic() - started
        still_running = first.poll() is None
    finally:
        stdout, stderr = first.communicate(timeout=120)
    assert still_running, "the first run must outlast the second's start for this test to mean anything"
    assert second.returncode == 1 and "in use by another training run" in second.stderr, second.stderr
    assert second.stderr.strip().count("\n") == 0 and "Traceback" not in second.stderr
    assert took < 30, "it refuses at once, not after training"
    assert first.returncode == 0, stderr
    assert latest_checkpoint(out).endswith("checkpoint-000400")


def test_a_failed_save_leaves_no_temporary_folder(tmp_path, monkeypatch):
    # before: the shared .checkpoint-N.tmp name stayed behind after a failed save
    model = tiny_model()

    def fail(path):
        os.makedirs(path)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model, "save_pretrained", fail)
    with pytest.raises(OSError, match="No space left"):
        run(tmp_path, model=model)
    assert not any(".tmp" in p.name for p in tmp_path.iterdir()), sorted(p.name for p in tmp_path.iterdir())


# ================================================================ 3. fail before step 1


@pytest.mark.parametrize("field, value, message", [
    ("lr", float("inf"), "lr must be a finite number > 0"),
    ("lr", float("nan"), "lr must be a finite number > 0"),
    ("lr", 0.0, "lr must be a finite number > 0"),
    ("max_grad_norm", float("nan"), "max_grad_norm must be a finite number > 0"),  # before: clipping silently off
    ("weight_decay", float("inf"), "weight_decay must be a finite number >= 0"),
    ("steps", 0, "steps must be an integer >= 1"),
    ("steps", 2.5, "steps must be an integer >= 1"),
    ("batch_size", -1, "batch_size must be an integer >= 1"),
    ("warmup_steps", 200, r"warmup_steps \(200\) must be at most steps \(100\)"),
    ("save_every", -1, "save_every must be an integer >= 0"),
    ("eval_every", -5, "eval_every must be an integer >= 0"),
    ("seed", -1, "seed must be an integer >= 0"),
])  # fmt: skip
def test_settings_out_of_range_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainSettings(**{field: value})


def test_lr_inf_fails_without_writing_a_checkpoint(tmp_path, capsys):
    # before: exit 0 with an all-nan checkpoint that generate and encode then used
    assert main(cli_args(tmp_path, tmp_path / "run", "--lr", "inf", "--steps", "1")) == 1
    err = capsys.readouterr().err
    assert "lr must be a finite number > 0, got inf" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def mount_tmpfs(folder, options) -> None:
    """A small tmpfs at ``folder`` (root only), or skip where mounting is not allowed."""
    folder.mkdir(exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("mounting a tmpfs needs root and a machine that allows it")


@pytest.fixture
def mounts():
    mounted = []
    yield mounted
    for folder in mounted:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_a_read_only_folder_fails_before_step_1(tmp_path, mounts):
    # before: all the steps ran, then the save failed (with --save-every 0 the whole run was lost)
    out = tmp_path / "ro"
    if os.geteuid() == 0:  # root writes through chmod 0o555: a read-only mount instead
        mount_tmpfs(out, "ro,size=1m")
        mounts.append(out)
    else:
        out.mkdir()
        out.chmod(0o555)
    model = tiny_model()
    calls = []
    model.backward = lambda *a, **k: calls.append(1)  # never reached
    try:
        with pytest.raises(TrainingError, match=r"cannot write in --out .*ro: .*; give a writable folder"):
            run(out, TrainSettings(steps=40, batch_size=2), model=model)
    finally:
        if os.geteuid() != 0:
            out.chmod(0o755)
    assert calls == []


def test_a_full_disk_fails_before_step_1(tmp_path, mounts):
    # before: a SafetensorError traceback at the first save
    out = tmp_path / "small"
    mount_tmpfs(out, "size=64k")
    mounts.append(out)
    with pytest.raises(TrainingError, match=r"not enough free space in .*small for a checkpoint: about .* MiB needed"):
        run(out)
    assert os.listdir(out) == []


def test_too_little_free_space_is_found_before_step_1_anywhere(tmp_path, monkeypatch):
    """The same check without a mount: disk_usage reports 1 MiB free."""
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=2**20))
    with pytest.raises(TrainingError, match=r"not enough free space .* 1.0 MiB free"):
        run(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_example_too_long_for_the_positions_is_named_before_step_1(tmp_path):
    # before: an IndexError-free ValueError from the model at the step that drew it (step 9 in the issue)
    data = write_pairs(tmp_path / "data.jsonl", [*PAIRS[:2], ("abcdefghijklmnopqrst", "ab"), *PAIRS[2:]])
    with pytest.raises(TrainingError, match=r"data.jsonl:3: the source is 22 tokens after --max-source-len 128, "
                                            r"but the encoder has 16 positions.*--max-source-len 16 or less"):  # fmt: skip
        run(tmp_path / "run", pairs=read_pairs(data))
    assert not (tmp_path / "run").exists()
    # the documented truncation makes it fit: [CLS] + 14 letters + [SEP] is cut to 16
    result = run(tmp_path / "run", TrainSettings(steps=1, batch_size=2, max_source_len=16), pairs=read_pairs(data))
    assert result.checkpoint.endswith("checkpoint-000001")


# ================================================================ 4. exact resume


def warm_started(folder):
    return mbg.EncoderDecoderModel.from_encoder_decoder_pretrained(folder, folder, seed=0, cross_attention_init="self_attention",
                                                                   decoder_start_token_id=1, pad_token_id=0)  # fmt: skip


def tiny_bert_part(folder) -> Path:
    """A tiny BERT-like part for the CharTokenizer (29 ids, 16 positions, dropout 0.1)."""
    part = mbg.BertGenerationConfig(vocab_size=29, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=24, max_position_embeddings=16)  # fmt: skip
    mbg.BertGenerationEncoder(part, seed=1).save_pretrained(folder)
    return folder


def test_global_norm_is_the_same_for_a_warm_started_tree_and_its_reload(tmp_path):
    # before: the float32 sum ran in tree order, and the two trees are in different orders
    warm = warm_started(tiny_bert_part(tmp_path / "bert"))
    warm.save_pretrained(tmp_path / "saved")
    loaded = mbg.EncoderDecoderModel.from_pretrained(tmp_path / "saved")
    assert list(mbg.flatten(warm.params)) != list(mbg.flatten(loaded.params)), "the orders differ"
    batch = {"input_ids": [[1, 5, 6, 7, 2]], "labels": [[7, 6, 5, 2]]}
    norms = [global_norm(m.backward(m(**batch))) for m in (warm, loaded)]
    assert norms[0] == norms[1]
    rng = np.random.default_rng(0)
    tree = {f"t{i}": (rng.normal(size=50) * 10.0 ** rng.integers(-4, 4)).astype(np.float32) for i in range(40)}
    assert global_norm(tree) == global_norm(dict(reversed(tree.items())))


KILLABLE_RUN = """
import sys
sys.modules["matplotlib"] = None  # as without matplotlib: no loss.png, so a save takes milliseconds
import minibertgen as mbg
from minibertgen.train import TrainSettings, latest_checkpoint, train
from tests.test_train import PAIRS, CharTokenizer
bert, out, ready = sys.argv[1:]
model = mbg.EncoderDecoderModel.from_encoder_decoder_pretrained(bert, bert, seed=0, cross_attention_init="self_attention")
open(ready, "w").close()
settings = TrainSettings(steps=STEPS, batch_size=2, lr=1e-3, warmup_steps=3, save_every=1)
train(model, CharTokenizer(), PAIRS, out, settings, resume=latest_checkpoint(out) is not None, progress=False)
"""
# 20 kills (the number) take ~30 s on a 2-core machine; MINIBERTGEN_KILLS sets another number.
KILLS = int(os.environ.get("MINIBERTGEN_KILLS", "20"))


def test_a_warm_started_run_killed_at_random_moments_resumes_bit_identically(tmp_path):
    # before: 19 of 20 resumed runs drifted by up to 5.4e-7 from the uninterrupted one (global_norm
    # summed in tree order, and a warm-started tree is in another order than one loaded from disk)
    bert = tiny_bert_part(tmp_path / "bert")
    steps = 3 * KILLS + 10
    script = KILLABLE_RUN.replace("STEPS", str(steps))

    def start(out):
        """The run, once its model is built (the moment the ready file appears); and that moment."""
        ready = tmp_path / "ready"
        ready.unlink(missing_ok=True)
        process = subprocess.Popen([sys.executable, "-c", script, str(bert), str(out), str(ready)], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        while not ready.exists() and process.poll() is None:
            time.sleep(0.002)
        return process, time.monotonic()

    # The uninterrupted run, timed: from ready to the first checkpoint (lock, checks, the first
    # step and save), then per step.
    straight, ready_at = start(tmp_path / "straight")
    while not (tmp_path / "straight" / "checkpoint-000001").exists() and straight.poll() is None:
        time.sleep(0.002)
    setup = time.monotonic() - ready_at
    assert straight.wait() == 0, straight.stderr.read()
    per_step = max(time.monotonic() - ready_at - setup, 1e-3) / (steps - 1)

    def saved_step(out) -> int:
        return max((int(p.name[11:]) for p in out.glob("checkpoint-*")), default=0) if out.exists() else 0

    rng = np.random.default_rng(16)
    killed = tmp_path / "killed"
    kills, resumed_kills = 0, 0
    while kills < KILLS:
        before = saved_step(killed)
        process, ready_at = start(killed)
        if rng.random() < 1 / 3:  # during the start: loading the checkpoint, the lock, the checks
            time.sleep(rng.uniform(0, setup))
        else:  # after this attempt's first save, at a random moment of the next steps, saves, prunings
            while saved_step(killed) == before and process.poll() is None:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 3 * per_step))
        if process.poll() is not None:  # it finished first: the machine ran faster than when the steps were timed
            assert process.returncode == 0, process.stderr.read()
            break
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        kills += 1
        resumed_kills += before > 0
    if process.returncode == -signal.SIGKILL:
        process, _ = start(killed)
    _, err = process.communicate()
    assert process.returncode == 0, err
    assert kills >= KILLS // 2 and resumed_kills >= KILLS // 4, (kills, resumed_kills)

    done, want = latest_checkpoint(tmp_path / "killed"), latest_checkpoint(tmp_path / "straight")
    assert os.path.basename(done) == os.path.basename(want)
    for name in ("model.safetensors", "optimizer.safetensors"):
        a, b = read_safetensors(os.path.join(done, name)), read_safetensors(os.path.join(want, name))
        assert a.keys() == b.keys()
        differing = [k for k in a if not np.array_equal(a[k], b[k])]
        assert not differing, f"{name}: {len(differing)} tensors differ after {kills} kills, e.g. {differing[:3]}"
    history = [json.loads(Path(p, "trainer_state.json").read_text())["history"] for p in (done, want)]
    assert [r["loss"] for r in history[0]] == [r["loss"] for r in history[1]]


def test_resume_refuses_other_settings_or_data_unless_allowed(tmp_path):
    # before: resume never compared; a smaller --train file gave an IndexError traceback
    settings = TrainSettings(steps=6, batch_size=2, lr=1e-3, save_every=1)
    run(tmp_path, settings, stop_at=2)
    with pytest.raises(TrainingError, match=r"differs from the one in .*: steps 6 -> 8; lr 0.001 -> 0.002\. .*--allow-changes"):
        run(tmp_path, TrainSettings(steps=8, batch_size=2, lr=2e-3, save_every=1), resume=True)
    with pytest.raises(TrainingError, match=r"the --train data \(6 examples, sha256 \w{12}\.\.\. -> 3, \w{12}\.\.\.\)"):
        run(tmp_path, settings, pairs=PAIRS[:3], resume=True)
    # recording settings may change freely
    result = run(tmp_path, TrainSettings(steps=6, batch_size=2, lr=1e-3, save_every=3), resume=True, stop_at=3)
    assert result.checkpoint.endswith("checkpoint-000003")
    # on purpose: a smaller data file starts a fresh epoch, and the change is recorded
    result = run(tmp_path, settings, pairs=PAIRS[:3], resume=True, allow_changes=True)
    assert [r["step"] for r in result.history] == [1, 2, 3, 4, 5, 6]
    state = json.loads(Path(result.checkpoint, "trainer_state.json").read_text())
    assert state["run"]["changes"][0]["step"] == 3 and "--train data" in state["run"]["changes"][0]["changed"][0]


def test_a_saved_batch_order_for_other_data_is_a_clear_error(tmp_path):
    """A state from before the fingerprints (no "run" record) with a smaller file: no IndexError."""
    run(tmp_path, stop_at=1)
    state_path = Path(latest_checkpoint(tmp_path), "trainer_state.json")
    state = json.loads(state_path.read_text())
    state["run"] = {"run_id": state["run"]["run_id"], "checkpoints": state["run"]["checkpoints"]}
    state_path.write_text(json.dumps(state))
    with pytest.raises(TrainingError, match=r"saved batch order is for 6 examples, but the data has 3"):
        run(tmp_path, pairs=PAIRS[:3], resume=True)


# ================================================================ 5. nothing non-finite is kept


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_non_finite_update_is_never_saved_and_the_last_good_checkpoint_is_finite(tmp_path):
    # before: step 2's inf/nan weights were saved, then named "Last good checkpoint" at step 3
    settings = TrainSettings(steps=3, batch_size=2, lr=3e38, warmup_steps=1, save_every=1)  # step 1 has lr 0
    with pytest.raises(TrainingError, match=r"the update \(lr 3e\+38\) made .* non-finite at step 2.*checkpoint-000001"):
        run(tmp_path, settings)
    assert latest_checkpoint(tmp_path).endswith("checkpoint-000001")
    assert not (tmp_path / "checkpoint-000002").exists()
    weights = read_safetensors(tmp_path / "checkpoint-000001" / "model.safetensors")
    assert all(np.isfinite(w).all() for w in weights.values())


def test_a_non_finite_gradient_norm_stops_before_the_update(tmp_path):
    # before: clipping scaled the inf gradients by 0 (nan) and the update was saved
    class InfGradientAtSecondStep(mbg.EncoderDecoderModel):
        calls = 0

        def backward(self, out):
            grads = super().backward(out)
            type(self).calls += 1
            if type(self).calls == 2:
                grads["decoder"]["lm_head"]["bias"] = grads["decoder"]["lm_head"]["bias"] * np.inf
            return grads

    model = InfGradientAtSecondStep(tiny_model().config, seed=0)
    assert "lm_head" in model.params["decoder"]
    with pytest.raises(TrainingError, match=r"the gradient norm is (inf|nan) at step 2.*checkpoint-000001"):
        run(tmp_path, model=model)
    assert not (tmp_path / "checkpoint-000002").exists()


@pytest.mark.parametrize("poison, message", [
    (lambda m: m.__setitem__("m.decoder.lm_head.bias", np.full_like(m["m.decoder.lm_head.bias"], np.nan)),
     r"m.decoder.lm_head.bias holds nan or inf"),
    (lambda m: m["v.decoder.lm_head.bias"].__setitem__(0, -1.0),
     r"v.decoder.lm_head.bias holds negative values \(min -1\)"),
    (lambda m: m.__setitem__("v.decoder.lm_head.bias", m["v.decoder.lm_head.bias"].astype(np.int32)),
     r"v.decoder.lm_head.bias has dtype int32, expected a floating-point type"),
])  # fmt: skip
def test_a_corrupt_optimizer_state_is_refused_naming_the_tensor(tmp_path, poison, message):
    # before: nan or negative second moments were accepted, int32 ones failed with a casting error
    run(tmp_path, stop_at=1)
    path = Path(latest_checkpoint(tmp_path), "optimizer.safetensors")
    moments = read_safetensors(path)
    poison(moments)
    write_safetensors(path, moments)
    with pytest.raises(ValueError, match=message):
        run(tmp_path, resume=True)
    if "dtype" not in message:  # for inspection, the values can still be read
        state = read_optimizer_state(path.parent, allow_nonfinite=True)
        assert state["t"] == 1 and "decoder.lm_head.bias" in state["v"]


def test_discard_run_removes_only_a_run_folder(tmp_path):
    """The demo trains into the same folders each time: it discards its previous run first."""
    from minibertgen.train import discard_run

    run(tmp_path / "demo", save_checkpoints=False)
    assert (tmp_path / "demo" / "loss.csv").exists()
    discard_run(tmp_path / "demo")
    assert not (tmp_path / "demo").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "loss.csv").write_text("not a run's")
    with pytest.raises(TrainingError, match=r"mine is not a training run folder \(no run.json\)"):
        discard_run(tmp_path / "mine")
    assert (tmp_path / "mine" / "loss.csv").exists()
