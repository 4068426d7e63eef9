"""hyperzzw: fast weights computed in the forward pass (HyperZ·Z·W, Zhang 2024, arXiv 2401.17948), to read beside
the fast weights written by gradient steps in sfvgen.py (TEMP-LoRA). A companion that imports nothing from it.

- SlowNet: the slow network, a coordinate-based implicit MLP with sine filters and multiplicative layers
  (MFN / MAGNet style) that maps a grid of coordinates in [-1, 1] to a hyper-kernel K.
- GlobalBranch: the fast weight W_hat = K_g ⊙ Z (hyper-kernel times the hidden activation, one per instance),
  applied to Z over the whole length as a long convolution done with the FFT.
- LocalBranch: depth-wise kernels of sizes 3 and 7 from their own slow networks, modulated by pooled Z.
- Block: branches concatenated, 1x1 bottleneck, affine-free standardization, GELU; no residual additions.
- slow_loss: MSE between the global hyper-kernels of successive blocks; it reaches only the slow networks.
- Terminator: a tiny 1D classifier; `spikes` is a benchmark that needs no download.

Run: `python -m companion.hyperzzw` trains the full model and one without the global branch on the spike task and
prints both test accuracies (about 3 minutes on one CPU thread); `python -m companion.hyperzzw --quick` is a smoke run.
Ours, not part of SlowFast-VGen: a companion to read the paper's fast weights (section 3.2) against.

Tensor-shape legend: B batch, C channels, L sequence length, k local kernel size, n coordinates, H slow width.
"""
import argparse
import inspect
import math
import re
import time
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from tqdm import tqdm


# ============================================================================= config
@dataclass
class Config:
    # --- model
    channels: int = 16                 # C: width of every block
    blocks: int = 2                    # Terminator blocks, stacked without residual additions
    use_global: bool = True            # the global HyperZ·Z·W branch; off = the local-only baseline
    circular: bool = True              # global long conv wraps around the sequence; off = zero padding to 2L
    local_sizes: tuple = (3, 7)        # k of the local branches (depth-wise hyper-kernels)
    local_pool: str = "window"         # Z pooled over each kernel's window (stays local) or "global" (mean over L)
    norm: str = "local"                # zero mean by a moving mean (local) or by the mean over L: "length", "instance"
    norm_window: int = 15              # positions of the circular moving mean of norm "local"
    slow_hidden: int = 32              # H: width of every slow network
    slow_layers: int = 3               # multiplicative sine-filter layers per slow network
    omega: float = 8.0                 # frequency scale of the global slow networks' sine filters
    slow_weight: float = 0.01          # lambda: weight of the slow neural loss beside the cross-entropy
    # --- data: the spike task
    length: int = 256                  # L of every sequence
    noise: float = 0.05                # std of the Gaussian noise the two spikes sit in
    min_gap: int = 64                  # the two spikes lie at least this many positions apart (circularly)
    # --- training
    steps: int = 1500                  # Adam steps per model
    batch: int = 64                    # sequences per step, fresh ones every step
    lr: float = 1e-2                   # Adam learning rate, cosine decay to zero
    test_size: int = 2048              # held-out sequences for the accuracy
    seed: int = 0                      # seeds the weights and the data streams
    threads: int = 1                   # CPU threads for torch (0 = torch's default)


CHOICES = {"local_pool": ("window", "global"), "norm": ("local", "length", "instance")}


def long_conv(w, z, circular=True):
    """y[t] = sum_s w[s] z[s + t]: a conv1d of z with a kernel w as long as the sequence; (B, C, L) each.
    circular: s + t wraps mod L; else z = 0 beyond L. The FFT makes it O(L log L) instead of O(L^2)."""
    L = z.shape[-1]
    n = L if circular else 2 * L  # zero padding to 2L turns the FFT's circular correlation into a linear one
    y = torch.fft.irfft(torch.fft.rfft(w, n=n).conj() * torch.fft.rfft(z, n=n), n=n)  # y = IFFT(conj(FFT w) FFT z)
    return y[..., :L]


def long_conv_naive(w, z, circular=True):
    """The same sum as a loop over lags t, O(L^2): the reference the FFT version is tested against."""
    L = z.shape[-1]
    zz = torch.cat([z, z if circular else torch.zeros_like(z)], dim=-1)  # zz[s + t] for every s, t < L
    return torch.stack([(w * zz[..., t:t + L]).sum(-1) for t in range(L)], dim=-1)


