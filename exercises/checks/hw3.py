"""hw3: the DDIM / DDPM sampler that puts the clean context back at every step (Diffusion.sample)."""
import torch

from .common import close, micro_cfg, micro_model, random_frames


class Oracle(torch.nn.Module):
    """A network that knows the answer: it returns the prediction (x0, eps or v) of the true clean frames `x0`
    for whatever noisy frames it is given, and records every call."""

    def __init__(self, diffusion, x0, prediction):
        super().__init__()
        self.d, self.x0, self.prediction, self.calls = diffusion, x0, prediction, []

    def forward(self, x, t, tokens, n_ctx):
        self.calls.append(dict(x=x.clone(), t=t.clone(), tokens=tokens.clone(), n_ctx=n_ctx))
        xt, tt = x[:, n_ctx:], int(t[0, n_ctx])
        ab = self.d.abar[tt]
        eps = (xt - ab.sqrt() * self.x0) / (1 - ab).sqrt() if tt > 0 else torch.zeros_like(xt)
        out = {"x0": self.x0, "eps": eps, "v": ab.sqrt() * eps - (1 - ab).sqrt() * self.x0}[self.prediction]
        return torch.cat([torch.zeros_like(x[:, :n_ctx]), out], 1)


def setup(sf, prediction="x0", **over):
    cfg = micro_cfg(sf, prediction=prediction, **over)
    d = sf.Diffusion(cfg)
    ctx = random_frames(cfg, 2, seed=1)
    x0 = random_frames(cfg, 2, seed=2) * 0.9  # inside [-1, 1], so clamping leaves it alone
    tokens = sf.action_tokens(["go right"], "cpu")
    return cfg, d, ctx, x0, tokens


def check_an_oracle_network_makes_the_sampler_return_x0(sf):
    """A network that returns the true x_0 (or its eps / v) makes DDIM (eta = 0) return x_0, for all three
    predictions; DDPM-like sampling (eta = 1) ends at x_0 too (sigma = 0 at the last step)."""
    for pred in ("x0", "eps", "v"):
        for eta in (0.0, 1.0):
            cfg, d, ctx, x0, tokens = setup(sf, pred)
            out = d.sample(Oracle(d, x0, pred), ctx, tokens, 2, generator=torch.Generator().manual_seed(0), eta=eta)
            close(out, x0, 1e-3, f"sample with an oracle network, prediction={pred}, eta={eta}")


def check_the_clean_context_is_put_back_at_every_step(sf):
    """Every network call sees the clean context frames in front (exactly), with noise level 0 and n_ctx = f_p,
    and the new frames after them at one noise level."""
    cfg, d, ctx, x0, tokens = setup(sf)
    spy = Oracle(d, x0, "x0")
    d.sample(spy, ctx, tokens, 2, generator=torch.Generator().manual_seed(0), steps=5)
    assert len(spy.calls) == 5, f"expected one network call per step (5), got {len(spy.calls)}"
    for k, c in enumerate(spy.calls):
        assert c["n_ctx"] == 2 and c["x"].shape[1] == 4, f"call {k}: n_ctx {c['n_ctx']}, {c['x'].shape[1]} frames"
        assert torch.equal(c["x"][:, :2], ctx), f"call {k}: the context frames are not the clean context"
        assert (c["t"][:, :2] == 0).all(), f"call {k}: context noise levels {c['t'][0, :2].tolist()}, expected 0"
        assert len(c["t"][0, 2:].unique()) == 1, f"call {k}: the new frames should share one noise level"
        assert torch.equal(c["tokens"], tokens), f"call {k}: the action tokens changed"


def check_each_step_is_the_ddim_update_on_the_timestep_grid(sf):
    """t runs T, ..., over round(linspace(T, 0, steps + 1)); x_T ~ N(0, I) from the generator; between calls
    x_s = sqrt(abar_s) x_0 + sqrt(1 - abar_s) eps with eps = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t) (eta = 0)."""
    cfg, d, ctx, x0, tokens = setup(sf)
    guess = x0 * 0.5  # not the truth: the update's algebra must hold for any prediction
    spy = Oracle(d, guess, "x0")
    d.sample(spy, ctx, tokens, 2, generator=torch.Generator().manual_seed(3), steps=4, eta=0.0)
    grid = torch.linspace(cfg.timesteps, 0, 5).round().long().tolist()
    assert [int(c["t"][0, -1]) for c in spy.calls] == grid[:-1], \
        f"noise levels {[int(c['t'][0, -1]) for c in spy.calls]}, expected {grid[:-1]}"
    x_T = torch.randn((1, 2, 3, cfg.size, cfg.size), generator=torch.Generator().manual_seed(3))
    close(spy.calls[0]["x"][:, 2:], x_T, 1e-6, "x_T (expected torch.randn from the generator, on the CPU)")
    for k in range(len(grid) - 2):
        t, s = grid[k], grid[k + 1]
        xt = spy.calls[k]["x"][:, 2:]
        eps = (xt - d.abar[t].sqrt() * guess) / (1 - d.abar[t]).sqrt()
        want = d.abar[s].sqrt() * guess + (1 - d.abar[s]).sqrt() * eps
        close(spy.calls[k + 1]["x"][:, 2:], want, 1e-4, f"x_{s} after the step from t = {t}")


def check_the_same_generator_gives_the_same_sample(sf):
    """With the video UNet: the same generator seed gives the same frames (eta 0 and 1), another seed other frames,
    and eta = 1 draws fresh noise (other frames than eta = 0 from the same seed)."""
    cfg, d, ctx, x0, tokens = setup(sf)
    model = micro_model(sf, cfg)
    for p in model.parameters():  # a fresh UNet outputs zeros (zero-initialised output blocks): give it some signal
        p.requires_grad_(False)
    with torch.no_grad():
        model.out[-1].weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(4))
    run = lambda seed, eta: d.sample(model, ctx, tokens, 2, generator=torch.Generator().manual_seed(seed), eta=eta)
    for eta in (0.0, 1.0):
        assert torch.equal(run(0, eta), run(0, eta)), f"eta = {eta}: the same generator seed gave other frames"
        assert not torch.allclose(run(0, eta), run(1, eta)), f"eta = {eta}: another seed gave the same frames"
    assert not torch.allclose(run(0, 0.0), run(0, 1.0), atol=1e-4), "eta = 1 should add fresh noise at each step"


CHECKS = [check_an_oracle_network_makes_the_sampler_return_x0, check_the_clean_context_is_put_back_at_every_step,
          check_each_step_is_the_ddim_update_on_the_timestep_grid, check_the_same_generator_gives_the_same_sample]
