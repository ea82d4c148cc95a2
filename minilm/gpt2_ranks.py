"""GPT-2's BPE ranks: where minilm finds OpenAI's file, and how it reads it (no download unless tiktoken may).

GPT-2's tokenizer (Radford et al. 2019, section 2.2) is 50,256 merged byte strings, each with its rank (its merge
order). OpenAI publishes them as encoder.json + vocab.bpe at https://openaipublic.blob.core.windows.net/gpt-2/
encodings/main/, which is what `tiktoken.get_encoding("gpt2")` downloads and converts (tiktoken_ext/openai_public.py,
gpt2()). The same ranks in tiktoken's file format, one "base64(bytes) rank" line each, are gpt2.tiktoken, shipped
by the openai-whisper package as whisper/assets/gpt2.tiktoken. `find_gpt2_ranks` looks for that file, in order: the
path it is given, $MINILM_GPT2_RANKS, data/gpt2/gpt2.tiktoken in the repository, then tiktoken's download; each
failure says all the ways out. `GPT2Tokenizer` (minilm/tokenizer.py) builds on it; lectures/01_tokenizer.ipynb,
section 4, uses the ranks to check the hand-written BPE encoder against GPT-2's ids.

Left out on purpose: reading encoder.json + vocab.bpe directly (tiktoken does it), other OpenAI encodings.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import tiktoken

GPT2_RANKS_ENV = "MINILM_GPT2_RANKS"
REPO_GPT2_RANKS = Path(__file__).resolve().parents[1] / "data" / "gpt2" / "gpt2.tiktoken"  # optional local copy
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"  # whisper's gpt2.tiktoken


def _gpt2_help() -> str:
    return ("GPT-2's BPE ranks were not found. Either (1) pass a local file: GPT2Tokenizer(ranks_path=...) / "
            f"--gpt2-ranks PATH, or set the environment variable {GPT2_RANKS_ENV}=/path/to/gpt2.tiktoken "
            "(gpt2.tiktoken is whisper/assets/gpt2.tiktoken in the openai-whisper package, sha256 "
            f"{GPT2_RANKS_SHA256}); or put it at data/gpt2/gpt2.tiktoken in the repository; or "
            "(2) allow network access so tiktoken.get_encoding('gpt2') can download "
            "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe and encoder.json.")


def load_tiktoken_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """Read a `.tiktoken` file: one `base64(bytes) rank` per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GPT-2 ranks file {path} does not exist. " + _gpt2_help())
    ranks = {}
    for lineno, line in enumerate(path.read_bytes().splitlines(), 1):
        if line.strip():
            try:
                tok, rank = line.split()
                ranks[base64.b64decode(tok)] = int(rank)
            except ValueError as e:
                raise ValueError(f"{path}, line {lineno}: expected 'base64 rank', got {line[:60]!r}") from e
    return ranks


def find_gpt2_ranks(ranks_path: str | os.PathLike | None = None) -> tuple[dict[bytes, int], str | None]:
    """(ranks, the file they came from; None for tiktoken's download), looked for in the order of the docstring."""
    local = REPO_GPT2_RANKS
    for path in (ranks_path, os.environ.get(GPT2_RANKS_ENV) or None, local if local.is_file() else None):
        if path is not None:
            return load_tiktoken_ranks(path), str(path)
    try:
        return tiktoken.get_encoding("gpt2")._mergeable_ranks, None
    except Exception as e:  # no network, proxy, blocked host, ...
        raise FileNotFoundError(_gpt2_help() + f" (tiktoken's download failed: {type(e).__name__})") from e
