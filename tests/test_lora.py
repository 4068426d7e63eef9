"""Fast learning: the hand-written LoRA and TEMP-LoRA generation (Algorithm 1a)."""
import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import micro_cfg

import cli
import data
import probe
import sfvgen


def model_and_inputs(seed=0):
    cfg = micro_cfg()
    torch.manual_seed(seed)
    model = sfvgen.VideoUNet(cfg).eval()
    x = torch.randn(1, 4, 3, cfg.size, cfg.size)
    t = torch.tensor([[0, 0, 40, 40]])
    return model, cfg, (x, t, sfvgen.action_tokens(["go up"], "cpu"), 2)


@pytest.mark.parametrize("targets", sfvgen.LORA_TARGETS)
def test_lora_at_init_equals_the_base_model_exactly(targets):
    model, cfg, inputs = model_and_inputs()
    with torch.no_grad():
        base = model(*inputs)
        layers = sfvgen.add_lora(model, targets, rank=4, alpha=4)
        assert layers and all(torch.count_nonzero(m.lora_A) > 0 and torch.count_nonzero(m.lora_B) == 0 for m in layers)
        assert torch.equal(model(*inputs), base)


def test_adding_a_lora_draws_from_its_own_seed_and_leaves_the_global_rng_alone():
    model, _, _ = model_and_inputs()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = [m.lora_A.clone() for m in sfvgen.add_lora(model, "all", seed=7)]
    assert torch.equal(torch.get_rng_state(), before)  # a resumed run's noise stream goes on undisturbed
    again, _, _ = model_and_inputs()
    assert all(torch.equal(x, m.lora_A) for x, m in zip(a, sfvgen.add_lora(again, "all", seed=7)))


def test_target_sets_cover_what_they_say():
    counts = {}
    for targets in sfvgen.LORA_TARGETS:
        model, _, _ = model_and_inputs()
        layers = sfvgen.add_lora(model, targets)
        counts[targets] = len(layers)
        if targets == "temporal":  # temporal attention projections and temporal convs only
            names = [n for n, m in model.named_modules() if isinstance(m, sfvgen.LoRA)]
            assert all(".temporal." in n or n.endswith("temporal_conv") for n in names)
            assert any(n.endswith("temporal_conv") for n in names)
    assert counts["temporal"] < counts["attn"] < counts["all"]


