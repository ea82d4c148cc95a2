"""train.py under torchrun: two CPU processes (gloo) train the same model as one process with the same global batch.

train.py's DDP makes every rank draw every micro-batch from the same seeded generator and keep only its share
(micro % world == rank), so two ranks with --grad-accum 4 (2 micro-batches each, gradients all-reduced on the last)
see exactly the 4 micro-batches one process sees. The losses can then differ only by float summation order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from minilm.checkpoint import load_checkpoint
from minilm.data import write_tokens
from minilm.tokenizer import CharTokenizer

ROOT = Path(__file__).resolve().parents[1]
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n") * 30

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available")


def read_losses(out_dir: Path) -> tuple[list[int], np.ndarray]:
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], "loss" if "loss" in r else "val_loss") for r in records]
    return keys, np.array([r.get("loss", r.get("val_loss")) for r in records])


@pytest.mark.slow  # two script starts plus two ranks: ~15 s on 2 cores
def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    tok = CharTokenizer.train(TEXT)
    n = int(len(TEXT) * 0.9)
    write_tokens(tmp_path / "data", {"train": np.array(tok.encode(TEXT[:n])),
                                     "val": np.array(tok.encode(TEXT[n:]))}, tok)
    args = [str(ROOT / "train.py"), "--preset", "tiny", "--data", str(tmp_path / "data"), "--device", "cpu",
            "--dtype", "float32", "--compile", "off", "--max-iters", "20", "--eval-interval", "10", "--eval-iters", "2",
            "--warmup-iters", "2", "--log-interval", "1", "--samples", "0", "--grad-accum", "4", "--seed", "5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          *args, "--out-dir", str(tmp_path / "ddp")], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "DDP x2" in ddp.stdout  # it really ran as two processes
    assert ddp.stdout.count("done: 20 steps") == 1  # only rank 0 reports (and writes)
    single = subprocess.run([sys.executable, *args, "--out-dir", str(tmp_path / "one")], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    assert "DDP" not in single.stdout

    keys_ddp, ddp_losses = read_losses(tmp_path / "ddp")
    keys_one, one_losses = read_losses(tmp_path / "one")
    assert keys_ddp == keys_one and len([k for k in keys_one if k[1] == "loss"]) == 20
    assert one_losses[-1] < one_losses[0] - 0.3  # the run trains, so matching losses mean matching training
    np.testing.assert_allclose(ddp_losses, one_losses, rtol=1e-4, atol=0)
    a = load_checkpoint(tmp_path / "ddp" / "ckpt.pt")[0]["model"]
    b = load_checkpoint(tmp_path / "one" / "ckpt.pt")[0]["model"]
    for name in a:  # weights ~0.02 in size; Adam turns last-bit gradient differences near 0 into ~1e-6 steps
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)
