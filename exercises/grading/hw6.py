"""hw6 (hidden): Algorithm 1b, one outer iteration of the slow-fast learning loop (slow_fast_iteration)."""
import copy

import numpy as np
import torch

from ..visible.common import close, latent_cfg, micro_cfg, same_state
from .models import context_net


def setup(sf, episodes=1, cfg=None, **over):
    cfg = cfg or micro_cfg(sf, **{"fast_steps": 2, "fast_lr": 1e-2, "p_uncond": 0.5, **over})
    model = context_net(sf, cfg)
    eps = sf.data.sample_episodes(np.random.default_rng(0), list(range(50)), episodes, cfg.world(),
                                  ("out-and-back", "go-back"), out_chunks=1)
    return cfg, model, sf.Diffusion(cfg), eps


def chunks(sf, cfg, frames, autoencoder=None):
    x = sf.to_model(frames[None], "cpu", autoencoder)
    return [x[:, :1]] + list(x[:, 1:].split(cfg.chunk, dim=1))


def loss_spy(sf, d):
    """Wraps d.loss: slow-loss calls (with a context) draw through d.draw themselves, so the draws can be replayed;
    records (ctx, x0, tokens, p_uncond, draws, Theta, value) of each."""
    calls, loss = [], d.loss

    def spy(m, ctx, x0, tokens, p_uncond=0.0, generator=None, draws=None):
        if ctx.shape[1] == 0:  # a fast loss
            return loss(m, ctx, x0, tokens, p_uncond=p_uncond, generator=generator, draws=draws)
        draws = d.draw(x0, p_uncond, generator) if draws is None else draws
        out = loss(m, ctx, x0, tokens, p_uncond=p_uncond, generator=generator, draws=draws)
        calls.append(dict(ctx=ctx.clone(), x0=x0.clone(), tokens=tokens.clone(), p_uncond=p_uncond, draws=draws,
                          theta=sf.lora_state(m), value=out.item()))
        return out

    d.loss = spy
    return calls


def replay_fast(sf, cfg, model, d, episodes, gen, autoencoder=None):
    """The snapshots Algorithm 1b should store: per episode a fresh LoRA and a fresh Adam, a snapshot before each fast
    update on [X_i ; X_(i+1)]."""
    snaps = []
    for frames, actions in episodes:
        X = chunks(sf, cfg, frames, autoencoder)
        sf.reset_lora(model)
        opt = torch.optim.Adam(sf.lora_parameters(model), lr=cfg.fast_lr)
        model.train()
        for i in range(len(actions)):
            snaps.append(sf.lora_state(model))
            sf.fast_learn_chunk(model, d, opt, X[:i + 2], None, cfg, gen)
    sf.reset_lora(model)
    return snaps


def check_snapshot_i_is_theta_after_i_fast_updates(sf):
    """Ds holds (X_i, X_(i+1), a_(i+1), Theta_i) per chunk, X_0 the start frame and X_i the i-th chunk of cfg.chunk
    frames; Theta_i is the memory of X_0 .. X_i: the fresh LoRA for i = 0, then the LoRA after i fast updates on
    [X_j ; X_(j+1)] (cfg.fast_steps steps each, one Adam, draws from `generator`), taken before update i."""
    cfg, model, d, episodes = setup(sf)
    _, Ds = sf.slow_fast_iteration(model, d, cfg, episodes, torch.Generator().manual_seed(0))
    frames, actions = episodes[0]
    X = chunks(sf, cfg, frames)
    assert len(Ds) == len(actions), f"{len(Ds)} entries in Ds for {len(actions)} chunks"
    for i in range(len(actions)):
        assert torch.equal(Ds[i][0], X[i]) and torch.equal(Ds[i][1], X[i + 1]), \
            f"Ds[{i}] is not (X_{i}, X_{i + 1}): X_0 is the start frame, then chunks of cfg.chunk frames"
        assert torch.equal(Ds[i][2], sf.action_tokens([actions[i]], "cpu")), f"Ds[{i}] does not hold the action a_{i + 1}"
    assert same_state(Ds[0][3], sf.lora_state(model)), "Theta_0 must be the fresh LoRA (a snapshot before any update)"
    snaps = replay_fast(sf, cfg, copy.deepcopy(model), d, episodes, torch.Generator().manual_seed(0))
    for i in range(1, len(actions)):
        for k, v in snaps[i].items():
            close(Ds[i][3][k], v, 1e-5, f"Theta_{i} must be the LoRA after {i} fast update(s) on [X_j ; X_(j+1)], "
                                         f"taken before the update on [X_{i} ; X_{i + 1}] ({k})")


