"""Fast learning: the hand-written LoRA and TEMP-LoRA generation (Algorithm 1a)."""
import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import micro_cfg

import data
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


def test_the_local_rule_learns_the_last_two_chunks_with_no_context_and_the_null_action():
    hist = [torch.full((1, 1 if i == 0 else 2, 3, 4, 4), float(i)) for i in range(4)]
    ctx, x0, tokens = sfvgen.local_window(hist, sfvgen.action_tokens(["go left"], "cpu"))
    assert ctx.shape[1] == 0 and x0[0, :, 0, 0, 0].tolist() == [2, 2, 3, 3]  # [X_{i-1}; X_i], all frames targets
    assert torch.equal(tokens, sfvgen.null_tokens(1, "cpu"))  # the action is not read


def test_saved_memory_continues_exactly_like_an_uninterrupted_generation():
    model, cfg, _ = model_and_inputs()
    sfvgen.add_lora(model, "temporal", rank=4, alpha=4)
    diff = sfvgen.Diffusion(cfg)
    first = data.render_episode(0, [], cfg.world())[0][0]
    actions = ["go right", "go right", "go left", "go left"]
    whole = sfvgen.generate_long(model, diff, cfg, first, actions, fast_learning=True, seed=5)
    part1 = sfvgen.generate_long(model, diff, cfg, first, actions[:2], fast_learning=True, seed=5)
    part2 = sfvgen.generate_long(model, diff, cfg, first, actions[2:], fast_learning=True, seed=5, memory=part1["memory"])
    assert np.array_equal(np.concatenate([part1["frames"], part2["frames"]]), whole["frames"])
    assert whole["fast_losses"] == part1["fast_losses"] + part2["fast_losses"]
    off = sfvgen.generate_long(model, diff, cfg, first, actions, fast_learning=False, seed=5)
    assert np.array_equal(off["frames"][:1 + cfg.chunk], whole["frames"][:1 + cfg.chunk])  # chunk 0 precedes any memory
    assert not np.array_equal(off["frames"], whole["frames"])  # later chunks are generated with the memory


def test_a_memory_is_a_value_continued_twice_it_gives_the_same_video_twice(tmp_path):
    """generate_long copies its memory on the way in and out: Adam's moments are not shared with a live optimizer,
    so two continuations from one Memory (or from its file) learn the same fast weights and sample the same video."""
    model, cfg, _ = model_and_inputs()
    sfvgen.add_lora(model, "temporal", rank=4, alpha=4)
    diff = sfvgen.Diffusion(cfg)
    first = data.render_episode(0, [], cfg.world())[0][0]
    mem = sfvgen.generate_long(model, diff, cfg, first, ["go right", "go right"], fast_learning=True, seed=2)["memory"]
    before = mem.copy()
    runs = [sfvgen.generate_long(model, diff, cfg, None, ["go left", "go left"], fast_learning=True, seed=2, memory=mem)
            for _ in range(2)]
    mem.save(str(tmp_path / "memory.pt"))
    runs.append(sfvgen.generate_long(model, diff, cfg, None, ["go left", "go left"], fast_learning=True, seed=2,
                                     memory=sfvgen.Memory.load(str(tmp_path / "memory.pt"))))
    for r in runs[1:]:
        assert np.array_equal(r["frames"], runs[0]["frames"]) and r["fast_losses"] == runs[0]["fast_losses"]
        assert all(torch.equal(v, runs[0]["memory"].lora[k]) for k, v in r["memory"].lora.items())
    assert mem.opt["state"] and all(torch.equal(t, before.opt["state"][k][n])  # Adam's moments, untouched
                                    for k, st in mem.opt["state"].items() for n, t in st.items())
    assert runs[0]["memory"].chunk == 4 and runs[0]["memory"].actions == ["go right"] * 2 + ["go left"] * 2


def test_a_lora_frozen_at_the_turn_continues_as_if_learning_had_stopped_there():
    """Continuing a video from its memory without fast learning keeps the saved LoRA, frozen: the same video as
    continuing with fast learning on and zero update steps (same fast weights, same noise)."""
    model, cfg, _ = model_and_inputs()
    sfvgen.add_lora(model, "temporal", rank=4, alpha=4)
    diff = sfvgen.Diffusion(cfg)
    first = data.render_episode(0, [], cfg.world())[0][0]
    out = sfvgen.generate_long(model, diff, replace(cfg, fast_lr=1e-2), first,
                               ["go right", "go right"], fast_learning=True, seed=4)
    back = ["go left", "go left"]
    frozen = sfvgen.generate_long(model, diff, cfg, None, back, fast_learning=False, seed=4, memory=out["memory"])
    idle = replace(cfg, fast_steps=0)
    still = sfvgen.generate_long(model, diff, idle, None, back, fast_learning=True, seed=4, memory=out["memory"])
    fresh = sfvgen.generate_long(model, diff, cfg, None, back, fast_learning=False, seed=4, memory=replace(out["memory"], lora={}))
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
    on = sfvgen.generate_long(model, diff, still, first, actions, fast_learning=True, seed=3)
    off = sfvgen.generate_long(model, diff, still, first, actions, fast_learning=False, seed=3)
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
        out = sfvgen.generate_long(model, diff, cfg, first, ["go right", "go up", "go left"], fast_learning=True, seed=3)
        videos.append((out["frames"], out["memory"].history[-1]))
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
    res = sfvgen.generate_long(model, diff, cfg, first, ["go right"] * 3, fast_learning=True, seed=1)
    assert np.isnan(res["fast_losses"][1]) and np.isfinite(res["fast_losses"][0]) and np.isfinite(res["fast_losses"][2])
    assert res["frames"].shape[0] == 1 + 3 * cfg.chunk
    assert all(torch.isfinite(v).all() for v in sfvgen.lora_state(model).values())
    assert "rolled back" in capsys.readouterr().out


def test_fast_draws_learn_the_window_as_a_batch_of_noisy_copies():
    """--fast-draws n: each fast step learns n copies of the window, each with its own noise level and noise (one
    batch): the same update as the fast loss on the window repeated n times along the batch."""
    model, cfg, _ = model_and_inputs()
    sfvgen.add_lora(model, "temporal", rank=4, alpha=4)
    diff = sfvgen.Diffusion(cfg)
    hist = [torch.rand(1, 1 if i == 0 else cfg.chunk, 3, cfg.size, cfg.size) * 2 - 1 for i in range(3)]
    results = []
    for draws in (3, None):
        sfvgen.reset_lora(model)
        opt = torch.optim.Adam(sfvgen.lora_parameters(model), lr=1e-2)
        if draws:
            loss = sfvgen.fast_learn_chunk(model, diff, opt, hist, None, replace(cfg, fast_draws=draws),
                                           torch.Generator().manual_seed(0))
        else:  # by hand: the local window, three times along the batch
            ctx, x0, tok = sfvgen.local_window(hist, None)
            loss = sfvgen.fast_update(model, diff, opt, ctx.repeat(3, 1, 1, 1, 1), x0.repeat(3, 1, 1, 1, 1),
                                      tok.repeat(3, 1), cfg.fast_steps, torch.Generator().manual_seed(0))
        results.append((loss, sfvgen.lora_state(model)))
    assert results[0][0] == results[1][0] and all(torch.equal(v, results[1][1][k]) for k, v in results[0][1].items())