# ============================================================================= slow networks
class SlowNet(nn.Module):
    """Coordinates c in [-1, 1] -> hyper-kernel K (out, n). A multiplicative filter network (MFN, MAGNet):
    h_1 = g_1(c), h_{i+1} = (A_i h_i + b_i) ⊙ g_{i+1}(c), K = A_o h_last + b_o, with g_i(c) = sin(ω_i c + φ_i)."""

    def __init__(self, out, hidden, layers, omega, scale=1.0):
        super().__init__()
        self.filters = nn.ModuleList(nn.Linear(1, hidden) for _ in range(layers))      # ω_i, φ_i of each filter
        self.linears = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.out = nn.Linear(hidden, out)
        for f in self.filters:  # a product of sines adds their frequencies: split omega over the layers
            nn.init.uniform_(f.weight, -omega / layers, omega / layers)
            nn.init.uniform_(f.bias, -math.pi, math.pi)
        with torch.no_grad():
            self.out.weight.mul_(scale)
            self.out.bias.zero_()

    def forward(self, n):
        w = self.out.weight
        c = torch.linspace(-1, 1, n, device=w.device, dtype=w.dtype)[:, None]  # (n, 1) coordinate grid
        h = torch.sin(self.filters[0](c))                                     # h_1 = g_1(c): (n, H)
        for lin, filt in zip(self.linears, self.filters[1:]):
            h = lin(h) * torch.sin(filt(c))                                    # h_{i+1} = (A h_i + b) ⊙ g_{i+1}(c)
        return self.out(h).T                                                   # K = A_o h + b_o: (out, n)


# ============================================================================= the fast network
class GlobalBranch(nn.Module):
    """HyperZ·Z·W over the full length: fast weight W_hat = K_g ⊙ Z, then y[t] = sum_s W_hat[s] Z[s + t].
    Lag t = 0 is the paper's dot product <W_hat, Z>; the other lags slide Z along W_hat (README: the reading)."""

    def __init__(self, cfg):
        super().__init__()
        self.circular = cfg.circular
        # y sums L products, so K_g starts at 1/L scale (chosen; the standardization after the block rescales anyway)
        self.slow = SlowNet(cfg.channels, cfg.slow_hidden, cfg.slow_layers, cfg.omega, scale=1 / cfg.length)

    def kernel(self, L):
        return self.slow(L)                                                    # K_g: (C, L), the same for every input

    def forward(self, z):                                                      # z: (B, C, L)
        w_hat = self.kernel(z.shape[-1])[None] * z                             # W_hat = K_g ⊙ Z: (B, C, L)
        return long_conv(w_hat, z, self.circular)                              # y = W_hat ⋆ Z: (B, C, L)


class LocalBranch(nn.Module):
    """Depth-wise conv of Z with the fast weight W_hat = K_l ⊙ pool(Z): a k-tap kernel per channel from a slow
    network, scaled by Z pooled over the kernel's own window ("window", the branch stays local) or over the
    whole sequence ("global": one kernel per instance, itself a global channel, see README)."""

    def __init__(self, cfg, k):
        super().__init__()
        if k % 2 == 0:
            raise ValueError(f"local kernel sizes must be odd (centred on their position), got {k}")
        self.k, self.pool = k, cfg.local_pool
        # a k-tap kernel needs only low frequencies over its k coordinates: omega 2 (chosen)
        self.slow = SlowNet(cfg.channels, cfg.slow_hidden, cfg.slow_layers, omega=2.0, scale=1 / math.sqrt(k))

    def kernel(self):
        return self.slow(self.k)                                               # K_l: (C, k), the same for every input

    def forward(self, z):                                                      # z: (B, C, L)
        B, C, L = z.shape
        k_l, pad = self.kernel(), self.k // 2
        if self.pool == "window":
            # y[t] = sum_j (K_l[j] P[t]) Z[t + j - k//2], P[t] = mean of Z over the same k positions
            p = F.avg_pool1d(z, self.k, stride=1, padding=pad, count_include_pad=False)  # P: (B, C, L)
            return p * F.conv1d(z, k_l[:, None], padding=pad, groups=C)
        w_hat = k_l[None] * z.mean(-1, keepdim=True)                           # W_hat = K_l ⊙ mean_L(Z): (B, C, k)
        # one group per (instance, channel): every instance is convolved with its own fast weight
        y = F.conv1d(rearrange(z, "b c l -> 1 (b c) l"), rearrange(w_hat, "b c k -> (b c) 1 k"),
                     padding=pad, groups=B * C)
        return rearrange(y, "1 (b c) l -> b c l", b=B)                          # (B, C, L)


