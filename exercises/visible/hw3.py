"""hw3 (visible): the sampler returns the new frames only, in the model's space, reproducibly."""
import torch

from .common import latent_cfg, micro_cfg, micro_model, random_frames, wake


def check_the_sampler_returns_the_new_frames(sf):
    """sample(model, ctx, tokens, n_frames) -> (B, n_frames, C, H, W), finite, the context left as it was; for a latent
    model C, H, W are the latents'."""
    for cfg in (micro_cfg(sf), latent_cfg(sf)):
        model, d = wake(micro_model(sf, cfg)), sf.Diffusion(cfg)
        C, S = (cfg.latent_channels, cfg.size // 4) if cfg.latent_channels else (3, cfg.size)
        ctx = torch.randn((2, 1, C, S, S), generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
        before = ctx.clone()
        out = d.sample(model, ctx, sf.action_tokens(["go up", "go down"], "cpu"), 3,
                       generator=torch.Generator().manual_seed(0))
        what = "latent" if cfg.latent_channels else "pixel"
        assert out.shape == (2, 3, C, S, S), f"{what} model: shape {tuple(out.shape)}, expected {(2, 3, C, S, S)}"
        assert torch.isfinite(out).all(), f"{what} model: the sample is not finite"
        assert torch.equal(ctx, before), f"{what} model: sample() changed the context tensor it was given"


def check_the_same_generator_gives_the_same_frames(sf):
    """The same generator seed gives the same frames (eta 0 and 1); another seed other frames."""
    cfg = micro_cfg(sf)
    model, d = wake(micro_model(sf, cfg), 0.3), sf.Diffusion(cfg)
    ctx, tokens = random_frames(cfg, 1), sf.action_tokens(["go right"], "cpu")
    run = lambda seed, eta: d.sample(model, ctx, tokens, 2, generator=torch.Generator().manual_seed(seed), eta=eta)
    for eta in (0.0, 1.0):
        assert torch.equal(run(0, eta), run(0, eta)), f"eta = {eta}: the same seed gave other frames"
        assert not torch.equal(run(0, eta), run(1, eta)), f"eta = {eta}: another seed gave the same frames"


CHECKS = [check_the_sampler_returns_the_new_frames, check_the_same_generator_gives_the_same_frames]
