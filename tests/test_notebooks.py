"""The tutorials: every notebook in notebooks/ runs top to bottom in a fresh kernel, and the exercise
checkers in minibertgen.exercises grade (the package's solution passes, a wrong answer fails with a hint).

Executing the notebooks needs the ``tutorials`` tools (nbclient, nbformat, ipykernel, matplotlib):
without them these tests skip, or fail in CI (MINIBERTGEN_REQUIRE_ORACLE=1). The notebooks that use
the real MiniLM checkpoint ask for it through ``require_path``. The fourteen run two at a time (one
BLAS thread each, the two that fine-tune MiniLM first) and take about 7 minutes on 2 CPU cores, most
of it notebook 10's 200 training steps; ``-m "not slow"`` leaves them out.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from minibertgen import exercises
from minibertgen.attention import causal_padding_mask
from minibertgen.fetch import find_weights
from minibertgen.generate import decoder_step
from minibertgen.ops import softmax_backward

from .conftest import REQUIRED, _skip_or_fail, require_path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = [
    "01_tokenization", "02_embeddings_positions", "03_self_attention_masks", "04_relative_positions",
    "05_full_layer", "06_cross_attention_kv_cache", "07_teacher_forcing_loss", "08_backprop_by_hand",
    "09_warm_start_finetune", "10_training_dynamics", "11_beam_search", "12_sampling", "13_gpu_cupy",
    "14_property_based_testing",
]  # fmt: skip
NEEDS_MINILM = {"01_tokenization", "02_embeddings_positions", "03_self_attention_masks", "09_warm_start_finetune",
                "10_training_dynamics"}
# Two kernels at a time, one BLAS thread each, so a 2-core runner executes the notebooks in about half
# the wall time of one after the other (MINIBERTGEN_NOTEBOOK_WORKERS overrides).
NOTEBOOK_WORKERS = int(os.environ.get("MINIBERTGEN_NOTEBOOK_WORKERS") or min(2, os.cpu_count() or 1))
# Started first: the two that fine-tune MiniLM take minutes, the others seconds to a minute.
LONGEST = ("10_training_dynamics", "09_warm_start_finetune")
# A whole notebook (its cells time out after 10 minutes each, scripts/execute_notebooks.py): ends a hung
# kernel while leaving a loaded CI runner several times the ~4 minutes the longest takes on an idle one.
NOTEBOOK_TIMEOUT_S = 1800
# What a notebook prints when it falls back from the live oracle to the committed dumps.
NO_ORACLE = "transformers is not installed"
# One BLAS/OpenMP thread per kernel unless the caller chose otherwise. On a shared 2-core runner the
# default (one spinning OpenBLAS thread per core) makes small matrix products 10-30x slower whenever
# another process holds a core: notebook 09 took 434 s instead of about 60 s (measured).
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def require_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        _skip_or_fail(f"{name} is not installed (pip install nbclient nbformat ipykernel matplotlib)")


# ---------------------------------------------------------------- the notebooks as files


def test_every_tutorial_is_there():
    assert [p.stem for p in notebook_paths()] == EXPECTED


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_is_saved_with_its_outputs(path):
    """Committed executed, so it reads well on a code-hosting site (scripts/execute_notebooks.py);
    every code cell ran, in order, and none ended in an error."""
    counts = []
    for i, cell in enumerate(read(path)["cells"]):
        if cell["cell_type"] == "code":
            counts.append(cell.get("execution_count"))
            assert not any(out.get("output_type") == "error" for out in cell.get("outputs", [])), f"{path.name}: cell {i}"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: run scripts/execute_notebooks.py {path.stem}"


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_has_maths_code_path_check_and_picture(path):
    """What every tutorial promises (issue 7): the maths, the code it exercises, a live check, a picture."""
    cells = read(path)["cells"]
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "$" in markdown, f"{path.name}: no LaTeX maths"
    assert "**Code path" in markdown, f"{path.name}: does not name the code path it exercises"
    assert "import minibertgen" in code, f"{path.name}: should import minibertgen"
    assert any(k in code for k in ("assert_close", "grad_check", "assert ")), f"{path.name}: no check"
    assert "reference" in code, f"{path.name}: no comparison with the reference"
    assert "plt." in code, f"{path.name}: no picture"


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_is_a_course_chapter(path):
    """What a teacher needs of each chapter (issue 18): objectives, prerequisites and time up front, a
    summary at the end, at least two "predict, then run" prompts, and an auto-graded exercise whose
    stub is let through by its checker."""
    cells = read(path)["cells"]
    first = "".join(cells[0]["source"])
    for line in ("**You will learn:**", "**Prerequisites:**", "**Time:**"):
        assert any(row.startswith(line) for row in first.splitlines()), f"{path.name}: first cell lacks {line}"
    assert cells[-1]["cell_type"] == "markdown" and "".join(cells[-1]["source"]).startswith("## Summary"), (
        f"{path.name}: the last cell should be a markdown '## Summary'")
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert markdown.count("**Predict, then run:**") >= 2, f"{path.name}: fewer than two 'Predict, then run' prompts"
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert 'raise NotImplementedError("your code here")' in code and "from minibertgen.exercises import" in code, (
        f"{path.name}: no auto-graded exercise (a stub and a checker from minibertgen.exercises)")


def test_syllabus_lists_every_chapter_in_order_with_its_time():
    """notebooks/README.md is the course's syllabus: a row per notebook, in order, whose time is the one
    the chapter's first cell states and whose checkers are the ones the chapter imports."""
    syllabus = (NOTEBOOKS / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d\d) \| \[[^\]]+\]\(([^)]+)\.ipynb\)(.*)$", syllabus, re.M)
    assert [stem for _, stem, _ in rows] == EXPECTED, "one syllabus row per notebook, in the course's order"
    for number, stem, rest in rows:
        cells = read(NOTEBOOKS / f"{stem}.ipynb")["cells"]
        assert stem.startswith(number)
        (minutes,) = re.findall(r"^\*\*Time:\*\* about (\d+) minutes", "".join(cells[0]["source"]), re.M)
        assert f"| {minutes} min |" in rest, f"{stem}: the syllabus should say {minutes} min"
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for checker in re.findall(r"`(check_\w+)`", rest):
            assert checker in code, f"{stem}: the syllabus names {checker}, which the chapter does not call"


