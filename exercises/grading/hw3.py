"""hw3 (hidden): the DDIM / DDPM sampler that puts the clean context back at every step (Diffusion.sample)."""
import torch

from ..visible.common import close, latent_cfg, micro_cfg, micro_model, random_frames
from .models import Oracle, Spy


def setup(sf, prediction="x0", **over):
    cfg = micro_cfg(sf, prediction=prediction, **over)
    d = sf.Diffusion(cfg)
    ctx = random_frames(cfg, 2, seed=1)
    x0 = random_frames(cfg, 2, seed=2) * 0.9  # inside [-1, 1], so clamping leaves it alone
    tokens = sf.action_tokens(["go right"], "cpu")
    return cfg, d, ctx, x0, tokens


def grid(cfg, steps):
    return torch.linspace(cfg.timesteps, 0, steps + 1).round().long().tolist()


def check_an_oracle_network_makes_the_sampler_return_x0(sf):
    """A network that returns the true x_0 (or its eps / v) makes DDIM (eta = 0) return x_0, for all three
    predictions; DDPM-like sampling (eta = 1) ends at x_0 too (sigma = 0 at the last step)."""
    for pred in ("x0", "eps", "v"):
        for eta in (0.0, 1.0):
            cfg, d, ctx, x0, tokens = setup(sf, pred)
            out = d.sample(Oracle(d, x0, pred), ctx, tokens, 2, generator=torch.Generator().manual_seed(0), eta=eta)
            close(out, x0, 1e-3, f"sampling with a network that knows x_0 (prediction={pred}, eta={eta}) must end at x_0")


def check_the_clean_context_is_put_back_at_every_step(sf):
    """Every network call sees the clean context frames in front (exactly), with noise level 0 and n_ctx = f_p,
    and the new frames after them at one noise level; the action is the one given."""
    cfg, d, ctx, x0, tokens = setup(sf)
    spy = Oracle(d, x0, "x0")
    d.sample(spy, ctx, tokens, 2, generator=torch.Generator().manual_seed(0), steps=5)
    assert len(spy.calls) == 5, f"expected one network call per denoising step (5), got {len(spy.calls)}"
    for k, c in enumerate(spy.calls):
        assert c["n_ctx"] == 2 and c["x"].shape[1] == 4, f"call {k}: n_ctx {c['n_ctx']}, {c['x'].shape[1]} frames"
        assert torch.equal(c["x"][:, :2], ctx), f"call {k}: the context must be put back clean at every step"
        assert (c["t"][:, :2] == 0).all(), f"call {k}: the context is clean, so its noise level is 0, not " \
                                           f"{c['t'][0, :2].tolist()}"
        assert len(c["t"][0, 2:].unique()) == 1, f"call {k}: the new frames share one noise level"
        assert torch.equal(c["tokens"], tokens), f"call {k}: the network must see the action it was given"


def check_each_step_is_the_ddim_update_on_the_timestep_grid(sf):
    """t runs over round(linspace(T, 0, steps + 1)); x_T ~ N(0, I) is the generator's first draw (on the CPU); between
    calls x_s = sqrt(abar_s) x_0^ + sqrt(1 - abar_s) eps^ (eta = 0)."""
    cfg, d, ctx, x0, tokens = setup(sf)
    guess = x0 * 0.5  # not the truth: the update's algebra must hold for any prediction
    spy = Oracle(d, guess, "x0")
    d.sample(spy, ctx, tokens, 2, generator=torch.Generator().manual_seed(3), steps=4, eta=0.0)
    ts = grid(cfg, 4)
    seen = [int(c["t"][0, -1]) for c in spy.calls]
    assert seen == ts[:-1], f"noise levels {seen}: expected the grid {ts[:-1]} (T down to the last step before 0)"
    x_T = torch.randn((1, 2, 3, cfg.size, cfg.size), generator=torch.Generator().manual_seed(3))
    close(spy.calls[0]["x"][:, 2:], x_T, 1e-6, "x_T must be the generator's first draw (N(0, I), on the CPU)")
    for k in range(len(ts) - 2):
        t, s = ts[k], ts[k + 1]
        xt = spy.calls[k]["x"][:, 2:]
        eps = (xt - d.abar[t].sqrt() * guess) / (1 - d.abar[t]).sqrt()
        want = d.abar[s].sqrt() * guess + (1 - d.abar[s]).sqrt() * eps
        close(spy.calls[k + 1]["x"][:, 2:], want, 1e-4, f"x_{s} after the DDIM step from t = {t}")


