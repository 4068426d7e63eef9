"""Interruptions never lose work: SIGKILL then --resume reaches the same weights; Ctrl-C saves and says how
to resume. Bad input is refused before any work starts."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import cli, micro_cfg

import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(cfg):
    # a shell without job control starts background jobs with SIGINT ignored, and a child inherits that (Python
    # then installs no KeyboardInterrupt handler): give train.py the default Ctrl-C, as a terminal would
    return subprocess.Popen([sys.executable, "train.py", *cli(cfg)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_step(path, step, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if os.path.exists(path):
            try:
                if torch.load(path, weights_only=True)["step"] >= step:
                    return
            except Exception:  # only a complete file is ever at this path; retry on a race with rename
                pass
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.01)
    raise TimeoutError


def test_sigkill_then_resume_reaches_the_same_weights_bit_for_bit(tmp_path):
    steps = 30
    full = train.main(micro_cfg(out=str(tmp_path / "full"), max_steps=steps, ckpt_every=1), quiet=True)
    cfg = micro_cfg(out=str(tmp_path / "killed"), max_steps=steps, ckpt_every=1)
    proc = start(cfg)
    ckpt = str(tmp_path / "killed" / "ckpt.pt")
    wait_for_step(ckpt, 2, proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=True)["step"]
    assert killed_at < steps
    rest = train.main(micro_cfg(out=str(tmp_path / "killed"), max_steps=steps, ckpt_every=1, resume=True), quiet=True)
    assert rest["losses"] == full["losses"][killed_at:]
    a = torch.load(tmp_path / "full" / "ckpt.pt", weights_only=True)
    b = torch.load(ckpt, weights_only=True)
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])


@pytest.mark.heavy
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_ctrl_c_and_sigterm_finish_the_step_save_and_resume_bit_for_bit(tmp_path, sig, code):
    """Ctrl-C, or the SIGTERM a cluster scheduler sends before it kills a job, arrives while a step runs: the step
    finishes, a checkpoint is written, and --resume reaches the weights, EMA and losses of an uninterrupted run."""
    steps = 12
    full = train.main(micro_cfg(out=str(tmp_path / "full"), max_steps=steps, ckpt_every=1000), quiet=True)
    cfg = micro_cfg(out=str(tmp_path / "cut"), max_steps=steps, ckpt_every=1000, log_every=1)
    proc = start(cfg)
    for line in proc.stdout:  # one JSON log line per step: training is running
        if '"step": 3' in line:
            break
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == code, out
    assert "checkpoint saved" in out and "--resume" in out and "Traceback" not in out
    saved = torch.load(tmp_path / "cut" / "ckpt.pt", weights_only=True)
    assert 3 <= saved["step"] < steps  # saved at the interruption, not at a scheduled checkpoint
    with open(tmp_path / "cut" / "log.jsonl") as f:  # the log file holds every step's line, printed or not
        logged = [r["loss"] for r in map(json.loads, f) if "loss" in r]
    rest = train.main(micro_cfg(out=str(tmp_path / "cut"), max_steps=steps, ckpt_every=1000, resume=True), quiet=True)
    assert logged[:saved["step"]] == pytest.approx(full["losses"][:saved["step"]], abs=5e-6)  # the log rounds
    assert rest["losses"] == full["losses"][saved["step"]:]
    a = torch.load(tmp_path / "full" / "ckpt.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "ckpt.pt", weights_only=True)
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])


def test_a_run_that_never_leaves_its_warmup_is_warned_about(tmp_path, capsys):
    train.main(micro_cfg(out=str(tmp_path), max_steps=3, warmup=5), quiet=False)
    err = capsys.readouterr().err
    assert "warning: --max-steps 3 is not past --warmup 5" in err


@pytest.mark.parametrize("args,msg", [
    (["--no-such-flag", "1"], "unrecognized arguments"),
    (["--preset", "huge"], "unknown preset"),
    (["--size", "30"], "cannot be halved"),
    (["--batch", "0"], "must be positive"),
    (["--lora-targets", "everything"], "lora-targets"),
    (["--loop", "--data", "no/such/folder"], "annotations.jsonl"),
])
def test_bad_training_flags_are_refused_before_any_work(tmp_path, args, msg):
    out = tmp_path / "never"
    res = subprocess.run([sys.executable, "train.py", "--out", str(out), *args], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and msg in res.stderr
    assert not out.exists()  # nothing was started


@pytest.mark.parametrize("args,msg", [
    (["--actions", "go right*x"], "repeat count"),
    (["--actions", "go sideways"], "vocabulary"),
    (["--ckpt", "no/such/file.pt"], "no such file"),
    (["--timesteps", "500"], "--timesteps is a training setting"),
    (["--lr", "1e-3"], "--lr is a training setting"),
])
def test_bad_generation_input_is_refused_with_a_message(tmp_path, args, msg):
    base = ["--ckpt", "checkpoints/tiny.pt", "--out", str(tmp_path / "o")]
    res = subprocess.run([sys.executable, "generate.py", *base, *args], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode != 0 and msg in res.stderr and "Traceback" not in res.stderr


def test_an_output_folder_that_cannot_be_created_fails_before_training(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match="cannot write to output folder"):
        train.main(micro_cfg(out=str(tmp_path / "file" / "run")), quiet=True)


def test_bad_memory_files_are_refused_naming_the_file(tmp_path):
    import generate
    ckpt = str(tmp_path / "m.pt")
    train.main(micro_cfg(out=str(tmp_path), max_steps=1), quiet=True)
    os.replace(tmp_path / "ckpt.pt", ckpt)
    mem = str(tmp_path / "mem.pt")
    base = ["--ckpt", ckpt, "--actions", "go right", "--threads", "1"]
    generate.main(base + ["--out", str(tmp_path / "a"), "--memory-out", mem])
    good = open(mem, "rb").read()
    open(tmp_path / "trunc.pt", "wb").write(good[: len(good) // 3])
    cases = [("trunc.pt", "damaged or cut short"), ("m.pt", "a model checkpoint, not a memory")]
    for name, msg in cases:  # a truncated memory; a model checkpoint given as a memory
        with pytest.raises(SystemExit, match=msg) as e:
            generate.main(base + ["--out", str(tmp_path / "b"), "--memory-in", str(tmp_path / name)])
        assert name in str(e.value)
    with pytest.raises(SystemExit, match="another model or LoRA setting"):
        generate.main(base + ["--out", str(tmp_path / "c"), "--memory-in", mem, "--lora-rank", "2"])
    generate.main(base + ["--out", str(tmp_path / "d"), "--memory-in", mem])  # the good one continues
    assert os.path.exists(tmp_path / "d" / "frames.npy")


def test_init_weights_from_another_architecture_are_refused_naming_the_file(tmp_path):
    train.main(micro_cfg(out=str(tmp_path / "a"), max_steps=1), quiet=True)
    with pytest.raises(ValueError, match=r"ckpt\.pt: its weights were trained with --channels 8"):
        train.main(micro_cfg(out=str(tmp_path / "b"), channels=16, init=str(tmp_path / "a" / "ckpt.pt")), quiet=True)