def _notebook_text():
    spec = importlib.util.spec_from_file_location("notebook_text", NOTEBOOKS.parent / "scripts" / "notebook_text.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_text_twins_match_their_notebooks():
    """notebooks/text/NAME.py holds NAME.ipynb's cells as text, so reviews read ordinary diffs (issue 18)."""
    problems = _notebook_text().stale()
    assert not problems, "run python scripts/notebook_text.py: " + "; ".join(problems)


def test_text_twin_catches_an_edited_cell():
    """The sync check can fail: a twin rendered from an edited notebook differs from the committed one."""
    notebook_text = _notebook_text()
    path = notebook_paths()[0]
    notebook = read(path)
    notebook["cells"][-1]["source"] = ["an edit that was not re-rendered\n"]
    assert notebook_text.render(notebook, path.stem) != notebook_text.twin_of(path).read_text(encoding="utf-8")


# ---------------------------------------------------------------- running them


@pytest.fixture(scope="module")
def notebook_runs(request, tmp_path_factory):
    """Start every selected notebook in a fresh kernel (scripts/execute_notebooks.py --to, one process
    each), NOTEBOOK_WORKERS at a time and the longest first; each test below waits for its own."""
    for name in ("nbformat", "nbclient", "ipykernel", "matplotlib"):
        require_module(name)
    folder = tmp_path_factory.mktemp("executed")
    env = dict(os.environ)
    for name in THREAD_VARIABLES:  # the kernel inherits this environment
        env.setdefault(name, "1")
    selected = {item.callspec.id for item in request.session.items
                if item.originalname == "test_notebook_runs_top_to_bottom"}  # fmt: skip
    has_minilm = find_weights("minilm-l6") is not None
    runnable = [p for p in notebook_paths() if p.stem in selected and (has_minilm or p.stem not in NEEDS_MINILM)]
    runnable.sort(key=lambda p: (LONGEST.index(p.stem) if p.stem in LONGEST else len(LONGEST), p.stem))
    script = str(NOTEBOOKS.parent / "scripts" / "execute_notebooks.py")
    with ThreadPoolExecutor(NOTEBOOK_WORKERS) as pool:
        runs = {
            p.stem: pool.submit(subprocess.run, [sys.executable, script, "--to", str(folder), p.stem],
                                capture_output=True, text=True, env=env, timeout=NOTEBOOK_TIMEOUT_S)
            for p in runnable
        }  # fmt: skip
        yield folder, runs
        for run in runs.values():
            run.cancel()


@pytest.mark.slow
@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, notebook_runs):
    if path.stem in NEEDS_MINILM:
        require_path(find_weights("minilm-l6") or Path("missing"), "the MiniLM checkpoint")
    folder, runs = notebook_runs
    proc = runs[path.stem].result()
    if proc.returncode != 0:
        pytest.fail(f"{path.name}: scripts/execute_notebooks.py exited {proc.returncode}:\n{proc.stderr[-8000:]}",
                    pytrace=False)  # fmt: skip
    notebook = read(folder / path.name)
    printed = "".join(
        "".join(out.get("text", ""))  # a saved stream's text is a string or a list of lines
        for cell in notebook["cells"] if cell["cell_type"] == "code" for out in cell.get("outputs", [])
    )  # fmt: skip
    if REQUIRED:  # in CI the live comparisons must run, not fall back to the dumps
        assert NO_ORACLE not in printed, f"{path.name} fell back from the live oracle: {NO_ORACLE}"


