"""Run transformers 5.x in a subprocess, so the test process keeps 4.57.6 (the oracle).

``.ci/install-transformers5 DIR`` installs 5.x into DIR; ``MINIBERTGEN_TRANSFORMERS5=DIR`` points the
tests at it. One subprocess (same interpreter, PYTHONPATH=DIR first) runs a whole batch of jobs,
since starting Python and importing torch costs seconds:

- ``{"kind": "load", "cls": ..., "folder": ..., "inputs": {...}}``: from_pretrained a folder (saved
  here), run it on the inputs; the result has the outputs, the loading info and the warnings;
- ``{"kind": "build", "cls": ..., "configs": {...}, "seed": s, "folder": ..., "inputs": {...}}``: a
  5.x model with random weights (seeded, every parameter moved off its init), saved with
  save_pretrained to ``folder``, and its outputs on the inputs.

Either may add ``"generate": {...}`` (keywords for 5.x's generate; the tokens come back).
Inputs and outputs are arrays (lists in the job, .npy files in the results).

This file is also the subprocess's script (``python transformers5.py JOBS.json``): below the
``__main__`` line only the standard library, torch and transformers are imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ENV = "MINIBERTGEN_TRANSFORMERS5"


def require_transformers5() -> str:
    """The folder with transformers 5.x, else skip (or fail with MINIBERTGEN_REQUIRE_ORACLE=1, as in CI)."""
    import pytest

    from .conftest import _skip_or_fail

    folder = os.environ.get(ENV, "")
    if not folder:
        _skip_or_fail(f"{ENV} is not set (install transformers 5.x with .ci/install-transformers5 DIR, then {ENV}=DIR)")
    if not (Path(folder) / "transformers" / "__init__.py").exists():
        pytest.fail(f"{ENV}={folder} holds no transformers package (run .ci/install-transformers5 {folder})", pytrace=False)
    return folder


def run_jobs(jobs: list[dict], workdir: Path, timeout: float = 300) -> list[dict]:
    """Run the jobs in one transformers 5.x subprocess; each result's ``outputs`` are numpy arrays."""
    import numpy as np

    folder = require_transformers5()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "jobs.json").write_text(json.dumps(jobs))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (folder, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, __file__, str(workdir / "jobs.json")], env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"the transformers 5.x subprocess failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    done = json.loads((workdir / "results.json").read_text())
    if not done["version"].startswith("5."):
        raise RuntimeError(f"{ENV}={folder} gave transformers {done['version']} at {done['file']}, not 5.x")
    for result in done["results"]:
        result["outputs"] = {name: np.load(path) for name, path in result["outputs"].items()}
    return done["results"]


# ================================================================ the subprocess


def _capture_logs(transformers):
    """transformers' log records, as text (5.x reports unexpected/missing keys through its logger)."""
    import logging

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    transformers.utils.logging.add_handler(Keep())
    return records


def _perturb(model, torch, seed):
    """Every parameter += N(0, 0.1): biases at 0 and LayerNorm at 1/0 would hide a mislaid tensor."""
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for p in model.parameters():  # shared (tied) parameters come once
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _build(job, transformers, torch):
    cfgs = job["configs"]
    torch.manual_seed(job["seed"])
    if job["cls"] == "EncoderDecoderModel":
        enc = transformers.BertGenerationConfig(**cfgs["encoder"])
        dec = transformers.BertGenerationConfig(**cfgs["decoder"], is_decoder=True, add_cross_attention=True)
        config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec, **cfgs.get("top", {}))
        model = transformers.EncoderDecoderModel(config=config)
        # 5.x refuses generation parameters on model.config: token ids go to the generation config
        for name, value in cfgs.get("generation", {}).items():
            setattr(model.generation_config, name, value)
    else:
        model = getattr(transformers, job["cls"])(transformers.BertGenerationConfig(**cfgs["model"]))
    _perturb(model, torch, job["seed"])
    model.eval()
    model.save_pretrained(job["folder"])
    return model, {}


def _load(job, transformers):
    cls = getattr(transformers, job["cls"])
    model, info = cls.from_pretrained(job["folder"], output_loading_info=True, **job.get("kwargs", {}))
    info = {k: sorted(map(str, v)) for k, v in info.items()}
    return model.eval(), info


def _run(model, cls, inputs, torch):
    t = {k: torch.tensor(v) for k, v in inputs.items()}
    with torch.no_grad():
        if cls == "BertGenerationEncoder":
            return {"hidden": model(**t).last_hidden_state}
        return {"logits": model(**t).logits}


def main(jobs_path):
    import warnings

    import numpy as np
    import torch
    import transformers

    if not transformers.__version__.startswith("5."):
        sys.exit(f"expected transformers 5.x on PYTHONPATH, got {transformers.__version__} at {transformers.__file__}")
    torch.set_num_threads(1)  # two shared cores on CI: threads only add contention at these sizes
    jobs_path = Path(jobs_path)
    jobs = json.loads(jobs_path.read_text())
    logs = _capture_logs(transformers)
    results = []
    for i, job in enumerate(jobs):
        logs.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model, info = _build(job, transformers, torch) if job["kind"] == "build" else _load(job, transformers)
            outputs = _run(model, job["cls"], job["inputs"], torch)
            if "generate" in job:
                gen = job["generate"]
                outputs["tokens"] = model.generate(torch.tensor(gen.pop("input_ids")),
                                                   attention_mask=torch.tensor(gen.pop("attention_mask")), **gen)  # fmt: skip
        files = {}
        for name, value in outputs.items():
            files[name] = str(jobs_path.parent / f"{i}-{name}.npy")
            np.save(files[name], value.numpy())
        results.append({"info": info, "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
                        "logs": list(logs), "dtype": str(model.dtype), "outputs": files})  # fmt: skip
    done = {"version": transformers.__version__, "file": transformers.__file__, "results": results}
    (jobs_path.parent / "results.json").write_text(json.dumps(done))


if __name__ == "__main__":
    main(sys.argv[1])
