"""Helpers shared by the checks: a micro config (the tests' micro_cfg) and small models built from the graded module."""
import numpy as np
import torch


def micro_cfg(sf, **overrides):
    """A config small enough that a check runs in well under a second on one CPU thread."""
    base = dict(size=16, canvas=64, speed=2, chunk=2, channels=8, mults=(1, 2), attn_levels=(1,),
                temporal_attn_levels=(1,), heads=2, text_dim=16, timesteps=100, sample_steps=4, batch=4,
                warmup=5, max_steps=4, threads=1)
    return sf.Config(**{**base, **overrides})


def micro_model(sf, cfg, seed=0, lora=False):
    """A freshly initialised VideoUNet (seeded), optionally carrying cfg's LoRA layers."""
    torch.manual_seed(seed)
    model = sf.VideoUNet(cfg)
    if lora:
        sf.add_lora(model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, seed=seed)
    return model.eval()


def random_frames(cfg, n, seed=0):
    """(1, n, 3, H, W) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand((1, n, 3, cfg.size, cfg.size), generator=g) * 2 - 1


def world_episode(sf, cfg, actions, seed=0):
    """Ground-truth frames (1 + I K, H, W, 3) uint8 of `actions` in world `seed`."""
    frames, _ = sf.data.render_episode(seed, list(actions), cfg.world())
    return frames


def same_state(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def close(a, b, atol=1e-5, what="values"):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= atol, f"{what}: differ by up to {err:.3g} (allowed {atol:g})"


def rng(seed=0):
    return np.random.default_rng(seed)
