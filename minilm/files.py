"""Files that are safe to write: one atomic write for every file minilm writes, and checked downloads.

Every write goes to a temporary file `.<name>.<random>.tmp` in the same directory, is flushed and fsynced, then
`os.replace`d over the target, so a crash mid-write leaves the previous file intact (rename is atomic on POSIX and
Windows). Checkpoints, metrics, plots, token files, meta.json and tokenizers all go through `atomic_write`; a run
directory's leftover temporary files are removed by `minilm.checkpoint.prepare_out_dir`.
`fetch` downloads a dataset for data/<name>/prepare.py the same way, checked against its published sha256.

Left out on purpose: file locking (one writer per run directory), resumable downloads.
Explained in lectures/06_training.ipynb (checkpoints).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> str:
    """Write through `write(f)` into a temp file next to `path`, fsync, rename over `path`; clean up on any error."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:  # "x": never reuse another writer's temp file; mode follows the umask
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        except OSError:
            pass  # some filesystems refuse fsync on directories; the rename is still atomic
        finally:
            os.close(dir_fd)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Replace `path` with `data` atomically; returns the path."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> str:
    """Replace `path` with `text` atomically (newlines written as given); returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: str | os.PathLike, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Download `url` to `dest` (atomically) unless a copy with the right sha256 is already there."""
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    offline = "download it elsewhere and pass --source PATH to continue offline"

    def download(f: BinaryIO) -> None:
        h = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                for block in iter(lambda: response.read(1 << 20), b""):
                    f.write(block)
                    h.update(block)
        except OSError as e:  # URLError, HTTPError, timeouts and socket errors are all OSErrors
            raise ValueError(f"could not download {url} ({getattr(e, 'reason', e)}); {offline}") from None
        if sha256 is not None and h.hexdigest() != sha256:
            raise ValueError(f"sha256 mismatch for {url}: expected {sha256}, got {h.hexdigest()}; {offline}")

    atomic_write(dest, download)
    return dest
