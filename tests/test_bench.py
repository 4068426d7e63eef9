"""lab/bench.py: the FLOP count it divides by, and the parameter matching of the peer."""
import pytest
import torch
import torch.nn.functional as F

import sfvgen
from lab import bench


def test_attention_flops_counted_on_cpu():
    # on CPU, F.scaled_dot_product_attention runs a kernel FlopCounterMode does not know (it counts 0);
    # bench's formula must give what the same attention written as explicit matmuls counts
    q, k, v = (torch.randn(2, 3, 16, 8, requires_grad=True) for _ in range(3))
    fused = bench.count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    explicit = bench.count_flops(lambda: (torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, -1) @ v).sum().backward())
    assert fused == explicit > 0


@pytest.mark.parametrize("name", list(sfvgen.PRESETS))
def test_peer_width_matches_our_parameter_count(name):
    peer, _ = bench.import_peer()
    if peer is None:
        pytest.skip(f"video_diffusion_pytorch not importable; {bench.PEER_INSTALL}")
    with torch.device("meta"):
        ours = sum(p.numel() for p in sfvgen.VideoUNet(sfvgen.preset(name)).parameters())
    dim, n, err = bench.match_width(lambda d: bench.peer_param_count(peer, d), ours)
    assert dim % 4 == 0 and n == bench.peer_param_count(peer, dim)
    assert err <= 0.10, f"{name}: peer dim={dim} has {n} parameters, ours {ours}"


def test_a_latent_preset_is_timed_on_its_latents():
    # the bench must time what train.py trains: a latent preset's UNet on C x H/4 x W/4 latents, not on pixels
    cfg = sfvgen.preset("tiny-latent")
    ae = sfvgen.FrameAutoencoder(cfg.latent_channels, cfg.ae_width)
    ctx, tok, tgt = bench.clip_batch(cfg, 2, torch.device("cpu"), autoencoder=ae)
    assert ctx.shape == tgt.shape == (2, cfg.chunk, cfg.latent_channels, cfg.size // 4, cfg.size // 4)
    pixels, _, _ = bench.clip_batch(sfvgen.preset("tiny"), 2, torch.device("cpu"))  # the same clip, in pixels
    assert torch.allclose(ctx, ae.encode(pixels.flatten(0, 1)).view_as(ctx))
    assert "8x8x8 latents" in bench.clip_shape(cfg, 2) and "3x32x32" in bench.clip_shape(sfvgen.preset("tiny"), 2)
