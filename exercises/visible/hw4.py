"""hw4 (visible): a fresh LoRA has the promised shapes and equals its base layer; merging does not change the output."""
import torch
import torch.nn as nn

from .common import close


def layers():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    return [("linear", nn.Linear(12, 10), torch.randn(5, 12, generator=g)),
            ("conv1d", nn.Conv1d(8, 6, 3, padding=1), torch.randn(4, 8, 7, generator=g)),
            ("conv2d", nn.Conv2d(8, 6, 3, stride=2, padding=1), torch.randn(2, 8, 9, 9, generator=g))]


def check_a_fresh_lora_equals_its_base_layer(sf):
    """lora_A (r, in, *kernel) and lora_B (out, r) are parameters; at init the adapted layer gives the base layer's
    output exactly (linear, conv1d, conv2d)."""
    for name, base, x in layers():
        lora = sf.LoRA(base, 4, 8.0, generator=torch.Generator().manual_seed(0))
        assert isinstance(lora.lora_A, nn.Parameter) and isinstance(lora.lora_B, nn.Parameter), \
            f"{name}: lora_A and lora_B must be nn.Parameters"
        assert lora.lora_A.shape == (4, *base.weight.shape[1:]), f"{name}: lora_A shape {tuple(lora.lora_A.shape)}"
        assert lora.lora_B.shape == (base.weight.shape[0], 4), f"{name}: lora_B shape {tuple(lora.lora_B.shape)}"
        assert torch.equal(lora(x), base(x)), f"{name}: a fresh adapter must give the base layer's output"
        assert lora.delta_weight().shape == base.weight.shape, f"{name}: delta_weight() must be shaped like W"


def check_merging_does_not_change_the_output(sf):
    """With some B (as after fast learning): the merged layer gives the unmerged layer's output; unmerging gives W back."""
    for name, base, x in layers():
        lora = sf.LoRA(base, 4, 8.0, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            lora.lora_B.normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
        W, y = base.weight.detach().clone(), lora(x).detach()
        lora.merge()
        close(lora(x), y, 1e-5, f"{name}: the merged output")
        lora.unmerge()
        assert torch.equal(base.weight, W), f"{name}: unmerge() did not give W back exactly"


CHECKS = [check_a_fresh_lora_equals_its_base_layer, check_merging_does_not_change_the_output]
