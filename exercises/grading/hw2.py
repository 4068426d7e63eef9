"""hw2 (hidden): the masked conditional loss (Diffusion.draw, Diffusion.loss): clean context frames at t = 0, the loss on the
target frames only, the action dropped (null tokens) for classifier-free guidance."""
import torch
import torch.nn.functional as F

from ..visible.common import close, micro_cfg, micro_model, random_frames


class Spy(torch.nn.Module):
    """A stand-in network: records every call, returns `output(x)` (default: zeros)."""

    def __init__(self, output=None):
        super().__init__()
        self.calls, self.output = [], output
        self.w = torch.nn.Parameter(torch.zeros(()))  # so the loss has something to differentiate

    def forward(self, x, t, tokens, n_ctx):
        self.calls.append(dict(x=x.detach().clone(), t=t.clone(), tokens=tokens.clone(), n_ctx=n_ctx))
        return (torch.zeros_like(x) if self.output is None else self.output(x)) + self.w


def batch(sf, B=2, f_p=2, f_g=2):
    cfg = micro_cfg(sf)
    ctx = torch.cat([random_frames(cfg, f_p, seed=10 + b) for b in range(B)])
    x0 = torch.cat([random_frames(cfg, f_g, seed=20 + b) for b in range(B)])
    tokens = sf.action_tokens(["go right", "go up", "go left", "go down"][:B], "cpu")
    return cfg, sf.Diffusion(cfg), ctx, x0, tokens