def randomise_lora(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sfvgen.lora_parameters(model):
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_merged_equals_unmerged_and_unmerge_restores_the_base():
    model, cfg, inputs = model_and_inputs()
    base_weights = copy.deepcopy(sfvgen.slow_state_dict(model))
    sfvgen.add_lora(model, "all", rank=4, alpha=8)
    randomise_lora(model)
    with torch.no_grad():
        unmerged = model(*inputs)
        for m in sfvgen.lora_modules(model):
            m.merge()
        merged = model(*inputs)
        model.train()  # train()/eval() never merge or unmerge
        model.eval()
        assert all(m.merged for m in sfvgen.lora_modules(model))
        for m in sfvgen.lora_modules(model):
            m.unmerge()
    assert torch.allclose(merged, unmerged, atol=1e-5)
    assert not torch.allclose(unmerged, model_and_inputs()[0](*inputs), atol=1e-4)  # the LoRA does change things
    for k, v in sfvgen.slow_state_dict(model).items():
        assert torch.allclose(v, base_weights[k], atol=1e-6)


def test_fast_learning_changes_only_lora_parameters_and_reset_restores_the_fresh_adapter():
    model, cfg, inputs = model_and_inputs()
    with torch.no_grad():
        base_out = model(*inputs)
    sfvgen.add_lora(model, "temporal", rank=4, alpha=4)
    slow_before = copy.deepcopy(sfvgen.slow_state_dict(model))
    lora_before = sfvgen.lora_state(model)
    diff = sfvgen.Diffusion(cfg)
    opt = torch.optim.Adam(sfvgen.lora_parameters(model), lr=1e-2)
    x0 = torch.rand(1, 4, 3, cfg.size, cfg.size) * 2 - 1
    sfvgen.fast_update(model, diff, opt, x0[:, :0], x0, sfvgen.null_tokens(1, "cpu"), steps=3)
    for k, v in sfvgen.slow_state_dict(model).items():
        assert torch.equal(v, slow_before[k]), k
    assert any(not torch.equal(v, lora_before[k]) for k, v in sfvgen.lora_state(model).items())
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(model(*inputs), base_out)
        sfvgen.reset_lora(model)
        assert torch.equal(model(*inputs), base_out)
    assert all(torch.equal(v, lora_before[k]) for k, v in sfvgen.lora_state(model).items())


def test_fast_rules_pick_their_windows():
    cfg = micro_cfg()
    hist = [torch.full((1, 1 if i == 0 else 2, 3, 4, 4), float(i)) for i in range(4)]
    rng = np.random.default_rng(0)
    ctx, x0, act = sfvgen.fast_window(hist, cfg, rng)  # local: [X_{i-1}; X_i], all frames targets, no action
    assert ctx.shape[1] == 0 and x0.shape[1] == 4 and not act and x0[0, :, 0, 0, 0].tolist() == [2, 2, 3, 3]
    ctx, x0, act = sfvgen.fast_window(hist, replace(cfg, fast_rule="original"), rng)
    assert ctx.shape[1] == 2 and x0.shape[1] == 2 and act and float(ctx.mean()) == 2 and float(x0.mean()) == 3
    glob = replace(cfg, fast_rule="global")
    picked = {float(sfvgen.fast_window(hist, glob, rng)[1][0, -1].mean()) for _ in range(50)}
    assert picked == {1.0, 2.0, 3.0}  # windows from the whole history


def test_reverse_learns_the_window_and_the_same_window_played_backwards():
    cfg = replace(micro_cfg(), fast_reverse=True)
    hist = [torch.full((1, 1 if i == 0 else 2, 3, 4, 4), float(i)) for i in range(3)]
    hist[2][:, 1] = 7.0
    ctx, x0, act = sfvgen.fast_window(hist, cfg, np.random.default_rng(0))
    assert ctx.shape[:2] == (2, 0) and not act
    assert x0[:, :, 0, 0, 0].tolist() == [[1, 1, 2, 7], [7, 2, 1, 1]]  # as played, then backwards
    with pytest.raises(ValueError, match="fast-reverse"):
        cli.validate(replace(cfg, fast_rule="original"))


def test_saved_memory_continues_exactly_like_an_uninterrupted_generation():
    model, cfg, _ = model_and_inputs()
    sfvgen.add_lora(model, "temporal", rank=4, alpha=4)
    diff = sfvgen.Diffusion(cfg)
    first = data.render_episode(0, [], cfg.world())[0][0]
    actions = ["go right", "go right", "go left", "go left"]
    whole = sfvgen.generate_long(model, diff, cfg, first, actions, fast=True, seed=5)
    part1 = sfvgen.generate_long(model, diff, cfg, first, actions[:2], fast=True, seed=5)
    part2 = sfvgen.generate_long(model, diff, cfg, first, actions[2:], fast=True, seed=5, memory=part1["memory"])
    assert np.array_equal(np.concatenate([part1["frames"], part2["frames"]]), whole["frames"])
    assert whole["fast_losses"] == part1["fast_losses"] + part2["fast_losses"]
    off = sfvgen.generate_long(model, diff, cfg, first, actions, fast=False, seed=5)
    assert np.array_equal(off["frames"][:1 + cfg.chunk], whole["frames"][:1 + cfg.chunk])  # chunk 0 precedes any memory
    assert not np.array_equal(off["frames"], whole["frames"])  # later chunks are generated with the memory


def test_a_lora_frozen_at_the_turn_continues_as_if_learning_had_stopped_there():
    """The frozen-at-the-turn arms: continuing a video from its memory with the LoRA frozen must be the same
    video as continuing it with fast learning on and zero update steps (same fast weights, same noise)."""
    model, cfg, _ = model_and_inputs()
    sfvgen.add_lora(model, "temporal", rank=4, alpha=4)
    diff = sfvgen.Diffusion(cfg)
    first = data.render_episode(0, [], cfg.world())[0][0]
    out = sfvgen.generate_long(model, diff, replace(cfg, fast_lr=1e-2), first,
                               ["go right", "go right"], fast=True, seed=4)
    back = ["go left", "go left"]
    frozen = sfvgen.generate_long(model, diff, cfg, None, back, fast=False, seed=4, memory=out["memory"],
                                  frozen_lora=out["memory"]["lora"])
    idle = replace(cfg, fast_steps=0)
    still = sfvgen.generate_long(model, diff, idle, None, back, fast=True, seed=4, memory=out["memory"])
    fresh = sfvgen.generate_long(model, diff, cfg, None, back, fast=False, seed=4, memory=out["memory"])
    assert np.array_equal(frozen["frames"], still["frames"])
    assert not np.array_equal(frozen["frames"], fresh["frames"])  # the frozen LoRA is really plugged in


def test_fast_learning_leaves_the_sampler_noise_alone_so_rows_compare_paired():
    """Fast learning draws its t and eps from its own generator: with a learning rate of 0 the fast weights stay
    zero, and the video must then be the no-memory video bit for bit (the memory is the only difference)."""
    model, cfg, _ = model_and_inputs()
    sfvgen.add_lora(model, "temporal", rank=4, alpha=4)
    diff = sfvgen.Diffusion(cfg)
    first = data.render_episode(0, [], cfg.world())[0][0]
    actions = ["go right", "go right", "go left"]
    still = replace(cfg, fast_lr=0.0)
    on = sfvgen.generate_long(model, diff, still, first, actions, fast=True, seed=3)
    off = sfvgen.generate_long(model, diff, still, first, actions, fast=False, seed=3)
    assert len(on["fast_losses"]) == len(actions) and np.array_equal(on["frames"], off["frames"])


def test_the_video_does_not_depend_on_what_the_caller_left_trainable():
    """A fresh model has every weight requiring grad, a model after fast learning only Theta; PyTorch may pick
    other kernels for the two even under no_grad. Generation freezes Phi itself, so the same seed gives the
    same video bit for bit either way (the first episode of a run is not sampled differently from the rest)."""
    model, cfg, _ = model_and_inputs()
    with torch.no_grad():  # a non-trivial network: zero-initialised output layers would hide small differences
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    sfvgen.add_lora(model, "temporal", rank=4, alpha=4)
    diff = sfvgen.Diffusion(cfg)
    first = data.render_episode(0, [], cfg.world())[0][0]
    videos = []
    for trainable in (True, False, True):
        model.requires_grad_(trainable)
        out = sfvgen.generate_long(model, diff, cfg, first, ["go right", "go up", "go left"], fast=True, seed=3)
        videos.append((out["frames"], out["memory"]["history"][-1]))
    for frames, last in videos[1:]:
        assert np.array_equal(frames, videos[0][0]) and torch.equal(last, videos[0][1])  # to the last bit


def test_a_diverging_fast_update_is_rolled_back_and_generation_goes_on(monkeypatch, capsys):
    model, cfg, _ = model_and_inputs()
    sfvgen.add_lora(model, "temporal", rank=4, alpha=4)
    diff = sfvgen.Diffusion(cfg)
    real, calls = sfvgen.Diffusion.loss, {"n": 0}

    def flaky(self, *a, **k):  # the fast loss of the second chunk's update turns NaN
        calls["n"] += 1
        loss = real(self, *a, **k)
        return loss * float("nan") if calls["n"] == cfg.fast_steps + 1 else loss

    monkeypatch.setattr(sfvgen.Diffusion, "loss", flaky)
    first = data.render_episode(0, [], cfg.world())[0][0]
    res = sfvgen.generate_long(model, diff, cfg, first, ["go right"] * 3, fast=True, seed=1)
    assert np.isnan(res["fast_losses"][1]) and np.isfinite(res["fast_losses"][0]) and np.isfinite(res["fast_losses"][2])
    assert res["frames"].shape[0] == 1 + 3 * cfg.chunk
    assert all(torch.isfinite(v).all() for v in sfvgen.lora_state(model).values())
    assert "rolled back" in capsys.readouterr().out


def test_memory_span_tests_each_chunk_right_after_its_update_and_at_the_end(tmp_path):
    import json

    import generate
    import train
    train.main(micro_cfg(max_steps=1, out=str(tmp_path / "m")), quiet=True)
    rows = generate.main(["--ckpt", str(tmp_path / "m" / "ckpt.pt"), "--memory-span", "2", "--out-chunks", "3",
                          "--lora-targets", "all", "--fast-steps", "20", "--fast-lr", "1e-2", "--out", str(tmp_path / "s"),
                          "--device", "cpu", "--threads", "1"])
    assert [r["lag"] for r in rows] == [0, 1, 2]
    # the chunk learned last is tested twice in the same state with the same draws: the pairing is exact
    assert rows[0]["fast_learned"] == rows[0]["fast_end"] and rows[0]["cond_learned"] == rows[0]["cond_end"]
    assert all(r["fast_learned"] < 0 for r in rows)  # the fast weights lower the loss of the window they just learned
    for r in rows:  # memory: this world's change minus another world's, paired by world
        assert np.isclose(r["memory"], r["cond_end"] - r["cond_other"])
    back = json.load(open(tmp_path / "s" / "memory_span.json"))["return_leg"]  # the return leg, never learned itself
    assert np.isclose(back["memory"], back["cond_this"] - back["cond_other"])
    assert np.isclose(np.mean(back["per_chunk_this"]), back["cond_this"]) and len(back["per_chunk_this"]) == 3


def test_memory_probe_on_loop_twice_learns_the_first_lap_and_generates_the_second(tmp_path):
    import generate
    import train
    train.main(micro_cfg(max_steps=1, out=str(tmp_path / "m")), quiet=True)
    ckpt = str(tmp_path / "m" / "ckpt.pt")
    flags = ["--ckpt", ckpt, "--memory-probe", "2", "--out-chunks", "2", "--lora-targets", "all", "--fast-steps", "4",
             "--fast-lr", "1e-2", "--out", str(tmp_path / "p"), "--device", "cpu", "--threads", "1"]
    rows = generate.main(flags + ["--trajectory", "loop-twice"])
    fresh, this, other = rows.values()
    assert fresh["gain"] == 0 and fresh["better"] == 0  # the fresh LoRA is the reference of every pair
    # the learned LoRAs are plugged in: the second lap differs from the fresh LoRA's, and differs by world
    assert this["return_psnr"] != fresh["return_psnr"] and this["return_psnr"] != other["return_psnr"]
    with pytest.raises(SystemExit, match="loop-twice"):  # a kind whose second half revisits nothing is refused
        generate.main(flags + ["--trajectory", "random"])


@pytest.mark.parametrize("rule", ["local", "original"])
def test_the_fast_update_reads_the_action_only_where_its_rule_is_conditioned_on_it(rule):
    model, cfg, _ = model_and_inputs()
    cfg = replace(cfg, fast_rule=rule, fast_steps=3, fast_lr=1e-2)
    sfvgen.add_lora(model, "all", rank=4, alpha=4)
    diffusion = sfvgen.Diffusion(cfg, "cpu")
    history = [torch.randn(1, 1, 3, cfg.size, cfg.size), torch.randn(1, cfg.chunk, 3, cfg.size, cfg.size)]
    states = []
    for action in ("go up", "go left"):
        sfvgen.reset_lora(model)
        opt = torch.optim.Adam(sfvgen.lora_parameters(model), lr=cfg.fast_lr)
        sfvgen.fast_learn_chunk(model, diffusion, opt, history, sfvgen.action_tokens([action], "cpu"), cfg,
                                np.random.default_rng(0), torch.Generator().manual_seed(0))
        states.append(sfvgen.lora_state(model))
    same = all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert same == (rule == "local")  # local: the null action whatever was done; original: the chunk's action


def test_shifted_retrace_windows_are_exactly_the_return_legs_chunks_and_aligned_ones_are_one_move_off():
    import generate
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
    with pytest.raises(SystemExit, match="--memory-probe and --memory-span"):  # a check with nothing to check is refused
        generate.main(["--ckpt", "unused.pt", "--retrace", "shifted"])


def test_teacher_forced_probe_generates_each_return_chunk_from_the_true_chunk_before_it(tmp_path):
    import generate
    import train
    train.main(micro_cfg(max_steps=1, out=str(tmp_path / "m")), quiet=True)
    flags = ["--ckpt", str(tmp_path / "m" / "ckpt.pt"), "--memory-probe", "2", "--out-chunks", "2", "--lora-targets", "all",
             "--fast-steps", "4", "--fast-lr", "1e-2", "--out", str(tmp_path / "p"), "--device", "cpu", "--threads", "1"]
    free = generate.main(flags)["LoRA of this world's outward leg"]
    forced = generate.main(flags + ["--teacher-forced"])["LoRA of this world's outward leg"]
    # the first return chunk has the true turning chunk as context either way; the next one only when forced
    assert forced["per_chunk_gain"][0] == free["per_chunk_gain"][0]
    assert forced["per_chunk_gain"][1] != free["per_chunk_gain"][1]
    assert np.isclose(forced["gain"], np.mean(forced["per_chunk_gain"]))  # forced: the leg's PSNR is the chunks' mean


def test_the_retrace_update_trains_only_the_lora():
    model, cfg, _ = model_and_inputs()
    sfvgen.add_lora(model, "all", rank=4, alpha=4)
    actions = data.make_actions("out-and-back", np.random.default_rng(1), n=3)[:3]
    X, _ = probe.ground_truth_chunks(3, actions, cfg, "cpu")
    base = {k: v.clone() for k, v in model.state_dict().items() if ".lora_" not in k}
    fresh = sfvgen.lora_state(model)
    opt = torch.optim.Adam(sfvgen.lora_parameters(model), lr=1e-2)
    probe.retrace_update(model, sfvgen.Diffusion(cfg, "cpu"), opt, X, actions, True, 3, np.random.default_rng(0), None)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in base.items())  # the slow weights stay frozen
    assert any(not torch.equal(v, sfvgen.lora_state(model)[k]) for k, v in fresh.items())  # the fast weights moved
