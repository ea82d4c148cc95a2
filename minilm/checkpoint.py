"""Checkpoint files and run directories: everything a run needs to resume, in one file that cannot run code.

A checkpoint is one torch.save archive holding a dict:
    {"format": "minilm-checkpoint", "version": 1, "meta": "<JSON string>", "tensors": {...nested state dicts...}}
`tensors` holds the state dicts (model, optimizer, grad scaler, RNG states, data-sampler generators); `meta` holds
everything else (config, step, best val loss, tokenizer) as JSON text, so no Python object is ever pickled.
Files are loaded with torch.load(weights_only=True), which refuses any pickle that would import or call code
(a checkpoint from the internet is a program otherwise: https://pytorch.org/docs/stable/generated/torch.load.html).
Every write goes through minilm/files.py's atomic_write (temporary file, fsync, rename), so a crash mid-write leaves
the previous file intact. A run directory (train.py's and finetune.py's --out-dir) holds ckpt.pt (the latest),
best.pt (the best so far) and metrics.jsonl; `prepare_out_dir`, `read_metrics` and `write_metrics` handle it.

Explained in lectures/06_training.ipynb. Left out on purpose: sharded checkpoints, safetensors export, keeping the
last k checkpoints (train.py keeps the latest and the best).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from minilm import files
from minilm.classifier import SequenceClassifier, TokenClassifier
from minilm.config import ModelConfig
from minilm.model import CausalLM, MaskedLM, Transformer
from minilm.rnn import RNNLM
from minilm.tokenizer import tokenizer_from_dict

FORMAT = "minilm-checkpoint"
VERSION = 1
CHECKPOINT_NAME = "ckpt.pt"  # the file name inside a run directory (nanoGPT's out_dir/ckpt.pt)
_SAFE_LEAVES = (str, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)


def _check_tensors(obj: Any, where: str) -> None:
    """Fail at save time, naming the key, on anything weights_only loading would refuse at resume time."""
    if isinstance(obj, torch.Tensor) or isinstance(obj, _SAFE_LEAVES):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise ValueError(f"checkpoint key {where}[{key!r}] must be a str or int, got {type(key).__name__}")
            _check_tensors(value, f"{where}[{key!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check_tensors(value, f"{where}[{i}]")
    else:
        raise ValueError(f"checkpoint entry {where} is a {type(obj).__name__}; only tensors, numbers, strings and "
                         f"dicts/lists of them can be stored (put other data in the JSON metadata)")


def _resolve(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    return os.path.join(path, CHECKPOINT_NAME) if os.path.isdir(path) else path


def save_checkpoint(path: str | os.PathLike, tensors: dict, meta: dict) -> str:
    """Atomically write `tensors` (nested state dicts) and `meta` (JSON-serialisable) to `path` (a file, or a
    directory, meaning <dir>/ckpt.pt). Returns the file path written."""
    _check_tensors(tensors, "tensors")
    try:
        meta_json = json.dumps(meta, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint metadata must be JSON-serialisable: {e}") from None
    payload = {"format": FORMAT, "version": VERSION, "meta": meta_json, "tensors": tensors}
    return files.atomic_write(_resolve(path), lambda f: torch.save(payload, f))


def _verify_crc(path: str) -> None:
    """torch.load does not check the zip's CRC-32s, so flipped bytes inside a tensor would load silently."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()  # reads every member and compares its CRC-32 with the one stored at save time
    except zipfile.BadZipFile:
        return  # not a zip archive at all (or its index is gone): torch.load below says what is wrong
    except Exception as e:  # noqa: BLE001  damaged local headers
        raise ValueError(f"{path} is corrupt ({_first_line(e)}); use another checkpoint or re-run training") from None
    if bad is not None:
        raise ValueError(f"{path} is corrupt: checksum mismatch in {bad!r} (damaged on disk or in transfer); "
                         f"use another checkpoint or re-run training")


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", verify: bool = True) -> tuple[dict, dict]:
    """(tensors, meta) from a file written by save_checkpoint; `path` may be a run directory holding ckpt.pt.
    Raises FileNotFoundError for a missing file and ValueError for anything that is not a readable, safe,
    minilm checkpoint, with what to do about it. `verify` checks the archive's CRC-32s first (one extra read)."""
    original = os.fspath(path)
    if os.path.isdir(original) and not os.path.isfile(os.path.join(original, CHECKPOINT_NAME)):
        raise FileNotFoundError(f"directory {original} holds no {CHECKPOINT_NAME}: pass the checkpoint file itself, "
                                f"or the --out-dir of a run that has saved a checkpoint")
    path = _resolve(original)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}: check the path, or train first (python train.py)")
    if verify:
        _verify_crc(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "GLOBAL" in text:  # weights_only met an import of a function or class: the pickle would run code
            raise ValueError(f"{path} is not loadable: it contains pickled Python objects that could run code when "
                             f"loaded (unsafe), so it was refused. Only load checkpoints from a source you trust, "
                             f"and re-save them as tensors") from None
        raise ValueError(f"{path} is not a PyTorch checkpoint or is corrupt ({_first_line(e)}); "
                         f"re-run training or re-download it") from None
    except Exception as e:  # noqa: BLE001  truncated zips raise RuntimeError / EOFError; random bytes anything
        raise ValueError(f"{path} is truncated or corrupt ({_first_line(e)}); a crash mid-copy can cause this. "
                         f"Use another checkpoint or re-run training") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = (" It looks like a bare state_dict (e.g. a Hugging Face pytorch_model.bin): load weights with "
                "model.load_state_dict or minilm's pretrained loader instead." if isinstance(payload, dict) else "")
        raise ValueError(f"{path} is not a minilm checkpoint (no format marker {FORMAT!r}).{hint}")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path} is a minilm checkpoint of version {payload.get('version')!r}; this code reads "
                         f"version {VERSION}: use the minilm version that wrote it")
    try:
        meta = json.loads(payload["meta"])
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} has unreadable metadata ({e}); the file is corrupt") from None
    tensors = payload.get("tensors")
    if not isinstance(tensors, dict):
        raise ValueError(f"{path} has no tensor dict; the file is corrupt")
    return tensors, meta


