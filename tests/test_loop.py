"""The slow-fast learning loop (Algorithm 1b) and planning with an inverse-dynamics model."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import micro_cfg

import data
import generate
import plan
import sfvgen


def setup(fast_steps=2, episodes=2):
    cfg = micro_cfg(fast_steps=fast_steps, loop_episodes=episodes, loop_out_chunks=2, fast_lr=1e-2)
    torch.manual_seed(0)
    model = sfvgen.VideoUNet(cfg)
    sfvgen.add_lora(model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, seed=0)
    diffusion = sfvgen.Diffusion(cfg, torch.device("cpu"))
    episodes = sfvgen.sample_loop_episodes(cfg, np.random.default_rng(0), range(0, 50))
    return cfg, model, diffusion, episodes


def same(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_loop_episodes_take_the_configured_kinds_in_turn():
    spec = micro_cfg().world()
    for kinds, backs in (("go-back", [2, 2, 2]), ("out-and-back,go-back", [0, 2, 0])):
        cfg = micro_cfg(loop_kinds=kinds, loop_episodes=3, loop_out_chunks=2)
        episodes = sfvgen.sample_loop_episodes(cfg, np.random.default_rng(0), range(0, 50))
        assert [actions.count("go back") for _, actions in episodes] == backs
        assert all(frames.shape[0] == 1 + len(actions) * spec.chunk for frames, actions in episodes)


def test_inner_loop_changes_only_the_lora_and_stores_one_triple_per_chunk():
    cfg, model, diffusion, episodes = setup()
    slow_before = {k: v.clone() for k, v in sfvgen.slow_state_dict(model).items()}
    Ds = sfvgen.fast_learn_episodes(model, diffusion, cfg, episodes, torch.Generator().manual_seed(0))
    assert same(sfvgen.slow_state_dict(model), slow_before)  # Phi frozen in the inner loop
    assert len(Ds) == sum(len(actions) for _, actions in episodes)
    assert not same(Ds[1][3], Ds[0][3])  # the fast weights did move between chunks


@pytest.mark.parametrize("reverse", [False, True])
def test_snapshot_i_equals_the_lora_after_i_fast_updates(reverse):
    cfg, model, diffusion, episodes = setup(episodes=1)
    cfg = replace(cfg, fast_reverse=reverse)  # --fast-reverse: the window and the window played backwards
    Ds = sfvgen.fast_learn_episodes(model, diffusion, cfg, episodes, torch.Generator().manual_seed(0))
    # replay the episode by hand with the same generator: reset, then one update per chunk
    frames, actions = episodes[0]
    x = sfvgen.to_model(frames[None])
    X = [x[:, :1]] + list(x[:, 1:].split(cfg.chunk, dim=1))
    sfvgen.reset_lora(model)
    opt = torch.optim.Adam(sfvgen.lora_parameters(model), lr=cfg.fast_lr)
    gen = torch.Generator().manual_seed(0)
    for i in range(len(actions)):
        assert same(sfvgen.lora_state(model), Ds[i][3]), f"snapshot {i} is not the LoRA after {i} updates"
        assert torch.equal(Ds[i][0], X[i]) and torch.equal(Ds[i][1], X[i + 1])
        window = torch.cat([X[i], X[i + 1]], 1)
        window = torch.cat([window, window.flip(1)]) if reverse else window
        sfvgen.fast_update(model, diffusion, opt, window[:, :0], window, sfvgen.null_tokens(len(window), "cpu"), cfg.fast_steps, gen)


def test_outer_step_changes_only_the_slow_weights_and_leaves_snapshots_untouched():
    cfg, model, diffusion, episodes = setup()
    gen = torch.Generator().manual_seed(0)
    Ds = sfvgen.fast_learn_episodes(model, diffusion, cfg, episodes, gen)
    kept = [{k: v.clone() for k, v in theta.items()} for *_, theta in Ds]
    slow_before = {k: v.clone() for k, v in sfvgen.slow_state_dict(model).items()}
    lora_before = sfvgen.lora_state(model)
    slow = [p for n, p in model.named_parameters() if ".lora_" not in n]
    opt = torch.optim.SGD(slow, lr=0.1)
    model.zero_grad(set_to_none=True)  # the fast updates' last LoRA gradients
    sfvgen.slow_learn_triples(model, diffusion, cfg, Ds, gen)
    assert all(p.grad is None for p in sfvgen.lora_parameters(model))  # Theta_i frozen in the outer step
    opt.step()
    assert same(sfvgen.lora_state(model), lora_before)
    assert all(same(theta, k) for (*_, theta), k in zip(Ds, kept))  # every snapshot as it was stored
    after = sfvgen.slow_state_dict(model)
    assert any(not torch.equal(after[k], slow_before[k]) for k in after)  # Phi moved


def test_outer_step_uses_the_snapshot_memory():
    # with a different LoRA plugged in the slow loss (same noise) must differ: the memory is really used
    cfg, model, diffusion, episodes = setup(episodes=1)
    Ds = sfvgen.fast_learn_episodes(model, diffusion, cfg, episodes, torch.Generator().manual_seed(0))
    last = Ds[-1]
    losses = []
    for theta in (last[3], Ds[0][3]):
        model.zero_grad()
        losses.append(sfvgen.slow_learn_triples(model, diffusion, cfg, [(*last[:3], theta)], torch.Generator().manual_seed(1)))
    assert losses[0] != losses[1]


def test_the_loop_runs_one_outer_iteration_end_to_end(tmp_path):
    import train
    init = tmp_path / "init"
    train.main(micro_cfg(max_steps=1, out=str(init)), quiet=True)
    cfg = micro_cfg(loop=True, init=str(init / "ckpt.pt"), max_steps=1, loop_episodes=1, loop_out_chunks=2, lr=1e-3,
                    out=str(tmp_path / "loop"))
    out = train.main(cfg, quiet=True)
    assert out["step"] == 1 and np.isfinite(out["losses"][0])
    model, _, _ = sfvgen.load_model(str(tmp_path / "loop" / "ckpt.pt"))  # a plain video model, no LoRA keys
    start, _, _ = sfvgen.load_model(str(init / "ckpt.pt"))
    diff = [not torch.equal(a, b) for a, b in zip(model.state_dict().values(), start.state_dict().values())]
    assert any(diff) and not any(isinstance(m, sfvgen.LoRA) for m in model.modules())


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
    (off, zero), worlds = plan.run(model, diffusion, cfg, 2, 2, idm, arms=arms)
    assert len(set(worlds)) == 2 and off["per_world"] == zero["per_world"]
    (_, on), _ = plan.run(model, diffusion, replace(cfg, fast_lr=0.5), 2, 2, idm, arms=arms)
    assert on["per_world"] != off["per_world"]


def test_inverse_dynamics_reads_ground_truth_moves():
    cfg = micro_cfg(size=16, canvas=64, speed=2)
    idm = plan.train_inverse_dynamics(cfg, torch.device("cpu"), steps=150, batch=32)
    pairs, labels = plan.move_pairs(np.random.default_rng(5), range(*cfg.test_seeds), 200, cfg.world())
    with torch.no_grad():
        acc = (idm(sfvgen.to_model(pairs)).argmax(-1).numpy() == labels).mean()
    assert acc > 0.9
    moves = idm.infer(data.render_episode(cfg.test_seeds[0], ["go left", "go up"], cfg.world())[0])
    assert len(moves) == 2 * cfg.chunk


def test_eval_rows_are_paired_against_no_memory_and_saved(tmp_path):
    import json

    import train
    train.main(micro_cfg(max_steps=1, out=str(tmp_path / "m")), quiet=True)
    rows = generate.main(["--ckpt", str(tmp_path / "m" / "ckpt.pt"), "--eval", "3", "--out-chunks", "2", "--arms", "TEMP-LoRA",
                          "--out", str(tmp_path / "e"), "--device", "cpu", "--threads", "1"])
    saved = json.load(open(tmp_path / "e" / "eval_out-and-back.json"))["rows"]
    assert [r["arm"] for r in saved] == [r["arm"] for r in rows] == ["no fast learning", "TEMP-LoRA"]
    assert saved[0]["return_gain"] == 0 and saved[0]["seeds_improved"] == 0
    # the mean of the paired differences is the difference of the means, and its interval holds it
    assert np.isclose(saved[1]["return_gain"], saved[1]["return_psnr"] - saved[0]["return_psnr"])
    lo, hi = saved[1]["return_gain_ci"]
    assert lo <= saved[1]["return_gain"] <= hi


def test_frozen_at_the_turn_arms_share_the_outward_leg_and_differ_only_by_whose_lora(tmp_path):
    """The memory control with the anti-drift part held equal: both arms generate the same outward leg with
    fast learning, then the return with a frozen LoRA, this world's or the next world's."""
    import train
    train.main(micro_cfg(max_steps=1, out=str(tmp_path / "m")), quiet=True)
    arms = "frozen at the turn,control: another world's LoRA frozen at the turn"
    flags = ["--ckpt", str(tmp_path / "m" / "ckpt.pt"), "--out-chunks", "2", "--ablate", "--fast-lr", "1e-2",
             "--lora-targets", "all", "--device", "cpu", "--threads", "1"]
    rows = generate.main(flags + ["--eval", "3", "--arms", "TEMP-LoRA," + arms, "--out", str(tmp_path / "e")])
    fast, own, other = rows[1:]
    assert fast["outward_psnr"] == own["outward_psnr"] == other["outward_psnr"]  # one outward leg for all three
    assert own["return_psnr_per_world"] != other["return_psnr_per_world"]  # the returns differ by the LoRA
    assert own["return_psnr_per_world"] != fast["return_psnr_per_world"]  # frozen: no learning on the return
    # with one world, "another world" is the same world: the two arms must then be the same video
    one = generate.main(flags + ["--eval", "1", "--arms", arms, "--out", str(tmp_path / "f")])
    assert one[1]["return_psnr_per_world"] == one[2]["return_psnr_per_world"]
