"""lab/rules.py: the fast rules the paper ablates (original, global) and our reversed windows, plugged into
Algorithm 1a and 1b through their `window=` seam."""
import numpy as np
import pytest
import torch
from conftest import loop_episodes, micro_cfg

import sfvgen
from lab import rules


def history(n=4):
    return [torch.full((1, 1 if i == 0 else 2, 3, 4, 4), float(i)) for i in range(n)]


def test_fast_rules_pick_their_windows():
    hist = history()
    go = sfvgen.action_tokens(["go left"], "cpu")
    ctx, x0, tok = rules.make_window("local")(hist, go)  # local: [X_{i-1}; X_i], all frames targets, no action
    assert ctx.shape[1] == 0 and x0.shape[1] == 4 and x0[0, :, 0, 0, 0].tolist() == [2, 2, 3, 3]
    assert torch.equal(tok, sfvgen.null_tokens(1, "cpu"))
    ctx, x0, tok = rules.original_window(hist, go)  # original: X_i given X_{i-1}, with the action
    assert ctx.shape[1] == 2 and x0.shape[1] == 2 and float(ctx.mean()) == 2 and float(x0.mean()) == 3
    assert torch.equal(tok, go)
    assert torch.equal(rules.original_window(hist, None)[2], sfvgen.null_tokens(1, "cpu"))  # the loop passes no action
    glob = rules.global_window(np.random.default_rng(0))
    picked = {float(glob(hist, go)[1][0, -1].mean()) for _ in range(50)}
    assert picked == {1.0, 2.0, 3.0}  # windows from the whole history


def test_the_global_rule_draws_one_window_index_per_update_from_its_rng():
    # the draws are those of rng.integers(1, i + 1) in order: a run is reproduced by an rng of the same seed
    hist, rng = history(6), np.random.default_rng(7)
    glob = rules.global_window(np.random.default_rng(7))
    for _ in range(20):
        j = int(rng.integers(1, len(hist)))
        assert float(glob(hist, None)[1][0, -1].mean()) == j


def test_reverse_learns_the_window_and_the_same_window_played_backwards():
    hist = history(3)
    hist[2][:, 1] = 7.0
    ctx, x0, tok = rules.make_window("local", reverse=True)(hist, sfvgen.action_tokens(["go up"], "cpu"))
    assert ctx.shape[:2] == (2, 0) and torch.equal(tok, sfvgen.null_tokens(2, "cpu"))
    assert x0[:, :, 0, 0, 0].tolist() == [[1, 1, 2, 7], [7, 2, 1, 1]]  # as played, then backwards
    with pytest.raises(ValueError, match="fast-reverse"):
        rules.make_window("original", reverse=True)
    with pytest.raises(ValueError, match="unknown fast rule"):
        rules.make_window("everything")


def model_and_diffusion():
    cfg = micro_cfg(fast_steps=3, fast_lr=1e-2)
    torch.manual_seed(0)
    model = sfvgen.VideoUNet(cfg).eval()
    sfvgen.add_lora(model, "all", rank=4, alpha=4)
    return model, cfg, sfvgen.Diffusion(cfg, "cpu")


@pytest.mark.parametrize("rule", ["local", "original"])
def test_the_fast_update_reads_the_action_only_where_its_rule_is_conditioned_on_it(rule):
    model, cfg, diffusion = model_and_diffusion()
    hist = [torch.randn(1, 1, 3, cfg.size, cfg.size), torch.randn(1, cfg.chunk, 3, cfg.size, cfg.size)]
    states = []
    for action in ("go up", "go left"):
        sfvgen.reset_lora(model)
        opt = torch.optim.Adam(sfvgen.lora_parameters(model), lr=cfg.fast_lr)
        sfvgen.fast_learn_chunk(model, diffusion, opt, hist, sfvgen.action_tokens([action], "cpu"), cfg,
                                torch.Generator().manual_seed(0), rules.make_window(rule))
        states.append(sfvgen.lora_state(model))
    same = all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert same == (rule == "local")  # local: the null action whatever was done; original: the chunk's action


