"""Helpers the checks share: micro configs (the tests' micro_cfg), small models and inputs built from the graded
module, and a comparison that says what differs."""
import numpy as np
import torch


def micro_cfg(sf, **overrides):
    """A config small enough that a check runs in well under a second on one CPU thread."""
    base = dict(size=16, canvas=64, speed=2, chunk=2, channels=8, mults=(1, 2), attn_levels=(1,),
                temporal_attn_levels=(1,), heads=2, text_dim=16, timesteps=100, sample_steps=4, batch=4,
                warmup=5, max_steps=4, threads=1)
    return sf.Config(**{**base, **overrides})


def latent_cfg(sf, **overrides):
    """micro_cfg for a latent model: 16x16 frames, a frame autoencoder to 4 channels of 4x4 latents."""
    return micro_cfg(sf, **{**dict(latent_channels=4, ae_width=16, attn_levels=(0, 1), temporal_attn_levels=(0, 1)),
                            **overrides})


def micro_model(sf, cfg, seed=0, lora=False):
    """A freshly initialised VideoUNet (seeded), optionally carrying cfg's LoRA layers."""
    torch.manual_seed(seed)
    model = sf.VideoUNet(cfg)
    if lora:
        sf.add_lora(model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, seed=seed)
    return model.eval()


def wake(model, scale=0.05, seed=7):
    """A fresh UNet's output layers start at zero (its blocks start as identities): give them random weights so
    every layer, the adapted ones included, changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora" not in n and not n.startswith("autoencoder") and \
                    ("to_out" in n or "temporal_conv" in n or n.startswith("out")):
                p.normal_(0, scale, generator=g)
    return model


def random_frames(cfg, n, seed=0, B=1):
    """(B, n, 3, H, W) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand((B, n, 3, cfg.size, cfg.size), generator=g) * 2 - 1


def world_episode(sf, cfg, actions, seed=0):
    """Ground-truth frames (1 + I K, H, W, 3) uint8 of `actions` in world `seed`."""
    frames, _ = sf.data.render_episode(seed, list(actions), cfg.world())
    return frames


def same_state(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def close(a, b, atol=1e-5, what="values"):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)}, expected {tuple(b.shape)}"
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= atol, f"{what}: differ by up to {err:.3g} (allowed {atol:g})"


def rng(seed=0):
    return np.random.default_rng(seed)
