"""hw2 (visible): the loss's draws have the promised shapes, and the loss is a reproducible, differentiable scalar."""
import torch

from .common import micro_cfg, micro_model, random_frames, wake


def check_draw_returns_t_eps_and_drop_with_their_shapes(sf):
    """draw(x0, p_uncond, generator) -> t (B,) long in 1..T, eps shaped like x0, drop (B,) bool, or None at p_uncond 0."""
    cfg = micro_cfg(sf)
    d = sf.Diffusion(cfg)
    x0 = random_frames(cfg, 2, B=5)
    t, eps, drop = d.draw(x0, 0.5, torch.Generator().manual_seed(0))
    assert t.shape == (5,) and t.dtype == torch.long, f"t: shape {tuple(t.shape)}, dtype {t.dtype}"
    assert 1 <= t.min() and t.max() <= cfg.timesteps, f"t in {t.min()}..{t.max()}, expected 1..{cfg.timesteps}"
    assert eps.shape == x0.shape and eps.is_floating_point(), f"eps: shape {tuple(eps.shape)}"
    assert drop is not None and drop.shape == (5,) and drop.dtype == torch.bool, "drop: a (B,) bool tensor"
    assert d.draw(x0, 0.0, torch.Generator().manual_seed(0))[2] is None, "drop is None when p_uncond is 0"


def check_the_loss_is_a_reproducible_differentiable_scalar(sf):
    """With the video UNet: a finite scalar, the same for the same generator seed, with a gradient for the network."""
    cfg = micro_cfg(sf)
    d, model = sf.Diffusion(cfg), wake(micro_model(sf, cfg)).train()
    ctx, x0 = random_frames(cfg, 2, 1, B=2), random_frames(cfg, 2, 2, B=2)
    tokens = sf.action_tokens(["go up", "go left"], "cpu")
    a = d.loss(model, ctx, x0, tokens, p_uncond=0.5, generator=torch.Generator().manual_seed(3))
    b = d.loss(model, ctx, x0, tokens, p_uncond=0.5, generator=torch.Generator().manual_seed(3))
    assert torch.is_tensor(a) and a.dim() == 0 and torch.isfinite(a), f"the loss should be a finite scalar, got {a}"
    assert a.item() == b.item(), "the same generator seed gave another loss"
    a.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), "no gradient reached the network"


CHECKS = [check_draw_returns_t_eps_and_drop_with_their_shapes, check_the_loss_is_a_reproducible_differentiable_scalar]