def check_x0_is_clamped_for_pixels_and_eps_follows_the_clamped_x0(sf):
    """A prediction outside [-1, 1]: a pixel model's x_0^ is clamped to [-1, 1] and eps^ recomputed from the clamped
    x_0^ (so the step stays on the line from x_0^ to x_t); a latent model's x_0^ is not clamped (latents have no
    such range)."""
    cfg, d, ctx, x0, tokens = setup(sf)
    guess = x0 * 2.0  # beyond [-1, 1]
    spy = Oracle(d, guess, "x0")
    out = d.sample(spy, ctx, tokens, 2, generator=torch.Generator().manual_seed(3), steps=4, eta=0.0)
    close(out, guess.clamp(-1, 1), 1e-4, "pixel model: the sample with a prediction outside [-1, 1] (x_0^ clamped)")
    ts = grid(cfg, 4)
    x0c = guess.clamp(-1, 1)
    for k in range(len(ts) - 2):
        t, s = ts[k], ts[k + 1]
        xt = spy.calls[k]["x"][:, 2:]
        eps = (xt - d.abar[t].sqrt() * x0c) / (1 - d.abar[t]).sqrt()
        want = d.abar[s].sqrt() * x0c + (1 - d.abar[s]).sqrt() * eps
        close(spy.calls[k + 1]["x"][:, 2:], want, 1e-4,
              f"x_{s} from t = {t}: eps^ must be recomputed from the clamped x_0^")
    lcfg = latent_cfg(sf)
    ld = sf.Diffusion(lcfg)
    lguess = torch.randn((1, 2, lcfg.latent_channels, 4, 4), generator=torch.Generator().manual_seed(5)) * 2
    lctx = torch.randn((1, 1, lcfg.latent_channels, 4, 4), generator=torch.Generator().manual_seed(6))
    out = ld.sample(Oracle(ld, lguess, "x0"), lctx, tokens, 2, generator=torch.Generator().manual_seed(0))
    close(out, lguess, 1e-4, "latent model: latents are not in [-1, 1], so x_0^ must not be clamped")


def check_ancestral_steps_add_the_generators_noise(sf):
    """eta = 1: x_s = sqrt(abar_s) x_0^ + sqrt(1 - abar_s - sigma^2) eps^ + sigma z, with
    sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s) and z the generator's next draw after x_T
    (one per step that does not end at s = 0)."""
    cfg, d, ctx, x0, tokens = setup(sf)
    guess = x0 * 0.5
    spy = Oracle(d, guess, "x0")
    d.sample(spy, ctx, tokens, 2, generator=torch.Generator().manual_seed(4), steps=4, eta=1.0)
    g = torch.Generator().manual_seed(4)
    shape = (1, 2, 3, cfg.size, cfg.size)
    torch.randn(shape, generator=g)  # x_T
    ts = grid(cfg, 4)
    for k in range(len(ts) - 2):
        t, s = ts[k], ts[k + 1]
        ab_t, ab_s = d.abar[t], d.abar[s]
        xt = spy.calls[k]["x"][:, 2:]
        eps = (xt - ab_t.sqrt() * guess) / (1 - ab_t).sqrt()
        sigma = ((1 - ab_s) / (1 - ab_t)).sqrt() * (1 - ab_t / ab_s).sqrt()
        z = torch.randn(shape, generator=g)
        want = ab_s.sqrt() * guess + (1 - ab_s - sigma ** 2).clamp(min=0).sqrt() * eps + sigma * z
        close(spy.calls[k + 1]["x"][:, 2:], want, 1e-4, f"x_{s} after the ancestral (eta = 1) step from t = {t}")


def check_guidance_combines_the_conditional_and_the_unconditional_prediction(sf):
    """With guidance g != 1 the prediction is pred(null) + g (pred(a) - pred(null)): a network that predicts A for
    the action and B for the null action makes the sampler end at B + g (A - B)."""
    cfg, d, ctx, x0, tokens = setup(sf)
    null = sf.null_tokens(1, "cpu")
    A, B = x0 * 0.3, random_frames(cfg, 2, seed=9) * 0.3

    def two_minds(x, tok):
        is_null = (tok == null).all(-1).reshape(-1, 1, 1, 1, 1)
        out = torch.where(is_null, B, A)
        return torch.cat([torch.zeros_like(x[:, :x.shape[1] - 2]), out], 1)

    for g in (1.0, 2.0, 0.0):
        spy = Spy(two_minds)
        out = d.sample(spy, ctx, tokens, 2, generator=torch.Generator().manual_seed(0), guidance=g).detach()
        close(out, B + g * (A - B), 1e-4, f"the sample at guidance {g} (classifier-free guidance)")


def check_the_same_generator_gives_the_same_sample(sf):
    """With the video UNet: the same generator seed gives the same frames (eta 0 and 1), another seed other frames,
    and eta = 1 draws fresh noise (other frames than eta = 0 from the same seed); every draw comes from the generator."""
    cfg, d, ctx, x0, tokens = setup(sf)
    model = micro_model(sf, cfg)
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        model.out[-1].weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(4))

    def run(seed, eta, global_seed=0):
        torch.manual_seed(global_seed)  # the global RNG must not matter
        return d.sample(model, ctx, tokens, 2, generator=torch.Generator().manual_seed(seed), eta=eta)

    for eta in (0.0, 1.0):
        assert torch.equal(run(0, eta), run(0, eta, 1)), \
            f"eta = {eta}: the same generator seed gave other frames (a draw that is not from the generator?)"
        assert not torch.allclose(run(0, eta), run(1, eta)), f"eta = {eta}: another seed gave the same frames"
    assert not torch.allclose(run(0, 0.0), run(0, 1.0), atol=1e-4), "eta = 1 should add fresh noise at each step"


CHECKS = [check_an_oracle_network_makes_the_sampler_return_x0, check_the_clean_context_is_put_back_at_every_step,
          check_each_step_is_the_ddim_update_on_the_timestep_grid,
          check_x0_is_clamped_for_pixels_and_eps_follows_the_clamped_x0, check_ancestral_steps_add_the_generators_noise,
          check_guidance_combines_the_conditional_and_the_unconditional_prediction,
          check_the_same_generator_gives_the_same_sample]
