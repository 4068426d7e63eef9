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
