"""Checkpoints: safetensors files <-> parameter trees, transformers' layouts, strict checks.

- ``flatten`` / ``unflatten``: nested params <-> {"encoder.layer.0.attention.self.query.weight": array}.
- ``read_safetensors``: a small, strict reader of the safetensors format (an 8-byte header length,
  a JSON header, raw little-endian bytes). Written here rather than borrowed so that every way a
  file can be wrong gets an error naming the file and the tensor, and so bfloat16 files load.
  Nothing is ever unpickled: a ``pytorch_model.bin`` gets an error explaining how to convert it.
- ``load_checkpoint``: reads a folder, maps its keys onto the expected layout (``bert.`` prefix
  added or stripped, legacy LayerNorm gamma/beta renamed, BERT's token-type embeddings and pooler
  dropped), checks every shape, converts dtypes explicitly, and returns a ``LoadReport``.
- ``save_checkpoint``: writes config.json, generation_config.json and model.safetensors, each
  atomically (temporary file, then rename), in the layout that transformers 4.57.6 and 5.x both
  load cleanly (reference §9).
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from .backend import to_numpy
from .config import read_json, write_json_atomic

# ================================================================ parameter trees


@dataclass(frozen=True)
class ParamSpec:
    """What one parameter must be: its shape and how random init draws it."""

    shape: tuple
    init: str  # "normal" (N(0, std)), "zeros" or "ones"
    std: float = 0.0
    pad_row: int | None = None  # an embedding row that starts at zero (the pad token)


def flatten(tree, prefix: str = "") -> dict:
    """Nested dicts/lists of arrays -> {dotted transformers name: array}, in tree order."""
    flat = {}
    items = enumerate(tree) if isinstance(tree, list) else tree.items()
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list)):
            flat.update(flatten(value, f"{name}."))
        elif value is not None:
            flat[name] = value
    return flat


def unflatten(flat: dict) -> dict:
    """{dotted name: array} -> nested dicts, where a level whose keys are all digits becomes a list."""
    tree: dict = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    def listify(node):
        if not isinstance(node, dict):
            return node
        node = {k: listify(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[str(i)] for i in range(len(node))]
        return node

    return listify(tree)


def init_params(spec: dict[str, ParamSpec], seed: int | np.random.Generator = 0, dtype="float32") -> dict:
    """Random parameters with transformers' scheme, drawn on the host from a seeded Generator.

    Linear and embedding weights ~ N(0, initializer_range), biases 0, LayerNorm 1/0, the word
    embedding's pad row 0 (reference §1). Returns a flat {name: numpy array}.
    """
    check_allocation(spec, dtype)
    rng = np.random.default_rng(seed)
    flat = {}
    for name, s in spec.items():
        if s.init == "normal":
            value = rng.normal(0.0, s.std, size=s.shape)
            if s.pad_row is not None:
                value[s.pad_row] = 0.0
        elif s.init == "zeros":
            value = np.zeros(s.shape)
        elif s.init == "ones":
            value = np.ones(s.shape)
        else:
            raise ValueError(f"unknown init {s.init!r} for {name}")
        flat[name] = value.astype(dtype)
    return flat


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX (Windows)
        return None


def check_allocation(spec: dict[str, ParamSpec], dtype) -> None:
    """Refuse, before allocating, parameters that cannot fit in this machine's memory.

    A config is data: ``vocab_size: 1e12`` would otherwise end in a MemoryError (or the OOM killer)
    after a long wait. Counts the parameters in ``dtype`` plus init's largest float64 draw.
    """
    total = sum(math.prod(s.shape) for s in spec.values())
    largest = max((math.prod(s.shape) for s in spec.values()), default=0)
    need = total * np.dtype(dtype).itemsize + largest * 8
    available = memory_bytes()
    if available is not None and need > available:
        big = max(spec, key=lambda k: math.prod(spec[k].shape))
        raise ValueError(
            f"the config asks for {total:,} parameters ({need / 2**30:,.1f} GiB in {np.dtype(dtype)}), more than "
            f"this machine's {available / 2**30:,.1f} GiB of memory (largest: {big} of shape {spec[big].shape}); "
            "check vocab_size, hidden_size, intermediate_size and max_position_embeddings in config.json"
        )


# ================================================================ safetensors


class CheckpointError(ValueError):
    """A checkpoint file or folder that cannot be loaded as asked; the message says why and where."""


SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}  # fmt: skip
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the format's own limit


def read_safetensors(path) -> dict[str, np.ndarray]:
    """Read every tensor of a .safetensors file into host numpy arrays (bfloat16 -> float32).

    Raises CheckpointError (a ValueError) naming the file for a truncated file, a header that is
    not JSON, an unknown dtype, or offsets that disagree with shapes or run past the end.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size < 8:
        raise CheckpointError(f"{path}: {size} bytes is too short for a safetensors file (truncated?)")
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        if header_len > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(
                f"{path}: header length {header_len} runs past the file's {size} bytes (truncated or not safetensors)"
            )
        try:
            header = json.loads(f.read(header_len).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: the safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    data_start, data_len = 8 + header_len, size - 8 - header_len
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start, shape=(data_len,)) if data_len else b""

    tensors = {}
    for name, entry in header.items():
        try:
            dtype_name, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            shape = tuple(int(n) for n in shape)
            begin, end = int(begin), int(end)
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"{path}: malformed header entry for tensor {name!r}: {entry!r}") from None
        if dtype_name not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype_name!r}")
        dtype = SAFETENSORS_DTYPES[dtype_name]
        if any(n < 0 for n in shape):
            raise CheckpointError(f"{path}: tensor {name!r} has a negative dimension in shape {shape}")
        n_bytes = math.prod(shape) * dtype.itemsize  # Python ints: a lying shape cannot overflow
        if not 0 <= begin <= end <= data_len or end - begin != n_bytes:
            raise CheckpointError(
                f"{path}: tensor {name!r} of shape {shape} {dtype_name} needs {n_bytes} bytes, but its offsets "
                f"[{begin}, {end}) do not fit the {data_len} data bytes (truncated or corrupt file)"
            )
        array = np.frombuffer(raw[begin:end], dtype=dtype).reshape(shape) if n_bytes else np.zeros(shape, dtype)
        if dtype_name == "BF16":  # bfloat16 is the top half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = np.array(array)  # copy out of the memory map
    return tensors


