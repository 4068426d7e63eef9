"""hw4 (hidden): the hand-written LoRA for linear and conv layers (class LoRA): W' = W + (alpha / r) B A, B = 0 at init;
explicit merge / unmerge; reset."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..visible.common import close, micro_cfg, micro_model, random_frames


def layers():
    """(name, base layer, input) for a linear, a conv1d and a strided, padded conv2d."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    return [("linear", nn.Linear(12, 10), torch.randn(5, 12, generator=g)),
            ("conv1d", nn.Conv1d(8, 6, 3, padding=1), torch.randn(4, 8, 7, generator=g)),
            ("conv2d", nn.Conv2d(8, 6, 3, stride=2, padding=1), torch.randn(2, 8, 9, 9, generator=g))]


def adapted(sf, base, rank=4, alpha=8.0, seed=0, train=True):
    """A LoRA around `base` with B set to random values (as after some fast learning), if `train`."""
    lora = sf.LoRA(base, rank, alpha, generator=torch.Generator().manual_seed(seed))
    if train:
        with torch.no_grad():
            lora.lora_B.normal_(0, 0.3, generator=torch.Generator().manual_seed(seed + 1))
    return lora


def reference_output(base, x, W):
    """The base layer's op with weight W."""
    if isinstance(base, nn.Linear):
        return F.linear(x, W, base.bias)
    conv = F.conv1d if isinstance(base, nn.Conv1d) else F.conv2d
    return conv(x, W, base.bias, stride=base.stride, padding=base.padding, dilation=base.dilation)


def check_lora_at_init_equals_the_base_layer(sf):
    """Fresh adapter: B = 0, A random (nonzero), scale alpha / r, output equal to the base layer's, bit for bit."""
    for name, base, x in layers():
        want = base(x)
        lora = sf.LoRA(base, 4, 8.0, generator=torch.Generator().manual_seed(0))
        assert isinstance(lora.lora_A, nn.Parameter) and isinstance(lora.lora_B, nn.Parameter), \
            f"{name}: lora_A and lora_B must be nn.Parameters"
        assert lora.lora_B.shape == (base.weight.shape[0], 4), f"{name}: lora_B shape {tuple(lora.lora_B.shape)}"
        assert lora.lora_A.shape == (4, *base.weight.shape[1:]), f"{name}: lora_A shape {tuple(lora.lora_A.shape)}"
        assert (lora.lora_B == 0).all(), f"{name}: B must start at zero (the adapted layer equals the base at init)"
        assert lora.lora_A.abs().sum() > 0, f"{name}: A must start random, not zero (or nothing ever learns)"
        close(lora.scale, 2.0, 1e-12, f"{name}: the scale of the update is alpha / r")
        assert torch.equal(lora(x), want), f"{name}: the fresh adapter's output differs from the base layer's"


def check_adapted_output_is_the_low_rank_update(sf):
    """With B != 0: output = base op with W + (alpha / r) B A, and delta_weight() is that (alpha / r) B A."""
    for name, base, x in layers():
        lora = adapted(sf, base)
        delta = lora.scale * torch.einsum("or,r...->o...", lora.lora_B, lora.lora_A)
        close(lora.delta_weight(), delta, 1e-6, f"{name}: delta_weight()")
        close(lora(x), reference_output(base, x, base.weight + delta), 1e-5, f"{name}: adapted output")
        assert not torch.allclose(lora(x), base(x)), f"{name}: a nonzero B must change the output"


def check_merged_equals_unmerged(sf):
    """merge() folds the update into W: same output as the unmerged adapter; merging twice changes nothing more."""
    for name, base, x in layers():
        lora = adapted(sf, base)
        W = base.weight.detach().clone()
        y = lora(x).detach()
        lora.merge()
        assert lora.merged, f"{name}: merged flag not set"
        assert not torch.equal(base.weight, W), f"{name}: merge() must fold the update into the base weight"
        close(lora(x), y, 1e-5, f"{name}: merged output")
        lora.merge()
        close(lora(x), y, 1e-5, f"{name}: output after merging twice (merging an already merged adapter must do nothing)")


def check_unmerge_restores_the_slow_weight_bit_for_bit(sf):
    """merge then unmerge gives W back exactly (not W + d - d), three times over; unmerge when not merged does nothing."""
    for name, base, x in layers():
        lora = adapted(sf, base)
        W = base.weight.detach().clone()
        lora.unmerge()
        assert torch.equal(base.weight, W), f"{name}: unmerge() of an unmerged adapter changed W"
        for _ in range(3):
            lora.merge()
            lora.unmerge()
        assert not lora.merged, f"{name}: merged flag still set"
        assert torch.equal(base.weight, W), f"{name}: W after merge / unmerge differs by up to " \
                                            f"{(base.weight - W).abs().max().item():.3g}"
        close(lora(x), reference_output(base, x, W + lora.delta_weight()), 1e-5, f"{name}: output after unmerge")