def check_every_episode_has_a_fresh_lora_and_its_own_optimizer(sf):
    """Two episodes: each starts from the fresh LoRA, and its fast updates start from a fresh Adam (a shared optimizer
    carries one world's momentum into the next)."""
    cfg, model, d, episodes = setup(sf, episodes=2)
    fresh = sf.lora_state(model)
    _, Ds = sf.slow_fast_iteration(model, d, cfg, episodes, torch.Generator().manual_seed(0))
    n0 = len(episodes[0][1])
    assert len(Ds) == n0 + len(episodes[1][1]), f"{len(Ds)} entries in Ds for the chunks of two episodes"
    assert same_state(Ds[n0][3], fresh), "Theta was not reset at the start of episode 2: each episode has its own memory"
    assert not same_state(Ds[n0 + 1][3], fresh), "the fast weights did not move in episode 2"
    snaps = replay_fast(sf, cfg, copy.deepcopy(model), d, episodes, torch.Generator().manual_seed(0))
    for k, v in snaps[n0 + 1].items():
        close(Ds[n0 + 1][3][k], v, 1e-5, f"episode 2's Theta_1 must come from a fresh Adam: one optimizer per episode ({k})")


def check_the_gradient_is_that_of_the_mean_slow_loss(sf):
    """L is the mean over Ds of L_slow(X_(i+1) | X_i, a_(i+1); Phi + Theta_i), and Phi's .grad is exactly the gradient
    of that mean (stale gradients cleared first); Theta gets none; Phi is not stepped."""
    cfg, model, d, episodes = setup(sf, episodes=2)
    for p in model.parameters():  # stale gradients, as a caller may leave them
        p.grad = torch.full_like(p, 0.5)
    calls = loss_spy(sf, d)
    L, Ds = sf.slow_fast_iteration(model, d, cfg, episodes, torch.Generator().manual_seed(0))
    assert len(calls) == len(Ds), f"{len(calls)} slow losses for {len(Ds)} entries of Ds: one per entry"
    mean = float(np.mean([c["value"] for c in calls]))
    if abs(L - mean * len(Ds)) < 1e-6 * max(1.0, abs(L)) and len(Ds) > 1:
        raise AssertionError(f"L = {L:.5f} is the sum over Ds: the slow loss must average over Ds")
    close(L, mean, 1e-5, "L against the mean over Ds of the slow losses")
    for p in sf.lora_parameters(model):
        assert p.grad is None or (p.grad == 0).all(), "Theta has a gradient after the outer step: only Phi learns there"
    ref = copy.deepcopy(model)
    ref.zero_grad(set_to_none=True)
    sf.set_trainable(ref, "slow")
    d.loss = type(d).loss.__get__(d)
    for c in calls:
        sf.load_lora_state(ref, c["theta"])
        (d.loss(ref, c["ctx"], c["x0"], c["tokens"], draws=c["draws"]) / len(calls)).backward()
    slow = sf.slow_parameters(model)
    got = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in slow])
    want = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in sf.slow_parameters(ref)])
    ratio = (got.norm() / want.norm().clamp(min=1e-12)).item()
    assert abs(ratio - len(Ds)) > 0.01 * len(Ds), \
        f"Phi's gradient is {ratio:.2f} times that of the mean slow loss: the slow loss must average over Ds"
    close(got, want, 1e-4 * max(1.0, want.abs().max().item()),
          "Phi's gradient against that of the mean slow loss with each snapshot plugged in (stale gradients cleared?)")


def check_each_slow_loss_runs_with_its_own_snapshot(sf):
    """Each slow loss L_slow(X_(i+1) | X_i, a_(i+1)) runs once, with Theta_i loaded (Theta frozen), and the loss depends
    on the snapshots (fast_lr 0 keeps them fresh and gives another loss from the same draws)."""
    cfg, model, d, episodes = setup(sf, episodes=2)
    calls = loss_spy(sf, d)
    total, Ds = sf.slow_fast_iteration(model, d, cfg, episodes, torch.Generator().manual_seed(0))
    for i, (x_i, x_next, a, theta_i) in enumerate(Ds):
        match = [c for c in calls if torch.equal(c["ctx"], x_i) and torch.equal(c["x0"], x_next)]
        assert len(match) == 1, f"{len(match)} slow losses on Ds[{i}]: one per entry"
        assert torch.equal(match[0]["tokens"], a), f"the slow loss on Ds[{i}] must be conditioned on its action"
        assert same_state(match[0]["theta"], theta_i), f"the slow loss on Ds[{i}] ran with another Theta than Theta_{i}"
    cfg0, model0, d0, episodes0 = setup(sf, episodes=2, fast_lr=0.0)
    total0, _ = sf.slow_fast_iteration(model0, d0, cfg0, episodes0, torch.Generator().manual_seed(0))
    assert abs(total - total0) > 1e-7, "the slow loss does not depend on the LoRA snapshots"