# ---------------------------------------------------------------- the exercise checkers


def causal_mask_without_padding(attention_mask, query_len, dtype):
    return causal_padding_mask(np.ones_like(attention_mask), query_len, dtype)


def causal_mask_without_past(attention_mask, query_len, dtype):
    key_len = attention_mask.shape[1]
    keep = np.tril(np.ones((query_len, key_len)))[None, None] * attention_mask[:, None, None, :]
    return ((1.0 - keep) * np.finfo(dtype).min).astype(dtype)


def causal_mask_with_minus_inf(attention_mask, query_len, dtype):
    return np.where(causal_padding_mask(attention_mask, query_len, dtype) == 0, 0.0, -np.inf).astype(dtype)


def causal_mask_without_head_axis(attention_mask, query_len, dtype):
    return causal_padding_mask(attention_mask, query_len, dtype)[:, 0]  # (B, Tq, Tk)


def cached_attention_ignoring_past(x, p, num_heads, past_kv):
    return exercises.cached_self_attention(x, p, num_heads, None)


def _attend_and_cache(x, p, num_heads, past_kv, put):
    """Cached attention whose cache is built by ``put(past, new)``: the context is computed over the
    cache it returns, so every wrong order below still gives the right context."""
    from minibertgen.attention import merge_heads, split_heads
    from minibertgen.ops import linear_forward, softmax_forward

    q, k, v = (split_heads(linear_forward(x, p[n])[0], num_heads) for n in ("query", "key", "value"))
    if past_kv is not None:
        k, v = put(past_kv["k"], k), put(past_kv["v"], v)
    probs, _ = softmax_forward(q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1]))
    return merge_heads(probs @ v), {"k": k, "v": v}


def cached_attention_prepending(x, p, num_heads, past_kv):
    """The new key and value put *before* the cached ones: the context is right, the cache is not."""
    return _attend_and_cache(x, p, num_heads, past_kv, lambda past, new: np.concatenate([new, past], axis=2))


def cached_attention_swapping_k_and_v(x, p, num_heads, past_kv):
    context, cache = exercises.cached_self_attention(x, p, num_heads, past_kv)
    return context, {"k": cache["v"], "v": cache["k"]}