def _first_line(e: BaseException) -> str:
    """The exception's first sentence: torch's messages run on (and weights_only's suggests weights_only=False,
    which is exactly the unsafe thing not to do with a file that failed to load)."""
    lines = str(e).strip().splitlines()
    first = lines[0].split(". ")[0].rstrip(".") if lines else ""
    return f"{type(e).__name__}: {first[:200]}"


def check_compatible(meta: dict, expected: dict, prefix: str = "") -> None:
    """Raise ValueError naming every field of `expected` (nested dicts compared field by field) whose value differs
    from the checkpoint's `meta`, e.g. when resuming with a different model config."""
    expected = json.loads(json.dumps(expected))  # compare in JSON terms: tuples become lists, keys become str
    written = meta.get("model_config")
    if isinstance(written, dict) and set(written) <= {f.name for f in dataclasses.fields(ModelConfig)}:
        # a ModelConfig field added after the checkpoint was written: it was made with that field's default
        meta = {**meta, "model_config": ModelConfig.from_dict(written).to_dict()}
    problems = []
    _diff(meta, expected, prefix, problems)
    if problems:
        raise ValueError("checkpoint is incompatible with the current settings: " + "; ".join(problems)
                         + ". Use the checkpoint's settings, or start a fresh run in another --out-dir")


def _diff(meta: Any, expected: dict, prefix: str, problems: list[str]) -> None:
    for key, want in expected.items():
        name = f"{prefix}{key}"
        if not isinstance(meta, dict) or key not in meta:
            problems.append(f"{name} is missing from the checkpoint (expected {want!r})")
        elif isinstance(want, dict) and isinstance(meta[key], dict):
            _diff(meta[key], want, name + ".", problems)
        elif meta[key] != want:
            problems.append(f"{name} is {meta[key]!r} in the checkpoint but {want!r} now")


def find_checkpoint(path: str | os.PathLike, prefer: str = "best.pt") -> str:
    """A run directory -> its `prefer` file (best.pt: lowest val loss) if present, else ckpt.pt (the latest);
    a file path is returned as it is."""
    path = os.fspath(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, prefer)):
        return os.path.join(path, prefer)
    return _resolve(path)