def test_a_rule_changes_the_video_only_after_the_first_update():
    model, cfg, diffusion = model_and_diffusion()
    first = np.zeros((cfg.size, cfg.size, 3), np.uint8) + 90
    actions = ["go right", "go right", "go left"]
    local = sfvgen.generate_long(model, diffusion, cfg, first, actions, fast_learning=True, seed=2)
    for window in (rules.make_window("original"), rules.make_window("local", reverse=True),
                   rules.make_window("global", rng=np.random.default_rng(2))):
        other = sfvgen.generate_long(model, diffusion, cfg, first, actions, fast_learning=True, seed=2, window=window)
        K = cfg.chunk
        assert np.array_equal(other["frames"][:1 + K], local["frames"][:1 + K])  # chunk 0 precedes any update
        assert other["fast_losses"] != local["fast_losses"]


def test_reversed_snapshots_of_the_loop_equal_the_lora_after_i_reversed_updates():
    """Algorithm 1b with the reversed window (python -m lab.train --loop --fast-reverse): snapshot i is the LoRA
    after i updates on [X_i ; X_{i+1}] and the same window played backwards, one batch of 2."""
    cfg = micro_cfg(fast_steps=2, loop_episodes=1, loop_out_chunks=2, fast_lr=1e-2)
    torch.manual_seed(0)
    model = sfvgen.VideoUNet(cfg)
    sfvgen.add_lora(model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, seed=0)
    diffusion = sfvgen.Diffusion(cfg, "cpu")
    episodes = loop_episodes(cfg)
    _, Ds = sfvgen.slow_fast_iteration(model, diffusion, cfg, episodes, torch.Generator().manual_seed(0),
                                       window=rules.reversed_window())
    frames, actions = episodes[0]
    x = sfvgen.to_model(frames[None])
    X = [x[:, :1]] + list(x[:, 1:].split(cfg.chunk, dim=1))
    sfvgen.reset_lora(model)
    opt = torch.optim.Adam(sfvgen.lora_parameters(model), lr=cfg.fast_lr)
    gen = torch.Generator().manual_seed(0)
    for i in range(len(actions)):
        snap = Ds[i][3]
        assert all(torch.equal(sfvgen.lora_state(model)[k], snap[k]) for k in snap), f"snapshot {i}"
        window = torch.cat([X[i], X[i + 1]], 1)
        window = torch.cat([window, window.flip(1)])
        sfvgen.fast_update(model, diffusion, opt, window[:, :0], window, sfvgen.null_tokens(2, "cpu"), cfg.fast_steps, gen)


def test_fast_noise_draws_only_high_noise_levels_and_leaves_sampling_alone():
    """--fast-t-min: the fast loss's noise levels lie in [t_min T, T], drawn with the same random numbers as the
    plain rule (rows stay paired), and a video without fast learning is the same video."""
    cfg = micro_cfg()
    plain, high = sfvgen.Diffusion(cfg), rules.FastNoise(cfg, t_min=0.5)
    x0 = torch.zeros(64, 2, 3, 4, 4)
    t0, eps0, _ = plain.draw(x0, generator=torch.Generator().manual_seed(0))
    t1, eps1, _ = high.draw(x0, generator=torch.Generator().manual_seed(0))
    assert t1.min() >= cfg.timesteps // 2 and t1.max() <= cfg.timesteps and torch.equal(eps0, eps1)
    assert (t1 >= t0).all() and all((t0[i] <= t0[j]) <= (t1[i] <= t1[j]) for i in range(8) for j in range(8))  # in order
    torch.manual_seed(0)
    model = sfvgen.VideoUNet(cfg)
    first = np.zeros((cfg.size, cfg.size, 3), np.uint8)
    a = sfvgen.generate_long(model, plain, cfg, first, ["go right"] * 2, fast_learning=False, seed=1)["frames"]
    b = sfvgen.generate_long(model, high, cfg, first, ["go right"] * 2, fast_learning=False, seed=1)["frames"]
    assert np.array_equal(a, b)