class Standardize(nn.Module):
    """Affine-free standardization: features with zero mean per instance and channel, no learned scale or shift.
    "local": subtract a circular moving mean over `window` positions (the sum over L is unchanged, so the mean over
    L becomes 0, yet every output sees only its window) and divide by the std over the batch (running estimate at
    evaluation); "length": subtract the mean over L, same divisor; "instance": (u - mean_L u) / std_L u."""

    def __init__(self, channels, norm, window, momentum=0.1, eps=1e-5):
        super().__init__()
        self.norm, self.window, self.momentum, self.eps = norm, window, momentum, eps
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, u):                                                      # u: (B, C, L)
        if self.norm == "local":
            w = self.window
            u = u - F.avg_pool1d(F.pad(u, (w // 2, (w - 1) // 2), mode="circular"), w, stride=1)  # u - movmean_w(u)
        else:
            u = u - u.mean(-1, keepdim=True)                                   # u - mean_L(u)
        if self.norm == "instance":
            var = u.pow(2).mean(-1, keepdim=True)                              # (B, C, 1)
        elif self.training:
            var = u.pow(2).mean((0, 2))[None, :, None]                         # (1, C, 1)
            with torch.no_grad():
                self.running_var.lerp_(var.flatten(), self.momentum)
        else:
            var = self.running_var[None, :, None]
        return u / torch.sqrt(var + self.eps)                                  # (u - mean) / std


class Block(nn.Module):
    """Multi-branch HyperZ·Z·W, 1x1 bottleneck, standardization, GELU: z' = GELU(std(A [y_1; ...; y_m] + b)).
    No residual addition: z' replaces z."""

    def __init__(self, cfg):
        super().__init__()
        self.locals = nn.ModuleList(LocalBranch(cfg, k) for k in cfg.local_sizes)
        self.glob = GlobalBranch(cfg) if cfg.use_global else None
        n_branches = len(cfg.local_sizes) + (self.glob is not None)
        self.bottleneck = nn.Conv1d(n_branches * cfg.channels, cfg.channels, 1)  # compresses the concatenation
        self.standardize = Standardize(cfg.channels, cfg.norm, cfg.norm_window)

    def forward(self, z):                                                      # z: (B, C, L)
        branches = [local(z) for local in self.locals]
        if self.glob is not None:
            branches.append(self.glob(z))
        u = self.bottleneck(torch.cat(branches, dim=1))                        # (B, m C, L) -> (B, C, L)
        return F.gelu(self.standardize(u))


class Terminator(nn.Module):
    """1D classifier: 1x1 stem (1 -> C), blocks, mean over L, linear head. x: (B, L) -> logits (B, 2)."""

    def __init__(self, cfg):
        super().__init__()
        self.stem = nn.Conv1d(1, cfg.channels, 1)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.blocks))
        self.head = nn.Linear(cfg.channels, 2)

    def forward(self, x):
        z = self.stem(x[:, None])                                              # (B, L) -> (B, C, L)
        for block in self.blocks:
            z = block(z)
        return self.head(z.mean(-1))                                           # (B, C) -> (B, 2)

    def slow_parameters(self):
        return [p for name, p in self.named_parameters() if ".slow." in name]


def slow_loss(model, L):
    """Slow neural loss (the paper's local feedback error): mean_i MSE(K_g^(i), K_g^(i+1)) over successive blocks.
    Hyper-kernels depend on the slow networks alone, so its gradient reaches nothing else. 0 without global branch."""
    kernels = [block.glob.kernel(L) for block in model.blocks if block.glob is not None]
    if len(kernels) < 2:
        return torch.zeros(())
    return torch.stack([F.mse_loss(a, b) for a, b in zip(kernels, kernels[1:])]).mean()


# ============================================================================= the spike task
def spikes(n, cfg, gen):
    """n noise sequences of length L, each with two spikes of +-1 at least min_gap apart (circularly); label 1 iff
    their product is positive. Returns x (n, L) float and y (n,) long."""
    L = cfg.length
    x = cfg.noise * torch.randn(n, L, generator=gen)
    p1 = torch.randint(0, L, (n,), generator=gen)
    p2 = (p1 + torch.randint(cfg.min_gap, L - cfg.min_gap + 1, (n,), generator=gen)) % L  # both gaps >= min_gap
    s = torch.randint(0, 2, (n, 2), generator=gen) * 2 - 1                                # signs s1, s2 in {-1, +1}
    rows = torch.arange(n)
    x[rows, p1] += s[:, 0]
    x[rows, p2] += s[:, 1]
    return x, (s[:, 0] * s[:, 1] > 0).long()                                              # y = [s1 s2 > 0]


@torch.no_grad()
def accuracy(model, x, y, batch=512):
    model.eval()
    hits = sum((model(xb).argmax(-1) == yb).sum().item() for xb, yb in zip(x.split(batch), y.split(batch)))
    model.train()
    return hits / len(y)


def train(cfg, quiet=False):
    """Train one Terminator on fresh spike batches; return (model, test accuracy). Deterministic on CPU."""
    torch.manual_seed(cfg.seed)
    model = Terminator(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    data_gen = torch.Generator().manual_seed(cfg.seed + 1)                     # the training stream
    x_test, y_test = spikes(cfg.test_size, cfg, torch.Generator().manual_seed(cfg.seed + 10_000))
    name = "full" if cfg.use_global else "local only"
    bar = tqdm(range(cfg.steps), disable=quiet, desc=f"{name} ({sum(p.numel() for p in model.parameters())} params)")
    for step in bar:
        x, y = spikes(cfg.batch, cfg, data_gen)
        ce = F.cross_entropy(model(x), y)
        loss = ce + cfg.slow_weight * slow_loss(model, cfg.length)             # L = CE + lambda L_slow
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(ce=f"{ce.item():.3f}")
    return model, accuracy(model, x_test, y_test)


# ============================================================================= command line
def parse_args(argv=None):
    """One --flag per Config field (its trailing comment is the help), plus --only and --quick. Returns (cfg, only)."""
    helps = dict(re.findall(r"^\s+(\w+): [^#\n]+#\s*(.+)$", inspect.getsource(Config), flags=re.M))

    def on_off(s):
        if s.lower() not in ("on", "off"):
            raise argparse.ArgumentTypeError(f"expected on or off, got {s!r}")
        return s.lower() == "on"

    def ints(s):
        return tuple(int(v) for v in s.split(","))

    p = argparse.ArgumentParser(prog="python -m companion.hyperzzw",
                                description="Train a Terminator with and without its global HyperZ·Z·W branch on "
                                "the spike task and print both test accuracies.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in fields(Config):
        if f.name == "use_global":  # set by --only: the benchmark trains both models
            continue
        d = f.default  # string defaults go through `type` like a typed value, so --help shows what one would type
        kind, shown = (on_off, "on" if d else "off") if isinstance(d, bool) else \
            (ints, ",".join(map(str, d))) if isinstance(d, tuple) else (type(d), d)
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=shown, choices=CHOICES.get(f.name),
                       help=helps[f.name])
    p.add_argument("--only", choices=("both", "full", "local"), default="both", help="which models to train")
    p.add_argument("--quick", action="store_true", help="smoke run: 30 steps and 256 test sequences per model")
    args = p.parse_args(argv)
    cfg = Config(**{f.name: getattr(args, f.name) for f in fields(Config) if f.name != "use_global"})
    if args.quick:
        cfg = Config(**{**asdict(cfg), "steps": 30, "test_size": 256})
    return cfg, args.only


def main(cfg, only="both", quiet=False):
    """Train the full model and the local-only one (or `only` one of them: "full", "local") from the same seed and
    data stream; return their test accuracies by name."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    results = {}
    for name, use_global in (("full", True), ("local", False)):
        if only not in ("both", name):
            continue
        t0 = time.time()
        _, results[name] = train(Config(**{**asdict(cfg), "use_global": use_global}), quiet=quiet)
        if not quiet:
            label = "full (global + local)" if use_global else "local only (no global)"
            print(f"{label:24s} test accuracy {results[name]:.1%}  ({time.time() - t0:.0f} s)")
    return results


if __name__ == "__main__":
    main(*parse_args())
