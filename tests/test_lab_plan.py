"""lab/plan.py: planning with an inverse-dynamics model (the paper's section 4.3): the executor, the reading of
the return leg, and rows that differ only by the fast weights."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import micro_cfg

import data
import sfvgen
from lab import plan


def test_planning_executor_moves_the_simulator_as_the_moves_say():
    spec = data.WorldSpec(size=16, canvas=64, speed=2, chunk=2)
    actions = ["go right", "go down", "go back", "go back"]
    truth, pos = data.render_episode(7, actions, spec)
    per_frame = [a for a in actions[:2] for _ in range(spec.chunk)] + ["go up"] * 2 + ["go left"] * 2  # the true moves
    exact = plan.plan_scores(per_frame, pos, 1 + 2 * spec.chunk, spec)
    assert exact == dict(final=0.0, waypoints=0.0)
    short = plan.plan_scores(per_frame[:-1] + ["stay"], pos, 1 + 2 * spec.chunk, spec)  # one move missing
    assert short["final"] == spec.speed
    wrong = plan.plan_scores(per_frame[:4] + ["go right"] * 4, pos, 1 + 2 * spec.chunk, spec)  # walks on, never back
    assert np.isclose(wrong["final"], np.hypot(6 * spec.speed, 2 * spec.speed))


def test_return_reading_tells_retracing_from_undoing_the_chunk_before():
    K, actions = 2, ["go right", "go down", "go back", "go back"]
    out = ["go right"] * K + ["go down"] * K
    retrace = plan.return_reading(out + ["go up"] * K + ["go left"] * K, actions, K)
    assert retrace == dict(retraced=[1, 1], undid_previous=[1, 0])  # the turn undoes the last outward chunk
    oscillate = plan.return_reading(out + ["go up"] * K + ["go down"] * K, actions, K)  # back, then forth
    assert oscillate == dict(retraced=[1, 0], undid_previous=[1, 1])
    stand = plan.return_reading(out + ["stay", "go up"] + ["stay"] * K, actions, K)  # a tie goes to the first read
    assert stand == dict(retraced=[0, 0], undid_previous=[0, 0])


def test_planning_rows_differ_only_by_the_fast_weights():
    # every arm plans the same worlds and paths from the same sampler noise: with a fast learning rate of 0
    # the TEMP-LoRA row is the row without it, world by world; with fast learning the videos differ
    cfg = micro_cfg(fast_lr=0.0, fast_steps=1)
    torch.manual_seed(0)
    model, diffusion = sfvgen.VideoUNet(cfg).eval(), sfvgen.Diffusion(cfg, torch.device("cpu"))
    idm = plan.train_inverse_dynamics(cfg, torch.device("cpu"), steps=5, batch=8)
    arms = (plan.NO_FAST, plan.SLOW_ONLY)
    (off, zero), worlds = plan.plan_table(model, diffusion, cfg, 2, 2, idm, arms=arms)
    assert len(set(worlds)) == 2 and off["per_world"] == zero["per_world"]
    (_, on), _ = plan.plan_table(model, diffusion, replace(cfg, fast_lr=0.5), 2, 2, idm, arms=arms)
    assert on["per_world"] != off["per_world"]


@pytest.mark.heavy
def test_inverse_dynamics_reads_ground_truth_moves():
    cfg = micro_cfg(size=16, canvas=64, speed=2)
    idm = plan.train_inverse_dynamics(cfg, torch.device("cpu"), steps=150, batch=32)
    pairs, labels = plan.move_pairs(np.random.default_rng(5), range(*cfg.test_seeds), 200, cfg.world())
    with torch.no_grad():
        acc = (idm(sfvgen.to_model(pairs)).argmax(-1).numpy() == labels).mean()
    assert acc > 0.9
    moves = idm.infer(data.render_episode(cfg.test_seeds[0], ["go left", "go up"], cfg.world())[0])
    assert len(moves) == 2 * cfg.chunk


def test_the_plan_entry_point_writes_its_rows(tmp_path):
    import json

    import train
    train.main(micro_cfg(max_steps=1, out=str(tmp_path / "m")), quiet=True)
    cfg = micro_cfg()
    idm = plan.train_inverse_dynamics(cfg, torch.device("cpu"), steps=2, batch=4)
    sfvgen.save_checkpoint(str(tmp_path / "idm.pt"), dict(size=cfg.size, model=idm.state_dict()))
    out = plan.main(["--ckpt", str(tmp_path / "m" / "ckpt.pt"), "--worlds", "1", "--out-chunks", "2", "--idm", str(tmp_path / "idm.pt"),
                     "--fast-reverse", "--out", str(tmp_path / "p"), "--device", "cpu", "--threads", "1"])
    saved = json.load(open(tmp_path / "p" / "plan.json"))
    assert [r["method"] for r in saved["rows"]] == [r["method"] for r in out["rows"]] == [plan.NO_FAST, plan.SLOW_ONLY]
