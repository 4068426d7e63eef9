"""hw5: Algorithm 1a, fast learning in generation (local_window, generate_long)."""
import torch

from .common import close, micro_cfg, micro_model, random_frames, same_state, world_episode

ACTIONS = ["go right", "go up", "go left"]


def setup(sf, lora=True, **over):
    cfg = micro_cfg(sf, fast_lr=1e-2, **over)
    model = micro_model(sf, cfg, lora=lora)
    with torch.no_grad():  # a fresh UNet's output blocks are zero: give the temporal layers something to do
        for n, p in model.named_parameters():
            if "lora" not in n and ("to_out" in n or "temporal_conv" in n or n.startswith("out")):
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(7))
    d = sf.Diffusion(cfg)
    first = world_episode(sf, cfg, ACTIONS[:1], seed=3)[0]  # (H, W, 3) uint8
    return cfg, model, d, first


def check_local_window_is_the_last_two_chunks_with_no_context_and_the_null_action(sf):
    """local_window(history, tokens) = (an empty context, [X_{i-1} ; X_i], the null tokens), for any history length."""
    cfg = micro_cfg(sf)
    history = [random_frames(cfg, 1, seed=0)] + [random_frames(cfg, 2, seed=s) for s in (1, 2, 3)]
    for n in (2, 4):
        ctx, target, tokens = sf.local_window(history[:n], sf.action_tokens(["go up"], "cpu"))
        assert ctx.shape == (1, 0, 3, cfg.size, cfg.size), f"context shape {tuple(ctx.shape)}, expected no frames"
        assert torch.equal(target, torch.cat(history[n - 2:n], 1)), f"history of {n}: the window is not [X_(i-1) ; X_i]"
        assert torch.equal(tokens, sf.null_tokens(1, "cpu")), f"tokens {tokens.tolist()}: expected the null action"


def check_without_fast_learning_it_is_chunk_by_chunk_sampling(sf):
    """fast_learning=False: the start frame, then one Diffusion.sample call per action with the previous chunk as
    context and one generator seeded with `seed`; no fast losses."""
    cfg, model, d, first = setup(sf, lora=False)
    res = sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=False, seed=5)
    assert res["fast_losses"] == [], f"fast losses {res['fast_losses']} without fast learning"
    gen, history = torch.Generator().manual_seed(5), [sf.to_model(first[None, None])]
    for p in model.parameters():
        p.requires_grad_(False)
    for a in ACTIONS:
        history.append(d.sample(model, history[-1], sf.action_tokens([a], "cpu"), cfg.chunk, generator=gen))
    want = sf.to_frames(torch.cat(history, 1))[0]
    assert res["frames"].shape == want.shape, f"frames {res['frames'].shape}, expected {want.shape} (start frame first)"
    assert (res["frames"][0] == first).all(), "the first frame must be the start frame"
    diff = abs(res["frames"].astype(int) - want.astype(int)).max()
    assert diff <= 1, f"frames differ from chunk-by-chunk sampling by up to {diff} / 255"


def check_fast_learning_changes_the_lora_and_not_phi(sf):
    """With fast learning: one finite fast loss per chunk, Theta (lora_A / lora_B) moved, Phi bit for bit unchanged;
    the first chunk equals the one sampled without fast learning (Theta starts fresh, the sampler's noise is shared),
    a later chunk differs."""
    cfg, model, d, first = setup(sf)
    slow = {k: v.clone() for k, v in sf.slow_state_dict(model).items()}
    fresh = sf.lora_state(model)
    off = sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=False, seed=5)["frames"]
    on = sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=True, seed=5)
    assert len(on["fast_losses"]) == len(ACTIONS), f"{len(on['fast_losses'])} fast losses for {len(ACTIONS)} chunks"
    assert all(torch.isfinite(torch.tensor(on["fast_losses"]))), f"fast losses {on['fast_losses']}"
    assert same_state(sf.slow_state_dict(model), slow), "the slow weights Phi changed during generation"
    assert not same_state(sf.lora_state(model), fresh), "the fast weights Theta did not move"
    K = cfg.chunk
    assert (on["frames"][:1 + K] == off[:1 + K]).all(), "the first chunk should not depend on fast learning"
    assert (on["frames"][1 + K:] != off[1 + K:]).any(), "fast learning changed no later chunk"


def check_each_update_learns_the_local_window_of_the_new_chunk(sf):
    """generate_long equals Algorithm 1a written out: fresh Theta, one Adam (cfg.fast_lr) for the video, fast
    learning's draws from fast_generator(seed); per action: sample with Theta merged, then fast_learn_chunk."""
    cfg, model, d, first = setup(sf)
    res = sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=True, seed=2)
    theta = sf.lora_state(model)
    sf.reset_lora(model)
    sf.set_trainable(model, "fast")
    opt = torch.optim.Adam(sf.lora_parameters(model), lr=cfg.fast_lr)
    gen, fast_gen = torch.Generator().manual_seed(2), sf.fast_generator(2)
    history, losses = [sf.to_model(first[None, None])], []
    for a in ACTIONS:
        tokens = sf.action_tokens([a], "cpu")
        sf.merge_lora(model)
        history.append(d.sample(model, history[-1], tokens, cfg.chunk, generator=gen))
        sf.unmerge_lora(model)
        losses.append(sf.fast_learn_chunk(model, d, opt, history, tokens, cfg, fast_gen))
    diff = abs(res["frames"].astype(int) - sf.to_frames(torch.cat(history, 1))[0].astype(int)).max()
    assert diff <= 1, f"frames differ from Algorithm 1a written out by up to {diff} / 255"
    close(torch.tensor(res["fast_losses"]), torch.tensor(losses), 1e-4, "fast losses")
    for k in theta:
        close(theta[k], sf.lora_state(model)[k], 1e-4, f"Theta {k}")


def check_continuing_from_memory_equals_one_call(sf):
    """Two calls, the second continuing from the first's memory, give the frames and Theta of one call."""
    cfg, model, d, first = setup(sf)
    whole = sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=True, seed=1)
    theta = sf.lora_state(model)
    a = sf.generate_long(model, d, cfg, first, ACTIONS[:2], fast_learning=True, seed=1)
    b = sf.generate_long(model, d, cfg, None, ACTIONS[2:], fast_learning=True, seed=1, memory=a["memory"])
    assert b["frames"].shape[0] == len(ACTIONS[2:]) * cfg.chunk, "a continuation returns only the new frames"
    assert (whole["frames"] == torch.cat([torch.as_tensor(a["frames"]), torch.as_tensor(b["frames"])]).numpy()).all(), \
        "the continued video differs from the one-call video"
    assert same_state(sf.lora_state(model), theta), "Theta after the continuation differs from Theta after one call"


CHECKS = [check_local_window_is_the_last_two_chunks_with_no_context_and_the_null_action,
          check_without_fast_learning_it_is_chunk_by_chunk_sampling, check_fast_learning_changes_the_lora_and_not_phi,
          check_each_update_learns_the_local_window_of_the_new_chunk, check_continuing_from_memory_equals_one_call]
