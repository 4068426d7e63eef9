"""lab/eval.py: rows paired by world against the row without fast learning, the controls, and the seams they use
(a video started from a memory with a frozen LoRA)."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import micro_cfg

import data
import sfvgen
from lab import common, memory_curve
from lab import eval as lab_eval


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    import train
    out = tmp_path_factory.mktemp("m")
    train.main(micro_cfg(max_steps=1, out=str(out)), quiet=True)
    return str(out / "ckpt.pt")


def test_memory_start_is_a_fresh_start_and_holds_its_lora_frozen():
    cfg = micro_cfg()
    torch.manual_seed(0)
    model = sfvgen.VideoUNet(cfg)
    with torch.no_grad():  # a non-trivial network, so a LoRA changes the frames
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    sfvgen.add_lora(model, "all", rank=4, alpha=4)
    diffusion = sfvgen.Diffusion(cfg, "cpu")
    first = data.render_episode(0, [], cfg.world())[0][0]
    actions = ["go right", "go up"]
    plain = sfvgen.generate_long(model, diffusion, cfg, first, actions, fast_learning=False, seed=3)["frames"]
    start = sfvgen.Memory.start(first, 3, "cpu")
    again = sfvgen.generate_long(model, diffusion, cfg, None, actions, fast_learning=False, seed=3, memory=start)["frames"]
    assert np.array_equal(np.concatenate([common.start_frame(start), again]), plain)  # the same video, bit for bit
    learned = sfvgen.generate_long(model, diffusion, micro_cfg(fast_lr=1e-2), first, actions, fast_learning=True, seed=5)
    lora = learned["memory"].lora
    held = sfvgen.generate_long(model, diffusion, cfg, None, actions, fast_learning=False, seed=3,
                                memory=sfvgen.Memory.start(first, 3, "cpu", lora=lora))
    assert not np.array_equal(held["frames"], again) and held["fast_losses"] == []
    assert all(torch.equal(sfvgen.lora_state(model)[k], v) for k, v in lora.items())  # frozen: as it was loaded


def test_eval_rows_are_paired_against_no_memory_and_saved(tmp_path, ckpt):
    rows = lab_eval.main(["--ckpt", ckpt, "--worlds", "3", "--out-chunks", "2", "--arms", "TEMP-LoRA",
                          "--out", str(tmp_path / "e"), "--device", "cpu", "--threads", "1"])
    saved = json.load(open(tmp_path / "e" / "eval_out-and-back.json"))["rows"]
    assert [r["arm"] for r in saved] == [r["arm"] for r in rows] == ["no fast learning", "TEMP-LoRA"]
    assert saved[0]["return_gain"] == 0 and saved[0]["seeds_improved"] == 0
    # the mean of the paired differences is the difference of the means, and its interval holds it
    assert np.isclose(saved[1]["return_gain"], saved[1]["return_psnr"] - saved[0]["return_psnr"])
    lo, hi = saved[1]["return_gain_ci"]
    assert lo <= saved[1]["return_gain"] <= hi


@pytest.mark.heavy
def test_frozen_at_the_turn_arms_share_the_outward_leg_and_differ_only_by_whose_lora(tmp_path, ckpt):
    """The memory control with the anti-drift part held equal: both arms generate the same outward leg with
    fast learning, then the return with a frozen LoRA, this world's or the next world's."""
    arms = "frozen at the turn,control: another world's LoRA frozen at the turn"
    flags = ["--ckpt", ckpt, "--out-chunks", "2", "--ablate", "--fast-lr", "1e-2", "--lora-targets", "all",
             "--device", "cpu", "--threads", "1"]
    rows = lab_eval.main(flags + ["--worlds", "3", "--arms", "TEMP-LoRA," + arms, "--out", str(tmp_path / "e")])
    fast, own, other = rows[1:]
    assert fast["outward_psnr"] == own["outward_psnr"] == other["outward_psnr"]  # one outward leg for all three
    assert own["return_psnr_per_world"] != other["return_psnr_per_world"]  # the returns differ by the LoRA
    assert own["return_psnr_per_world"] != fast["return_psnr_per_world"]  # frozen: no learning on the return
    # SRC, paired by world against no memory and against another world's LoRA, and the lab's goal count
    d = np.subtract(own["src_psnr_per_world"], other["src_psnr_per_world"])
    assert np.isclose(own["src_gain_vs_another"], d.mean()) and own["src_gain_vs_another_per_world"] == d.round(3).tolist()
    assert np.isclose(own["src_gain_vs_none"], own["src_psnr"] - rows[0]["src_psnr"]) and 0 <= own["goal_worlds"] <= 3
    # with one world, "another world" is the same world: the two arms must then be the same video
    one = lab_eval.main(flags + ["--worlds", "1", "--arms", arms, "--out", str(tmp_path / "f")])
    assert one[1]["return_psnr_per_world"] == one[2]["return_psnr_per_world"]
    # the memory curve reads the run back: one point, its price the TEMP-LoRA row's time over no memory's
    (pt,) = memory_curve.main([str(tmp_path / "e"), "--out", str(tmp_path / "c")])
    assert pt["src_other"][0] == own["src_gain_vs_another"] and pt["goal"] == own["goal_worlds"]
    assert pt["time"] == fast["seconds_per_frame"] / rows[0]["seconds_per_frame"]
    assert "| e |" in open(tmp_path / "c" / "memory_curve.md").read()
    with pytest.raises(SystemExit, match="not a finished lab.eval run"):  # a run without the frozen arms
        memory_curve.main([str(tmp_path / "f"), "--out", str(tmp_path / "c")])


def test_the_ablation_rows_name_their_rule_and_unknown_rows_are_refused(ckpt, tmp_path):
    args = SimpleNamespace(ablate=True, trajectory="out-and-back", fast_rule="local", arms=None)
    arms = lab_eval.eval_arms(args, micro_cfg())
    rules_of = {name: rule for name, _, rule, _, _ in arms}
    assert rules_of["rule=global"] == "global" and rules_of["rule=original"] == "original" and rules_of["TEMP-LoRA"] == "local"
    assert "frozen at the turn" in rules_of  # out-and-back revisits: the turn controls are rows
    with pytest.raises(SystemExit, match="unknown rows"):
        lab_eval.main(["--ckpt", ckpt, "--worlds", "1", "--arms", "no such row", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="fast-reverse"):
        lab_eval.main(["--ckpt", ckpt, "--worlds", "1", "--fast-rule", "original", "--fast-reverse", "--out", str(tmp_path / "x")])
