"""hw6: Algorithm 1b, one outer iteration of the slow-fast learning loop (slow_fast_iteration)."""
import numpy as np
import torch

from .common import micro_cfg, micro_model, same_state


def setup(sf, episodes=1, fast_lr=1e-2):
    cfg = micro_cfg(sf, fast_steps=2, loop_episodes=episodes, loop_out_chunks=1, fast_lr=fast_lr)
    model = micro_model(sf, cfg, lora=True)
    with torch.no_grad():  # a fresh UNet's output blocks are zero: give the adapted layers something to do
        for n, p in model.named_parameters():
            if "lora" not in n and ("to_out" in n or "temporal_conv" in n or n.startswith("out")):
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(7))
    d = sf.Diffusion(cfg)
    eps = sf.data.sample_episodes(np.random.default_rng(0), range(0, 50), cfg.loop_episodes, cfg.world(),
                                  tuple(cfg.loop_kinds.split(",")), cfg.loop_out_chunks)
    return cfg, model, d, eps


def chunks(sf, cfg, frames):
    x = sf.to_model(frames[None])
    return [x[:, :1]] + list(x[:, 1:].split(cfg.chunk, dim=1))


def check_snapshot_i_equals_the_lora_after_i_updates(sf):
    """Ds holds one (X_i, X_(i+1), a_(i+1), Theta_i) per chunk; Theta_0 is the fresh LoRA and Theta_i the LoRA after
    i fast updates on [X_(j) ; X_(j+1)] (one Adam per episode, the same generator)."""
    cfg, model, d, episodes = setup(sf)
    fresh = sf.lora_state(model)
    _, Ds = sf.slow_fast_iteration(model, d, cfg, episodes, torch.Generator().manual_seed(0))
    frames, actions = episodes[0]
    X = chunks(sf, cfg, frames)
    assert len(Ds) == len(actions), f"{len(Ds)} stored triples for {len(actions)} chunks"
    assert same_state(Ds[0][3], fresh), "Theta_0 must be the fresh LoRA"
    sf.reset_lora(model)
    opt = torch.optim.Adam(sf.lora_parameters(model), lr=cfg.fast_lr)
    gen = torch.Generator().manual_seed(0)
    for i in range(len(actions)):
        assert torch.equal(Ds[i][0], X[i]) and torch.equal(Ds[i][1], X[i + 1]), f"triple {i}: not (X_{i}, X_{i + 1})"
        assert torch.equal(Ds[i][2], sf.action_tokens([actions[i]], "cpu")), f"triple {i}: not the action a_{i + 1}"
        for k, v in sf.lora_state(model).items():
            assert torch.allclose(Ds[i][3][k], v, atol=1e-5), f"snapshot {i} is not the LoRA after {i} updates ({k})"
        sf.fast_learn_chunk(model, d, opt, X[:i + 2], None, cfg, gen)


def check_every_episode_starts_from_a_fresh_lora(sf):
    """With two episodes: the first triple of each holds the fresh Theta, later ones moved Theta."""
    cfg, model, d, episodes = setup(sf, episodes=2)
    fresh = sf.lora_state(model)
    _, Ds = sf.slow_fast_iteration(model, d, cfg, episodes, torch.Generator().manual_seed(0))
    n0 = len(episodes[0][1])
    assert len(Ds) == n0 + len(episodes[1][1]), f"{len(Ds)} triples for two episodes"
    assert same_state(Ds[0][3], fresh) and same_state(Ds[n0][3], fresh), "an episode did not start from a fresh LoRA"
    assert not same_state(Ds[1][3], fresh) and not same_state(Ds[n0 + 1][3], fresh), "the fast weights did not move"


def check_the_outer_step_leaves_gradients_in_phi_only(sf):
    """After the call: Phi carries the slow loss's gradient (not yet stepped: Phi unchanged), Theta has none."""
    cfg, model, d, episodes = setup(sf)
    slow = {k: v.clone() for k, v in sf.slow_state_dict(model).items()}
    sf.slow_fast_iteration(model, d, cfg, episodes, torch.Generator().manual_seed(0))
    assert same_state(sf.slow_state_dict(model), slow), "Phi changed: the outer step only leaves gradients"
    lora = set(map(id, sf.lora_parameters(model)))
    for p in sf.lora_parameters(model):
        assert p.grad is None or (p.grad == 0).all(), "Theta has a gradient after the outer step"
    slow_grads = [p.grad for p in model.parameters() if id(p) not in lora]
    with_grad = sum(g is not None and bool(g.abs().sum() > 0) for g in slow_grads)
    assert with_grad > len(slow_grads) // 2, f"only {with_grad} of {len(slow_grads)} slow tensors got a gradient"


def check_theta_is_reset_afterwards(sf):
    """The call leaves the fresh LoRA in the model (the snapshots live in Ds only)."""
    cfg, model, d, episodes = setup(sf)
    fresh = sf.lora_state(model)
    sf.slow_fast_iteration(model, d, cfg, episodes, torch.Generator().manual_seed(0))
    assert same_state(sf.lora_state(model), fresh), "Theta is not the fresh LoRA after the outer step"


def check_the_slow_loss_is_taken_with_each_snapshot_plugged_in(sf):
    """Each slow loss L_slow(X_(i+1) | X_i, a_(i+1)) is computed with Theta_i loaded, once per triple, and the
    returned loss depends on the snapshots (fast_lr 0 keeps them fresh and gives another loss, same draws)."""
    cfg, model, d, episodes = setup(sf)
    calls, loss = [], d.loss

    def spy(m, ctx, x0, tokens, **kw):
        calls.append((ctx.clone(), x0.clone(), sf.lora_state(m)))
        return loss(m, ctx, x0, tokens, **kw)

    d.loss = spy
    total, Ds = sf.slow_fast_iteration(model, d, cfg, episodes, torch.Generator().manual_seed(0))
    slow_calls = [c for c in calls if c[0].shape[1] > 0]  # the fast loss has no context
    assert len(slow_calls) == len(Ds), f"{len(slow_calls)} slow-loss calls for {len(Ds)} triples"
    for i, (x_i, x_next, _, theta_i) in enumerate(Ds):
        match = [c for c in slow_calls if torch.equal(c[0], x_i) and torch.equal(c[1], x_next)]
        assert match, f"no slow loss on triple {i}"
        assert same_state(match[0][2], theta_i), f"triple {i}'s slow loss ran with another Theta than its snapshot"
    cfg0, model0, d0, episodes0 = setup(sf, fast_lr=0.0)
    total0, _ = sf.slow_fast_iteration(model0, d0, cfg0, episodes0, torch.Generator().manual_seed(0))
    assert abs(total - total0) > 1e-7, "the slow loss does not depend on the LoRA snapshots"


CHECKS = [check_snapshot_i_equals_the_lora_after_i_updates, check_every_episode_starts_from_a_fresh_lora,
          check_the_outer_step_leaves_gradients_in_phi_only, check_theta_is_reset_afterwards,
          check_the_slow_loss_is_taken_with_each_snapshot_plugged_in]
