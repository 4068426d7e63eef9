"""lab/probe.py: what the fast weights keep, on ground-truth legs (recall, span, the retrace check)."""
import json

import numpy as np
import pytest
import torch
from conftest import micro_cfg

import data
import sfvgen
from lab import probe


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    import train
    out = tmp_path_factory.mktemp("m")
    train.main(micro_cfg(max_steps=1, out=str(out)), quiet=True)
    return str(out / "ckpt.pt")


def flags(ckpt, out):
    return ["--ckpt", ckpt, "--out-chunks", "2", "--lora-targets", "all", "--fast-steps", "4", "--fast-lr", "1e-2",
            "--out", str(out), "--device", "cpu", "--threads", "1"]


@pytest.mark.heavy
def test_memory_span_tests_each_chunk_right_after_its_update_and_at_the_end(tmp_path, ckpt):
    rows = probe.main(["--ckpt", ckpt, "--span", "2", "--out-chunks", "3", "--lora-targets", "all", "--fast-steps", "20",
                       "--fast-lr", "1e-2", "--out", str(tmp_path / "s"), "--device", "cpu", "--threads", "1"])
    assert [r["lag"] for r in rows] == [0, 1, 2]
    # the chunk learned last is tested twice in the same state with the same draws: the pairing is exact
    assert rows[0]["fast_learned"] == rows[0]["fast_end"] and rows[0]["cond_learned"] == rows[0]["cond_end"]
    assert all(r["fast_learned"] < 0 for r in rows)  # the fast weights lower the loss of the window they just learned
    for r in rows:  # memory: this world's change minus another world's, paired by world
        assert np.isclose(r["memory"], r["cond_end"] - r["cond_other"])
    back = json.load(open(tmp_path / "s" / "memory_span.json"))["return_leg"]  # the return leg, never learned itself
    assert np.isclose(back["memory"], back["cond_this"] - back["cond_other"])
    assert np.isclose(np.mean(back["per_chunk_this"]), back["cond_this"]) and len(back["per_chunk_this"]) == 3


def test_memory_probe_on_loop_twice_learns_the_first_lap_and_generates_the_second(tmp_path, ckpt):
    rows = probe.main(flags(ckpt, tmp_path / "p") + ["--recall", "2", "--trajectory", "loop-twice"])
    fresh, this, other = rows.values()
    assert fresh["gain"] == 0 and fresh["better"] == 0  # the fresh LoRA is the reference of every pair
    # the learned LoRAs are plugged in: the second lap differs from the fresh LoRA's, and differs by world
    assert this["return_psnr"] != fresh["return_psnr"] and this["return_psnr"] != other["return_psnr"]
    with pytest.raises(SystemExit, match="loop-twice"):  # a kind whose second half revisits nothing is refused
        probe.main(flags(ckpt, tmp_path / "p") + ["--recall", "2", "--trajectory", "random"])


def test_shifted_retrace_windows_are_exactly_the_return_legs_chunks_and_aligned_ones_are_one_move_off(tmp_path, ckpt):
    cfg = micro_cfg()
    n = 3
    actions = data.make_actions("out-and-back", np.random.default_rng(4), n=n)
    X, _ = probe.ground_truth_chunks(7, actions, cfg, "cpu")  # [X_0, X_1 .. X_n (outward), X_n+1 .. X_2n (back)]
    returns = [(X[n + k - 1], X[n + k], actions[n + k - 1]) for k in range(2, n + 1)]  # return chunks 2..n
    same = lambda a, b: all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a[:2], b[:2])) and a[2] == b[2]  # noqa: E731
    shifted = probe.retrace_windows(X[:n + 1], actions[:n], shift=1)
    assert len(shifted) == n - 1 and all(any(same(w, r) for w in shifted) for r in returns)
    aligned = probe.retrace_windows(X[:n + 1], actions[:n], shift=0)
    assert len(aligned) == n and not any(same(w, r) for w in aligned for r in returns)
    # one move off: each aligned window's target is the next return chunk's frames moved one frame on
    assert torch.equal(aligned[1][1][:, :cfg.chunk - 1], X[2 * n - 1][:, 1:])
    with pytest.raises(SystemExit, match="--recall N or --span N"):  # a check with nothing to check is refused
        probe.main(["--ckpt", ckpt, "--retrace", "shifted", "--out", str(tmp_path / "r")])


@pytest.mark.heavy
def test_teacher_forced_probe_generates_each_return_chunk_from_the_true_chunk_before_it(tmp_path, ckpt):
    free = probe.main(flags(ckpt, tmp_path / "p") + ["--recall", "2"])["LoRA of this world's outward leg"]
    forced = probe.main(flags(ckpt, tmp_path / "p") + ["--recall", "2", "--teacher-forced"])["LoRA of this world's outward leg"]
    # the first return chunk has the true turning chunk as context either way; the next one only when forced
    assert forced["per_chunk_gain"][0] == free["per_chunk_gain"][0]
    assert forced["per_chunk_gain"][1] != free["per_chunk_gain"][1]
    assert np.isclose(forced["gain"], np.mean(forced["per_chunk_gain"]))  # forced: the leg's PSNR is the chunks' mean


def test_the_retrace_update_trains_only_the_lora():
    cfg = micro_cfg()
    torch.manual_seed(0)
    model = sfvgen.VideoUNet(cfg).eval()
    sfvgen.add_lora(model, "all", rank=4, alpha=4)
    actions = data.make_actions("out-and-back", np.random.default_rng(1), n=3)[:3]
    X, _ = probe.ground_truth_chunks(3, actions, cfg, "cpu")
    base = {k: v.clone() for k, v in model.state_dict().items() if ".lora_" not in k}
    fresh = sfvgen.lora_state(model)
    opt = torch.optim.Adam(sfvgen.lora_parameters(model), lr=1e-2)
    probe.retrace_update(model, sfvgen.Diffusion(cfg, "cpu"), opt, X, actions, True, 3, np.random.default_rng(0), None)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in base.items())  # the slow weights stay frozen
    assert any(not torch.equal(v, sfvgen.lora_state(model)[k]) for k, v in fresh.items())  # the fast weights moved


def test_learning_the_outward_leg_with_another_rule_gives_another_memory():
    cfg = micro_cfg(fast_steps=2, fast_lr=1e-2)
    torch.manual_seed(0)
    model = sfvgen.with_lora(sfvgen.VideoUNet(cfg).eval(), cfg)
    diffusion = sfvgen.Diffusion(cfg, "cpu")
    actions = data.make_actions("out-and-back", np.random.default_rng(1), n=2)[:2]
    X, tok = probe.ground_truth_chunks(3, actions, cfg, "cpu")
    local = probe.learn_chunks(model, diffusion, cfg, X, tok, 0)
    again = probe.learn_chunks(model, diffusion, cfg, X, tok, 0, rule="local")
    other = probe.learn_chunks(model, diffusion, cfg, X, tok, 0, rule="local", reverse=True)
    assert all(torch.equal(local[k], again[k]) for k in local)  # deterministic: the seed fixes the draws
    assert any(not torch.equal(local[k], other[k]) for k in local)
