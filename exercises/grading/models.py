"""Stand-in networks of the grading checks: a spy that records what it sees, an oracle that knows the answer, and a
video UNet whose prediction leans on its context (so sampling from the wrong context shows in the frames)."""
import torch
import torch.nn as nn

from ..visible.common import micro_model, wake


class Spy(nn.Module):
    """Records every call; returns `output(x, tokens)` (default: zeros) plus a parameter, so a loss can backprop."""

    def __init__(self, output=None):
        super().__init__()
        self.calls, self.output = [], output
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, tokens, n_ctx):
        self.calls.append(dict(x=x.detach().clone(), t=t.clone(), tokens=tokens.clone(), n_ctx=n_ctx))
        return (torch.zeros_like(x) if self.output is None else self.output(x, tokens)) + self.w


class Oracle(nn.Module):
    """Knows the clean frames `x0`: returns their prediction (x0, eps or v) for whatever noisy frames it gets, and
    records every call."""

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


def context_net(sf, cfg, seed=0, lora=True, lean=0.8, scale=0.05):
    """A micro video UNet (cfg's; LoRA layers if `lora`) whose x_0 prediction is `lean` times its last context frame,
    shifted by one pixel per frame, plus the UNet's own output: the sample follows the context it is given, and what
    a spy sees is what the UNet sees. Records (tokens, n_ctx) of every call in `.seen`."""

    class ContextNet(sf.VideoUNet):
        def forward(self, x, t, tokens, n_ctx):
            self.seen.append((tokens.detach().clone(), n_ctx))
            out = super().forward(x, t, tokens, n_ctx)
            if n_ctx == 0:
                return out
            last = x[:, n_ctx - 1]
            moved = torch.stack([torch.roll(last, k + 1, dims=-1) for k in range(x.shape[1])], 1)
            return out + lean * moved

    torch.manual_seed(seed)
    model = ContextNet(cfg)
    model.seen = []
    if lora:
        sf.add_lora(model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, seed=seed)
    return wake(model.eval(), scale)


def micro_unet(sf, cfg, lora=True, scale=0.05):
    return wake(micro_model(sf, cfg, lora=lora), scale)