def check_the_slow_loss_drops_the_action_with_p_uncond(sf):
    """The slow loss is trained for classifier-free guidance: with cfg.p_uncond = 1 every slow-loss call sees the null
    action, with cfg.p_uncond = 0 none does."""
    null = sf.null_tokens(1, "cpu")
    for p, want in ((1.0, True), (0.0, False)):
        cfg, model, d, episodes = setup(sf, p_uncond=p)
        sf.slow_fast_iteration(model, d, cfg, episodes, torch.Generator().manual_seed(0))
        slow = [tok for tok, n_ctx in model.seen if n_ctx > 0]
        assert slow, "no slow-loss call reached the network"
        dropped = [bool((tok == null).all()) for tok in slow]
        assert all(x == want for x in dropped), \
            f"cfg.p_uncond = {p}: {sum(dropped)} of {len(slow)} slow losses saw the null action (the slow loss must " \
            f"drop the action with probability cfg.p_uncond)"


def check_every_draw_comes_from_the_generator(sf):
    """The same `generator` seed gives the same L, the same snapshots and the same gradient whatever the global RNG
    (the fast updates and the slow losses all draw from it); another seed gives another L."""
    runs = []
    for gseed, global_seed in ((0, 1), (0, 2), (1, 1)):
        cfg, model, d, episodes = setup(sf)
        torch.manual_seed(global_seed)
        L, Ds = sf.slow_fast_iteration(model, d, cfg, episodes, torch.Generator().manual_seed(gseed))
        runs.append((L, Ds, torch.cat([p.grad.flatten() for p in sf.slow_parameters(model) if p.grad is not None])))
    (a, Da, ga), (b, Db, gb), (c, _, _) = runs
    assert all(same_state(x[3], y[3]) for x, y in zip(Da, Db)), \
        "the snapshots depend on the global RNG: the fast updates must draw from `generator`"
    assert a == b and torch.equal(ga, gb), "the slow loss depends on the global RNG: pass `generator` to the slow loss"
    assert a != c, "another generator seed gave the same loss"


def check_the_inner_loop_learns_the_window_it_is_given(sf):
    """`window` is the fast rule of the inner loop: called once per chunk with the ground-truth history up to X_(i+1)."""
    cfg, model, d, episodes = setup(sf)
    seen = []

    def spy_window(history, tokens):
        seen.append(len(history))
        return sf.local_window(history, tokens)

    sf.slow_fast_iteration(model, d, cfg, episodes, torch.Generator().manual_seed(0), window=spy_window)
    n = len(episodes[0][1])
    assert seen == [i + 2 for i in range(n)], \
        f"the window saw histories of {seen} chunks, expected {[i + 2 for i in range(n)]}: use the `window` argument, " \
        f"with X_0 .. X_(i+1)"


def check_a_latent_model_learns_on_its_latents(sf):
    """A latent model: the episode goes through to_model with the model's autoencoder once, so Ds holds latents and
    both losses work on them; Phi gets a gradient, the autoencoder none."""
    cfg = latent_cfg(sf, fast_steps=1, fast_lr=1e-2)
    cfg, model, d, episodes = setup(sf, cfg=cfg)
    L, Ds = sf.slow_fast_iteration(model, d, cfg, episodes, torch.Generator().manual_seed(0))
    X = chunks(sf, cfg, episodes[0][0], model.autoencoder)
    assert Ds[0][0].shape == X[0].shape, \
        f"Ds[0][0] has shape {tuple(Ds[0][0].shape)}, expected the latents {tuple(X[0].shape)} (to_model with the autoencoder)"
    close(Ds[1][1], X[2], 1e-5, "X_2 in Ds against the episode's latents")
    assert np.isfinite(L), "a latent model's slow loss is not finite"
    assert all(p.grad is None for p in model.autoencoder.parameters()), "the frozen autoencoder got a gradient"


CHECKS = [check_snapshot_i_is_theta_after_i_fast_updates, check_every_episode_has_a_fresh_lora_and_its_own_optimizer,
          check_the_gradient_is_that_of_the_mean_slow_loss, check_each_slow_loss_runs_with_its_own_snapshot,
          check_the_slow_loss_drops_the_action_with_p_uncond, check_every_draw_comes_from_the_generator,
          check_the_inner_loop_learns_the_window_it_is_given, check_a_latent_model_learns_on_its_latents]