def check_draw_gives_t_eps_and_the_dropped_clips(sf):
    """t in 1..T per clip (long), eps ~ N(0, I) like x0, drop a (B,) bool with about p_uncond of the clips
    (None when p_uncond is 0); the same generator seed gives the same draws."""
    cfg = micro_cfg(sf)
    d = sf.Diffusion(cfg)
    x0 = torch.zeros(4000, 1, 3, 4, 4)
    t, eps, drop = d.draw(x0, 0.3, torch.Generator().manual_seed(0))
    assert t.shape == (4000,) and t.dtype == torch.long, f"t: shape {tuple(t.shape)}, dtype {t.dtype}"
    assert t.min() >= 1 and t.max() <= cfg.timesteps, f"t in {t.min()}..{t.max()}, expected 1..{cfg.timesteps}"
    assert len(t.unique()) > cfg.timesteps * 0.9, "t should cover 1..T: one uniform noise level per clip"
    assert eps.shape == x0.shape, f"eps shape {tuple(eps.shape)} != x0 {tuple(x0.shape)}"
    close(eps.mean(), 0.0, 0.01, "mean of eps")
    close(eps.std(), 1.0, 0.01, "std of eps")
    assert drop is not None and drop.dtype == torch.bool and drop.shape == (4000,), "drop: a (B,) bool tensor"
    close(drop.float().mean(), 0.3, 0.03, "the fraction of dropped actions at p_uncond = 0.3 (each clip drops with probability p_uncond)")
    assert d.draw(x0[:8], 0.0, torch.Generator().manual_seed(0))[2] is None, "p_uncond = 0: drop should be None"
    t2, eps2, drop2 = d.draw(x0, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(t, t2) and torch.equal(eps, eps2) and torch.equal(drop, drop2), "the same generator seed gave other draws: every draw must come from `generator`"


def check_context_goes_in_clean_at_t_0_and_targets_noised_at_t(sf):
    """The network sees [x_ctx ; x_t]: the context frames untouched with noise level 0, the targets as
    q_sample(x_0, t, eps) with the clip's t; n_ctx = f_p. With f_p = 0 (the fast loss) every frame is a noised target."""
    cfg, d, ctx, x0, tokens = batch(sf)
    t = torch.tensor([7, 60])
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    spy = Spy()
    d.loss(spy, ctx, x0, tokens, draws=(t, eps, None))
    assert len(spy.calls) == 1, f"expected one network call, got {len(spy.calls)}"
    c = spy.calls[0]
    assert c["n_ctx"] == 2, f"n_ctx = {c['n_ctx']}: the network must be told how many context frames lead the clip"
    assert torch.equal(c["x"][:, :2], ctx), "the context frames must go in clean: only the targets are noised"
    close(c["x"][:, 2:], d.q_sample(x0, t, eps), 1e-6, "the target frames (the forward process at the clip's t, "
          "with the draws given)")
    assert torch.equal(c["t"], torch.tensor([[0, 0, 7, 7], [0, 0, 60, 60]])), \
        f"noise levels {c['t'].tolist()}: context frames are marked clean (t = 0), targets carry their clip's t"
    spy = Spy()
    d.loss(spy, ctx[:, :0], x0, tokens, draws=(t, eps, None))
    c = spy.calls[0]
    assert c["n_ctx"] == 0 and c["x"].shape[1] == 2, "with no context every frame is a target"
    assert torch.equal(c["t"], torch.tensor([[7, 7], [60, 60]])), f"noise levels with no context {c['t'].tolist()}"


def check_loss_is_on_the_targets_only(sf):
    """Noise on the context frames, or anything the network outputs there, does not change the loss; a change in
    the targets' outputs does. The value is the MSE of the target outputs against Diffusion.target."""
    cfg, d, ctx, x0, tokens = batch(sf)
    t = torch.tensor([30, 80])
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    guess = torch.randn((2, 4, 3, cfg.size, cfg.size), generator=torch.Generator().manual_seed(3))
    base = d.loss(Spy(lambda x: guess), ctx, x0, tokens, draws=(t, eps, None)).item()
    want = F.mse_loss(guess[:, 2:], d.target(x0, t, eps)).item()
    close(base, want, 1e-5, "the loss: the mean squared error over the target frames of the regression target")
    junk = guess.clone()
    junk[:, :2] += 100.0
    close(d.loss(Spy(lambda x: junk), ctx, x0, tokens, draws=(t, eps, None)).item(), base, 1e-5,
          "the loss must not score the context frames; with other outputs there it changed")
    noisy_ctx = ctx + 0.5 * torch.randn(ctx.shape, generator=torch.Generator().manual_seed(4))
    close(d.loss(Spy(lambda x: guess), noisy_ctx, x0, tokens, draws=(t, eps, None)).item(), base, 1e-5,
          "loss with noise on the context frames (the network's output held fixed)")
    moved = guess.clone()
    moved[:, 2:] += 0.1
    assert abs(d.loss(Spy(lambda x: moved), ctx, x0, tokens, draws=(t, eps, None)).item() - base) > 1e-3, \
        "a change in the targets' outputs must change the loss"


def check_dropped_actions_use_the_null_tokens(sf):
    """Clips with drop = True see the null action, the others their own action; p_uncond = 1 drops every action,
    p_uncond = 0 none."""
    cfg, d, ctx, x0, tokens = batch(sf)
    null = sf.null_tokens(2, "cpu")
    t = torch.tensor([5, 50])
    eps = torch.zeros(x0.shape)
    spy = Spy()
    d.loss(spy, ctx, x0, tokens, draws=(t, eps, torch.tensor([True, False])))
    seen = spy.calls[0]["tokens"]
    assert torch.equal(seen[0], null[0]) and torch.equal(seen[1], tokens[1]), f"tokens seen {seen.tolist()}"
    spy = Spy()
    d.loss(spy, ctx, x0, tokens, p_uncond=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(spy.calls[0]["tokens"], null), "p_uncond = 1: every clip should see the null action"
    spy = Spy()
    d.loss(spy, ctx, x0, tokens, p_uncond=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(spy.calls[0]["tokens"], tokens), "p_uncond = 0: every clip should keep its action"


def check_loss_of_the_real_network_is_reproducible_and_differentiable(sf):
    """With the video UNet: the same generator seed gives the same loss, the loss equals the formula on the
    same draws, and its gradient reaches the network."""
    cfg, d, ctx, x0, tokens = batch(sf)
    model = micro_model(sf, cfg).train()
    a = d.loss(model, ctx, x0, tokens, p_uncond=0.5, generator=torch.Generator().manual_seed(5))
    b = d.loss(model, ctx, x0, tokens, p_uncond=0.5, generator=torch.Generator().manual_seed(5))
    close(a.item(), b.item(), 0.0, "loss with the same generator seed")
    t, eps, drop = d.draw(x0, 0.5, torch.Generator().manual_seed(5))
    tok = torch.where(drop[:, None], sf.null_tokens(2, "cpu"), tokens)
    tf = torch.cat([torch.zeros(2, 2, dtype=torch.long), t[:, None].expand(2, 2)], 1)
    want = F.mse_loss(model(torch.cat([ctx, d.q_sample(x0, t, eps)], 1), tf, tok, 2)[:, 2:], d.target(x0, t, eps))
    close(a.item(), want.item(), 1e-5, "loss against the formula on the same draws")
    a.backward()
    assert model.out[-1].weight.grad is not None and model.out[-1].weight.grad.abs().sum() > 0, "no gradient reached the network"


CHECKS = [check_draw_gives_t_eps_and_the_dropped_clips, check_context_goes_in_clean_at_t_0_and_targets_noised_at_t,
          check_loss_is_on_the_targets_only, check_dropped_actions_use_the_null_tokens,
          check_loss_of_the_real_network_is_reproducible_and_differentiable]
