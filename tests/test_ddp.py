"""Multi-process training (torchrun, DDP): N processes take the same steps as one process with the whole
global batch, because every rank draws the same batch and noise, computes its own slice, and DDP averages
the gradients (the mean of equal slices' means is the mean of the batch). Only rank 0 writes and logs."""
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import cli, micro_cfg

import sfvgen
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = [pytest.mark.heavy,
              pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")]


def test_two_processes_take_the_same_steps_as_one_process_with_the_same_global_batch(tmp_path):
    # channels=16, not micro's 8: with 8 channels GroupNorm(8, 8) normalizes every channel alone, so the biases
    # in front of it get a gradient that is pure rounding noise, and Adam's g / (|g| + eps) turns that noise
    # into full-size steps that no two summation orders agree on
    settings = dict(channels=16, batch=4, max_steps=3, log_every=1, device="cpu", threads=1)
    one = train.main(micro_cfg(out=str(tmp_path / "one"), **settings), quiet=True)
    cfg = micro_cfg(out=str(tmp_path / "ddp"), **settings)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py", *cli(cfg)]
    res = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    logged = [json.loads(line) for line in res.stdout.splitlines() if line.startswith('{"step"')]
    assert [r["step"] for r in logged] == [1, 2, 3]  # one log line per step: rank 0 logs, rank 1 does not
    assert [r["loss"] for r in logged] == pytest.approx(one["losses"], abs=1e-5)  # the global batch's loss
    assert sorted(os.listdir(tmp_path / "ddp")) == ["ckpt.pt", "log.jsonl"]  # one writer, no temp file left behind
    with open(tmp_path / "ddp" / "log.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [1, 2, 3]  # rank 0 alone appends to the log

    a = torch.load(tmp_path / "one" / "ckpt.pt", weights_only=True)
    b = torch.load(tmp_path / "ddp" / "ckpt.pt", weights_only=True)
    torch.manual_seed(cfg.seed)
    init = sfvgen.VideoUNet(cfg).state_dict()  # what main() starts from
    assert a["step"] == b["step"] == 3
    for part in ("model", "ema"):
        moved = max((a[part][k] - init[k]).abs().max().item() for k in init)
        diff = max((a[part][k] - b[part][k]).abs().max().item() for k in init)
        # the only difference is float32 summation order (two half-batch means averaged vs one mean), which
        # Adam's division by sqrt(v) can enlarge to ~1e-6 on near-zero gradients; the steps are ~1e-3
        assert moved > 1e-4 and diff < 2e-5, (part, moved, diff)
    # the same data and noise streams on every rank, saved by rank 0: --resume continues them exactly
    assert a["rng"]["numpy"] == b["rng"]["numpy"] and torch.equal(a["rng"]["torch"], b["rng"]["torch"])