def write_safetensors(path, tensors: dict[str, np.ndarray]) -> None:
    """Write {name: array} as a .safetensors file (metadata {"format": "pt"}), atomically."""
    from safetensors.numpy import save_file

    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    save_file({k: np.ascontiguousarray(to_numpy(v)) for k, v in tensors.items()}, tmp, metadata={"format": "pt"})
    os.replace(tmp, path)


def read_checkpoint_tensors(folder) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint folder: model.safetensors, or the shards its index names."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"checkpoint folder not found: {folder}")
    single = os.path.join(folder, "model.safetensors")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(single):
        return read_safetensors(single)
    if os.path.isfile(index):
        return _read_shards(folder, index)
    if any(os.path.isfile(os.path.join(folder, n)) for n in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")):
        raise CheckpointError(
            f"{folder} has only a pickle-based or framework-specific weights file; minibertgen reads "
            "safetensors only and never unpickles. Convert it once where torch and transformers are "
            "installed: AutoModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)"
        )
    raise FileNotFoundError(f"no model.safetensors in {folder}")


# ================================================================ loading


@dataclass
class LoadReport:
    """What loading did: every tensor is in exactly one list (or folded into another)."""

    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # absent from the file, freshly initialised
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (key in file, why it is not used)
    converted: dict[str, str] = field(default_factory=dict)  # key -> "float16 -> float32"
    folded: list[str] = field(default_factory=list)
    copied: list[tuple[str, str]] = field(default_factory=list)  # (key, the key it starts as a copy of)
    notes: list[str] = field(default_factory=list)  # decisions about the whole file (e.g. loaded untied)

    def merged(self, prefix: str, other: LoadReport, other_prefix: str) -> LoadReport:
        """This report and another, with each part's names prefixed (for encoder + decoder)."""
        out = LoadReport()
        for report, p in ((self, prefix), (other, other_prefix)):
            out.loaded += [f"{p}.{k}" for k in report.loaded]
            out.new += [f"{p}.{k}" for k in report.new]
            out.dropped += [(f"{p}.{k}", why) for k, why in report.dropped]
            out.converted.update({f"{p}.{k}": v for k, v in report.converted.items()})
            out.folded += [f"{p}.{k}" for k in report.folded]
            out.copied += [(f"{p}.{k}", f"{p}.{source}") for k, source in report.copied]
            out.notes += [f"{p}: {note}" for note in report.notes]
        return out

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.new:
            lines.append(f"new (initialised here, {len(self.new)}): " + ", ".join(group_names(self.new)))
        if self.copied:
            lines.append(f"copied (not in the file, started as a copy of another part, {len(self.copied)}): "
                         + ", ".join(group_names([_module_pair(k, source) for k, source in self.copied])))  # fmt: skip
        if self.dropped:
            reasons: dict[str, list[str]] = {}
            for key, why in self.dropped:
                reasons.setdefault(why, []).append(key)
            for why, keys in reasons.items():
                lines.append(f"dropped ({why}): " + ", ".join(group_names(keys)))
        if self.converted:
            kinds = sorted(set(self.converted.values()))
            lines.append(f"converted {len(self.converted)} tensors: " + ", ".join(kinds))
        if self.folded:
            lines.append("folded: " + ", ".join(self.folded))
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def group_names(keys: list[str]) -> list[str]:
    """Collapse layer indices for a short listing: 'bert.encoder.layer.*.crossattention.self.key.weight (x6)'."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(re.sub(r"\.\d+\.", ".*.", key), []).append(key)
    return [members[0] if len(members) == 1 else f"{p} (x{len(members)})" for p, members in groups.items()]


def _module_pair(key: str, source: str) -> str:
    """'a.0.cross.q.weight', 'a.0.self.q.weight' -> 'a.0.cross <- a.0.self': the two modules, without
    the parameter path they share."""
    a, b = key.split("."), source.split(".")
    while len(a) > 1 and len(b) > 1 and a[-1] == b[-1]:
        a, b = a[:-1], b[:-1]
    return f"{'.'.join(a)} <- {'.'.join(b)}"


# Keys a BERT-family file may carry that BertGeneration has no place for (reference §9, §13).
DROPPABLE = [
    (re.compile(r"(^|\.)embeddings\.token_type_embeddings\.weight$"), "token-type embeddings: BertGeneration has none"),
    (re.compile(r"(^|\.)pooler\."), "pooler: BertGeneration has none"),
    (re.compile(r"(^|\.)cls\."), "BERT pre-training heads: not BertGeneration's LM head"),
    (re.compile(r"(^|\.)embeddings\.position_ids$"), "a buffer, not a weight"),
]


def _normalize_keys(tensors: dict, role: str) -> dict:
    """Map a file's keys onto this role's layout: legacy names, and the ``bert.`` prefix."""
    renamed = {}
    for key, value in tensors.items():
        if "LayerNorm" in key:  # old TF-converted checkpoints name LayerNorm parameters gamma/beta
            key = re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", key))
        renamed[key] = value
    has_bert_prefix = any(k.startswith("bert.") for k in renamed)
    if role == "encoder" and has_bert_prefix:  # a decoder or BertForPreTraining file
        renamed = {k.removeprefix("bert."): v for k, v in renamed.items()}
    elif role == "decoder" and not has_bert_prefix:  # an encoder or BertModel file
        renamed = {k if k.startswith(("lm_head.", "cls.")) else f"bert.{k}": v for k, v in renamed.items()}
    return renamed


def load_checkpoint(
    folder,
    spec: dict[str, ParamSpec],
    *,
    role: str,
    dtype="float32",
    strict=True,
    fold_token_type=False,
    seed=0,
    new_distance_tables=False,
    tensors=None,
    allow_nonfinite=False,
) -> tuple[dict, LoadReport]:
    """Load a checkpoint folder onto the parameter layout ``spec``.

    role: "encoder", "decoder" or "encoder-decoder" (which prefixes to expect). Strict mode raises
    CheckpointError for any unexpected key (beyond BERT's known extras, which are dropped and
    reported), any mis-shaped tensor, and any missing tensor except these whole groups, which a
    warm start creates fresh (N(0, std) seeded by ``seed``, or zeros): every ``crossattention``
    weight, and the LM head when the file has none. ``strict=False`` initialises whatever is
    missing and drops whatever is unexpected, reporting both.
    new_distance_tables=True also lets relative-position tables the file lacks start fresh (the caller
    overrode position_embedding_type). ``tensors``: the folder's tensors, if the caller read them already.
    A tensor holding NaN or inf (a diverged run's weights) is refused, naming it, unless
    ``allow_nonfinite=True`` (to inspect such a file).
    Returns ({name: numpy array of ``dtype``}, LoadReport).
    """
    check_allocation(spec, dtype)  # before reading a file that a config this large cannot match anyway
    tensors = _normalize_keys(read_checkpoint_tensors(folder) if tensors is None else dict(tensors), role)
    report = LoadReport()
    flat: dict[str, np.ndarray] = {}

    # The LM-head bias: transformers 4.57.6 shares lm_head.bias and lm_head.decoder.bias; either
    # suffices and, when both are present and differ, lm_head.decoder.bias wins (reference §6), as it
    # does in 5.x, whose untied head adds lm_head.decoder.bias and leaves lm_head.bias unused.
    for prefix in ("", "decoder."):
        alias, bias = f"{prefix}lm_head.decoder.bias", f"{prefix}lm_head.bias"
        if alias in tensors and bias in spec:
            if bias in tensors:
                same = _same_values(tensors[bias], tensors[alias])
                report.dropped.append((bias, "an equal copy of lm_head.decoder.bias" if same else
                                       "differs from lm_head.decoder.bias, which is used (as transformers runs it)"))
            tensors[bias] = tensors.pop(alias)
    tied_head = [k for k in tensors if k.endswith("lm_head.decoder.weight") and k not in spec]
    for key in tied_head:  # tied: the word embeddings are the LM head; the file's copy is unused
        tensors.pop(key)
        report.dropped.append((key, "tied to the word embeddings"))
    if role == "encoder":
        for key in [k for k in tensors if k.startswith("lm_head.")]:
            tensors.pop(key)
            report.dropped.append((key, "an encoder has no LM head"))
    if role == "encoder-decoder" and not any(k.startswith("encoder.") for k in spec):
        differing = set(differing_tied_copies(tensors))  # EncoderDecoderModel.from_pretrained unties these
        for key in [k for k in tensors if k.startswith("encoder.")]:  # tie_encoder_decoder
            tensors.pop(key)
            report.dropped.append((key, "tie_encoder_decoder: DIFFERS from the decoder's copy, which is used"
                                   if key in differing else "tie_encoder_decoder: an equal copy of decoder.bert.*"))

    if fold_token_type:
        _fold_token_type(tensors, report)

    unexpected = []
    for key in list(tensors):
        if key in spec:
            continue
        reason = next((why for pattern, why in DROPPABLE if pattern.search(key)), None)
        if reason is None:
            unexpected.append(key)
        else:
            report.dropped.append((key, reason))
        tensors.pop(key)
    if unexpected:
        if strict:
            raise CheckpointError(
                f"{folder}: unexpected tensors {group_names(unexpected)}; the config does not describe this "
                "checkpoint (e.g. position_embedding_type, num_hidden_layers), or pass strict=False to drop them"
            )
        report.dropped += [(k, "unexpected") for k in unexpected]

    missing = [k for k in spec if k not in tensors]
    allowed_new = _warm_start_groups(spec, tensors, role)
    if new_distance_tables:  # the caller chose relative positions for a file that has none
        allowed_new |= {k for k in missing if k.endswith("distance_embedding.weight")}
    not_allowed = [k for k in missing if k not in allowed_new]
    if not_allowed and strict:
        hint = ""
        if any(".cls." in k or k.startswith("cls.") for k, _ in report.dropped):
            hint = " (the file has a BERT pre-training head, cls.*, not BertGeneration's lm_head)"
        elif all(k.endswith("distance_embedding.weight") for k in not_allowed):
            hint = (
                " (config.json asks for relative positions but the file has no distance tables, as transformers"
                " >= 5 saves them: 5.x ran this model with absolute positions. Load it as 5.x ran it with"
                " position_embedding_type='absolute', or pass position_embedding_type='relative_key' (or"
                " 'relative_key_query') explicitly to start fresh tables)"
            )
        raise CheckpointError(f"{folder}: missing tensors {group_names(not_allowed)}{hint}")
    fresh = init_params({k: spec[k] for k in missing}, seed, dtype)
    flat.update(fresh)
    report.new = missing

    for key in spec:
        if key in missing:
            continue
        value = tensors[key]
        if tuple(value.shape) != tuple(spec[key].shape):
            raise CheckpointError(
                f"{folder}: tensor {key} has shape {tuple(value.shape)}, but the config needs "
                f"{tuple(spec[key].shape)}; config.json does not match the weights"
            )
        if not np.issubdtype(value.dtype, np.floating):
            raise CheckpointError(f"{folder}: tensor {key} has dtype {value.dtype}, expected a floating-point type")
        if value.dtype != np.dtype(dtype):
            report.converted[key] = f"{value.dtype} -> {np.dtype(dtype)}"
        flat[key] = value.astype(dtype)
        if not allow_nonfinite:  # checked after the cast: a float64 value can overflow float32
            _check_finite(folder, key, flat[key])
        report.loaded.append(key)
    return {k: flat[k] for k in spec}, report


def _read_shards(folder: str, index: str) -> dict[str, np.ndarray]:
    """The tensors of a sharded checkpoint, as ``model.safetensors.index.json``'s weight_map lists them.

    Every shard must be a plain file name inside ``folder`` (an index is data, not a path to follow
    elsewhere), every tensor must sit in the shard the map names, and no tensor may be in two shards.
    """
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f'{index}: expected {{"weight_map": {{tensor name: shard file name}}}}, '
                              f"got weight_map={str(weight_map)[:80]}")  # fmt: skip
    tensors: dict[str, np.ndarray] = {}
    where: dict[str, str] = {}
    for shard in sorted(set(weight_map.values())):
        if os.path.basename(shard) != shard or shard in ("", ".", ".."):
            raise CheckpointError(f"{index}: shard {shard!r} is not a file name inside {folder}")
        for name, value in read_safetensors(os.path.join(folder, shard)).items():
            if name in where:
                raise CheckpointError(f"{folder}: tensor {name!r} is in two shards, {where[name]} and {shard}")
            if weight_map.get(name, shard) != shard:
                raise CheckpointError(f"{folder}: tensor {name!r} is in {shard}, but the index puts it in "
                                      f"{weight_map[name]}")  # fmt: skip
            tensors[name], where[name] = value, shard
    listed_absent = sorted(set(weight_map) - set(tensors))
    if listed_absent:
        raise CheckpointError(f"{index} lists tensors that no shard holds: {group_names(listed_absent)}")
    return tensors


def _check_finite(folder, key: str, value: np.ndarray) -> None:
    finite = np.isfinite(value)
    if not finite.all():
        bad = value[~finite]
        raise CheckpointError(
            f"{folder}: tensor {key} holds {bad.size} non-finite values ({int(np.isnan(bad).sum())} NaN, "
            f"{int(np.isinf(bad).sum())} inf): the run that wrote it diverged. Load it with allow_nonfinite=True "
            "only to inspect it"
        )


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def differing_tied_copies(tensors: dict) -> list[str]:
    """The ``encoder.*`` keys of a tie_encoder_decoder file whose values differ from their ``decoder.bert.*``
    twin. transformers 4.57.6 writes no encoder copies and this package writes equal ones, but 5.x no
    longer ties: its files hold two separately trained stacks while config.json still says true."""
    return [k for k, v in tensors.items() if k.startswith("encoder.") and
            not _same_values(v, tensors.get("decoder.bert." + k.removeprefix("encoder."), np.empty(0)))]


def _warm_start_groups(spec, tensors, role) -> set[str]:
    """Spec keys that may be absent from the file: whole groups a warm start creates."""
    if role == "encoder-decoder":
        return set()
    allowed = set()
    cross = [k for k in spec if ".crossattention." in k]
    if cross and not any(k in tensors for k in cross):
        allowed.update(cross)
    head = [k for k in spec if k.startswith("lm_head.")]
    if head and not any(k in tensors for k in head):
        allowed.update(head)
    return allowed


def _fold_token_type(tensors, report) -> None:
    """position_embeddings += token_type_embeddings[0]: single-segment BERT, exactly (reference §13)."""
    types = [k for k in tensors if k.endswith("embeddings.token_type_embeddings.weight")]
    if not types:
        raise CheckpointError("fold_token_type=True, but the checkpoint has no token_type_embeddings")
    for key in types:
        pos_key = key.replace("token_type_embeddings", "position_embeddings")
        tensors[pos_key] = tensors[pos_key] + tensors[key][0]
        report.folded.append(f"{key}[0] -> {pos_key}")
        tensors.pop(key)


# ================================================================ saving

ARCHITECTURES = {"encoder": "BertGenerationEncoder", "decoder": "BertGenerationDecoder", "encoder-decoder": "EncoderDecoderModel"}


def save_checkpoint(folder, flat: dict, config_dict: dict, *, role: str, config, generation_fields=None) -> None:
    """Write config.json, model.safetensors and (decoder, bert2bert) generation_config.json.

    The tensors follow the layout that loads cleanly in transformers 4.57.6 and 5.x (reference §9):
    ``lm_head.decoder.bias`` is written beside ``lm_head.bias`` with the same values, and with
    tie_encoder_decoder the ``encoder.*`` copies of ``decoder.bert.*`` are written too.
    generation_fields (a GenerationConfig's ``to_dict()``) override the config's token ids.
    """
    folder = os.fspath(folder)
    parts = [getattr(config, "encoder", None), getattr(config, "decoder", None)] if role == "encoder-decoder" else [config]
    relative = sorted({p.position_embedding_type for p in parts if p.position_embedding_type != "absolute"})
    if relative:
        warnings.warn(
            f"{folder}: this model uses position_embedding_type={relative[0]!r}. transformers 4.57.6 loads and runs"
            " it exactly, but transformers >= 5 removed relative positions: it drops the distance_embedding"
            " tensors (reported as unexpected) and runs the model with absolute positions, giving other outputs",
            UserWarning, stacklevel=3,
        )  # fmt: skip
    os.makedirs(folder, exist_ok=True)
    tensors = {k: to_numpy(v) for k, v in flat.items()}
    for prefix in ("", "decoder."):
        if f"{prefix}lm_head.bias" in tensors:
            tensors[f"{prefix}lm_head.decoder.bias"] = tensors[f"{prefix}lm_head.bias"]
    if role == "encoder-decoder" and config.tie_encoder_decoder:
        for key in list(tensors):
            if key.startswith("decoder.bert.") and ".crossattention." not in key:
                tensors["encoder." + key.removeprefix("decoder.bert.")] = tensors[key]
    dtype = str(next(iter(tensors.values())).dtype)
    config_dict = dict(config_dict, architectures=[ARCHITECTURES[role]], dtype=dtype)
    write_safetensors(os.path.join(folder, "model.safetensors"), tensors)
    write_json_atomic(os.path.join(folder, "config.json"), config_dict)
    if role != "encoder":
        generation = {**generation_config_dict(config), **(generation_fields or {})}
        write_json_atomic(os.path.join(folder, "generation_config.json"), generation)


def generation_config_dict(config) -> dict:
    """Token ids for generate(), including decoder_start_token_id (transformers 4.57.6 drops it: reference §9-10)."""
    part = getattr(config, "decoder", config)
    d = {}
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
        value = getattr(config, name, None)
        if value is None:
            value = getattr(part, name, None)
        if value is not None:
            d[name] = value
    return d