def check_reset_restores_the_fresh_adapter(sf):
    """After A and B moved (and even while merged): reset() gives B = 0, A its initial draw, W unchanged, and the
    base layer's output."""
    for name, base, x in layers():
        W, want = base.weight.detach().clone(), base(x).detach()
        lora = sf.LoRA(base, 4, 8.0, generator=torch.Generator().manual_seed(0))
        A0 = lora.lora_A.detach().clone()
        with torch.no_grad():
            lora.lora_A.add_(0.1)
            lora.lora_B.add_(0.2)
        lora.merge()
        lora.reset()
        assert torch.equal(lora.lora_A, A0), f"{name}: A is not its initial draw after reset()"
        assert (lora.lora_B == 0).all(), f"{name}: B is not zero after reset()"
        assert not lora.merged and torch.equal(base.weight, W), f"{name}: reset() of a merged adapter must restore W"
        assert torch.equal(lora(x), want), f"{name}: output after reset() differs from the base layer's"


def check_only_lora_A_and_B_get_gradients(sf):
    """In the video UNet with LoRA layers and the slow weights frozen (set_trainable 'fast'), a backward pass gives
    gradients to lora_A / lora_B only; at init (B = 0) only B's gradient is nonzero."""
    cfg = micro_cfg(sf, lora_targets="all")
    model = micro_model(sf, cfg, lora=True)
    sf.set_trainable(model, "fast")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(n.endswith(("lora_A", "lora_B")) for n in names), f"trainable: {names[:4]}"
    x = random_frames(cfg, 3, seed=5)
    with torch.no_grad():  # nonzero output blocks, so the loss depends on the adapted layers
        for n, p in model.named_parameters():
            if "lora" not in n and ("to_out" in n or "temporal_conv" in n or n.startswith("out")):
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(6))
    out = model(x, torch.tensor([[0, 50, 50]]), sf.action_tokens(["go up"], "cpu"), 1)
    out.square().mean().backward()
    for n, p in model.named_parameters():
        if n.endswith(("lora_A", "lora_B")):
            continue
        assert p.grad is None, f"{n}: a slow weight got a gradient"
    grads_B = [p.grad for n, p in model.named_parameters() if n.endswith("lora_B")]
    grads_A = [p.grad for n, p in model.named_parameters() if n.endswith("lora_A")]
    assert all(g is not None for g in grads_A + grads_B), "every lora_A / lora_B should get a gradient"
    assert sum(g.abs().sum() for g in grads_B) > 0, "lora_B's gradient is zero"
    assert sum(g.abs().sum() for g in grads_A) == 0, "at B = 0 the gradient of A must be zero (dL/dA = B^T ...)"


def check_a_is_drawn_from_the_generator_in_the_linear_layers_range(sf):
    """A is drawn from the `generator` given (the same seed: the same A; another seed: another A; the global RNG
    neither used nor needed), uniform in +-1/sqrt(fan_in) (fan_in = in x kernel size), and A_init keeps that draw."""
    for name, base, x in layers():
        torch.manual_seed(0)
        a = sf.LoRA(base, 4, 8.0, generator=torch.Generator().manual_seed(3)).lora_A.detach()
        torch.manual_seed(1)
        b = sf.LoRA(base, 4, 8.0, generator=torch.Generator().manual_seed(3)).lora_A.detach()
        c = sf.LoRA(base, 4, 8.0, generator=torch.Generator().manual_seed(4)).lora_A.detach()
        assert torch.equal(a, b), f"{name}: the same generator seed gave another A (draw A from the generator given)"
        assert not torch.equal(a, c), f"{name}: another generator seed gave the same A"
        bound = base.weight[0].numel() ** -0.5
        assert a.abs().max() <= bound and a.abs().max() > 0.8 * bound, \
            f"{name}: A's values reach {a.abs().max():.3f}, expected uniform in +-1/sqrt(fan_in) = +-{bound:.3f}"


CHECKS = [check_lora_at_init_equals_the_base_layer, check_adapted_output_is_the_low_rank_update,
          check_merged_equals_unmerged, check_unmerge_restores_the_slow_weight_bit_for_bit,
          check_reset_restores_the_fresh_adapter, check_only_lora_A_and_B_get_gradients,
          check_a_is_drawn_from_the_generator_in_the_linear_layers_range]