def cached_attention_without_key_bias(x, p, num_heads, past_kv):
    """Keys without their bias: softmax ignores the constant q . b_k, so only the cache shows it."""
    return exercises.cached_self_attention(x, {**p, "key": {**p["key"], "bias": np.zeros_like(p["key"]["bias"])}},
                                           num_heads, past_kv)  # fmt: skip


def decoder_step_ignoring_past(model, tokens, past, memory, memory_mask):
    return decoder_step(model, tokens, None, memory, memory_mask)


def beam_step_per_beam(sums, log_probs):
    """Each beam keeps its own best token: not beam search."""
    tokens = log_probs.argmax(axis=1)
    return np.arange(len(sums)), tokens, sums + log_probs[np.arange(len(sums)), tokens]


def not_written(*args):
    raise NotImplementedError


CHECKERS = {
    "check_causal_mask": (causal_padding_mask, [causal_mask_without_padding, causal_mask_without_past,
                                                causal_mask_with_minus_inf, causal_mask_without_head_axis]),
    "check_softmax_backward": (softmax_backward, [lambda dout, p: dout * p, lambda dout, p: dout * p * (1 - p)]),
    "check_cached_attention": (exercises.cached_self_attention, [cached_attention_ignoring_past,
                                                                 cached_attention_prepending,
                                                                 cached_attention_swapping_k_and_v,
                                                                 cached_attention_without_key_bias]),
    "check_decoder_step": (decoder_step, [decoder_step_ignoring_past]),
    "check_beam_step": (exercises.beam_step, [beam_step_per_beam, lambda s, lp: exercises.beam_step(s, lp)[:2]]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_checker_passes_the_package_solution(name, capsys):
    solution, _ = CHECKERS[name]
    getattr(exercises, name)(solution)
    assert capsys.readouterr().out.startswith(f"{name}: "), "a passing checker prints one success line"


@pytest.mark.parametrize(("name", "wrong"), [(n, w) for n, (_, ws) in sorted(CHECKERS.items()) for w in ws])
def test_checker_fails_a_wrong_answer_with_a_hint(name, wrong):
    with pytest.raises(AssertionError, match=rf"^{name}: (.|\n)*\nHint: "):
        getattr(exercises, name)(wrong)


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_checker_lets_a_stub_say_not_implemented(name):
    """The notebooks call each checker on a stub inside ``except NotImplementedError``."""
    with pytest.raises(NotImplementedError):
        getattr(exercises, name)(not_written)


def test_causal_mask_checker_names_the_padded_key():
    with pytest.raises(AssertionError, match=r"padding in row \d.*must be hidden"):
        exercises.check_causal_mask(causal_mask_without_padding)


def test_a_prepended_cache_has_the_right_context_but_fails_the_cache_checker():
    """Issue 18: a cache that prepends passed, since attention without positions ignores key order."""
    x = np.random.default_rng(0).normal(size=(2, 3, 6))
    p = {n: {"weight": np.random.default_rng(i).normal(size=(6, 6)), "bias": np.random.default_rng(9 + i).normal(size=6)}
         for i, n in enumerate(("query", "key", "value"))}  # fmt: skip
    past = wrong = None
    for t in range(3):  # the bug is invisible in the context: it equals the right one at every step
        (right, past), (context, wrong) = (exercises.cached_self_attention(x[:, t : t + 1], p, 2, past),
                                           cached_attention_prepending(x[:, t : t + 1], p, 2, wrong))  # fmt: skip
        np.testing.assert_allclose(context, right, atol=1e-12)  # float64, the same sums in another order
    assert not np.allclose(wrong["k"], past["k"])
    with pytest.raises(AssertionError, match=r"in order (.|\n)*\nHint: you put the new position first \(prepended\)"):
        exercises.check_cached_attention(cached_attention_prepending)


@pytest.mark.parametrize(("wrong", "hint"), [(cached_attention_swapping_k_and_v, "swapped"),
                                             (cached_attention_without_key_bias, "bias included")])
def test_cache_checker_names_the_content_mistake(wrong, hint):
    with pytest.raises(AssertionError, match=rf"\nHint: .*{hint}"):
        exercises.check_cached_attention(wrong)