def load_model(path: str | os.PathLike, device: str = "cpu"):
    """(model, tokenizer, meta) from a train.py checkpoint (a file, or a run directory: best.pt first).

    The model class comes from meta["kind"] ("clm" -> CausalLM, "mlm" -> MaskedLM; RNNLM when the config's arch
    is "lstm" or "gru"), its shape from
    meta["model_config"], and the tokenizer from meta["tokenizer"], so a checkpoint is all one needs.
    """
    file = find_checkpoint(path)
    tensors, meta = load_checkpoint(file, map_location=device)
    classes = {"clm": CausalLM, "mlm": MaskedLM}
    if meta.get("kind") == "classifier":
        raise ValueError(f"{file} is a fine-tuned classifier, not a language model: pass it to finetune.py as --ckpt "
                         f"to predict, or use the train.py run it came from")
    if meta.get("kind") not in classes or "model_config" not in meta or "model" not in tensors:
        raise ValueError(f"{file} is a minilm checkpoint of kind {meta.get('kind')!r}, not a language model "
                         f"written by train.py (kinds: {sorted(classes)})")
    config = ModelConfig.from_dict(meta["model_config"])
    model = RNNLM(config) if config.arch != "transformer" else classes[meta["kind"]](config)  # train.py --arch
    try:
        model.load_state_dict(tensors["model"])
    except RuntimeError as e:
        raise ValueError(f"{file}: weights do not fit the model its metadata describes ({_first_line(e)})") from None
    return model.to(device).eval(), tokenizer_from_dict(meta["tokenizer"]), meta


def load_classifier(path: str | os.PathLike, device: str = "cpu", gpt2_ranks_path: str | os.PathLike | None = None):
    """(SequenceClassifier or TokenClassifier, tokenizer, meta) from a finetune.py checkpoint (a file, or a run
    directory: best.pt first). meta holds label_names, pooling, max_len and input_format ("[cls] text [sep]" or
    "text <eos>"); a --task token checkpoint also holds task, piece and fill_tag."""
    file = find_checkpoint(path)
    tensors, meta = load_checkpoint(file, map_location=device)
    needed = ("model_config", "tokenizer", "n_classes", "pooling", "label_names")
    if meta.get("kind") != "classifier" or "model" not in tensors or any(k not in meta for k in needed):
        raise ValueError(f"{file} is a minilm checkpoint of kind {meta.get('kind')!r}, not a classifier written by "
                         f"finetune.py: fine-tune it first (python finetune.py --init {path})")
    backbone = Transformer(ModelConfig.from_dict(meta["model_config"]))
    if meta.get("task", "sequence") == "token":  # finetune.py --task token: a tag per word (meta["piece"])
        model = TokenClassifier(backbone, meta["n_classes"], meta.get("head_dropout", 0.1))
    else:
        model = SequenceClassifier(backbone, meta["n_classes"], meta["pooling"], meta.get("head_dropout", 0.1))
    try:
        model.load_state_dict(tensors["model"])
    except RuntimeError as e:
        raise ValueError(f"{file}: weights do not fit the classifier its metadata describes ({_first_line(e)})") from None
    return model.to(device).eval(), tokenizer_from_dict(meta["tokenizer"], gpt2_ranks_path), meta


# ---------------------------------------------------------------------------------------------- run directories
def prepare_out_dir(out_dir: str | os.PathLike, resume: bool, overwrite: bool, verb: str = "train") -> Path:
    """Check a script's --out-dir against --resume / --overwrite, create it, and delete the temporary files of a
    run killed mid-write. `verb` names the script's action in the messages ("train", "fine-tune")."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out-dir {out_dir} is a file, not a directory: choose another --out-dir")
    ckpt = out_dir / CHECKPOINT_NAME
    if resume and not ckpt.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}; {verb} without --resume first "
                                f"(or point --out-dir at the run to continue)")
    if not resume and not overwrite and ckpt.is_file():
        raise ValueError(f"{out_dir} already holds a run ({ckpt}): pass --resume to continue it, --overwrite to "
                         f"replace it, or choose another --out-dir")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a parent is a file, or no permission
        raise ValueError(f"cannot create --out-dir {out_dir} ({e.strerror}): choose another --out-dir") from None
    if not os.access(out_dir, os.W_OK):
        raise ValueError(f"--out-dir {out_dir} is not writable: choose another --out-dir")
    for stale in out_dir.glob(".*.tmp"):  # minilm/files.py's temporary files, left by a run killed mid-write
        stale.unlink(missing_ok=True)
    return out_dir


def read_metrics(out_dir: str | os.PathLike, before_step: int) -> list[dict]:
    """The records of `out_dir`/metrics.jsonl logged before `before_step` (later ones are redone on --resume)."""
    path = Path(out_dir) / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return [r for r in records if r["step"] < before_step]


def write_metrics(out_dir: str | os.PathLike, records: list[dict]) -> None:
    """Replace `out_dir`/metrics.jsonl with `records`, one JSON object per line."""
    files.atomic_write_text(Path(out_dir) / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))
