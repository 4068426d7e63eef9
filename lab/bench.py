"""Speed benchmark: how fast sfvgen trains, samples and fast-learns on this machine.

Ours: the paper reports no timings; this is the cost side of Algorithm 1a (fast learning's overhead per
generated frame) and of slow learning.

For each preset, at the preset's clip shape (batch --batch, T = 2K frames: K context frames + K targets,
H = W = cfg.size; a latent preset's clip is its C x H/4 x W/4 latents), on the current device, it measures:

  1. a slow-learning training step (forward + masked loss + backward + grad clip + AdamW step, as in
     train.py): the median of --steps timed steps after --warmup untimed ones;
  2. sampling time per generated frame: Diffusion.sample on batch 1 with one chunk as context
     (cfg.sample_steps denoising steps) divided by K; and the same with fast learning, i.e. plus one
     TEMP-LoRA update (sfvgen.fast_update, cfg.fast_steps Adam steps on a 2K-frame clip with the null
     action) per chunk on a LoRA copy of the model; both, and the overhead of fast learning in percent;
  3. the time of one fast-learning update alone;
  4. peak memory: CUDA max_memory_allocated, or the process peak RSS (ru_maxrss) on CPU;
  5. achieved FLOP/s of the training step (FLOPs of one step counted once with FlopCounterMode, divided by
     the median step time), as a fraction of a matmul peak measured in the same run (fp32 2048^3 on CPU,
     bf16 8192^3 on CUDA);
  6. the parameter count.

With --peer it also times a training step of lucidrains' video-diffusion-pytorch Unet3D (a plain
epsilon-MSE step, AdamW) on the same clip shape, at the width whose parameter count is closest to ours.

    python -m lab.bench                              # tiny preset, current device
    python -m lab.bench --presets tiny,small,gpu --json out.json
    export PYTHONPATH=$(bash ../shared/peer_vdp.sh)  # once: install the peer (CPU torch, no torchvision)
    python -m lab.bench --peer                       # ... and compare with it
    python -m lab.bench --quick --peer               # smoke run: fewer steps

Prints one table row per measured thing and writes everything to --json (atomically).
"""
import argparse
import copy
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch.utils.flop_counter import FlopCounterMode

import cli
import data
import sfvgen
import video
from sfvgen import Diffusion, VideoUNet, to_model

PEER_INSTALL = "export PYTHONPATH=$(bash ../shared/peer_vdp.sh)"
PEER_MULTS = (1, 2, 4)


# ============================================================================= timing, memory, FLOPs
def sync(device):
    """Wait for queued GPU work, so that a timer measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def clock(device):
    sync(device)
    return time.perf_counter()


def median_time(fn, device, n, warmup=0):
    """Median seconds of n calls of fn after `warmup` untimed calls; returns (median, all times)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t0 = clock(device)
        fn()
        times.append(clock(device) - t0)
    return statistics.median(times), times


class PeakMemory:
    """Peak memory over a span of the run: the CUDA allocator's peak, or the process peak RSS elsewhere.

    ru_maxrss is a whole-process high-water mark; on Linux writing 5 to /proc/self/clear_refs resets it to
    the current RSS, which makes it a per-span peak. Where that is refused it stays a whole-run peak, and
    `what` says so. RSS includes the interpreter and torch itself (a few hundred MB)."""

    def __init__(self, device):
        self.device, self.resets = device, device.type == "cuda"
        if device.type == "cuda":
            self.what = "CUDA max_memory_allocated"
        else:
            self.resets = self._clear_refs()
            self.what = "process peak RSS (ru_maxrss)" + ("" if self.resets else ", whole run so far")

    @staticmethod
    def _clear_refs():
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def reset(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.resets:
            self._clear_refs()

    def read(self):
        """Peak bytes since the last reset."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        kib_or_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kib_or_bytes if sys.platform == "darwin" else kib_or_bytes * 1024  # macOS reports bytes, Linux KiB


def _cpu_sdpa_flops(q, k, v, *args, out_shape=None, **kwargs):
    # q (B, h, S, d), k (B, h, L, d), v (B, h, L, dv): q k^T and softmax(.) v, 2 FLOPs per multiply-add
    return 2 * int(np.prod(q[:-1])) * k[-2] * (q[-1] + v[-1])


def _cpu_sdpa_backward_flops(grad_out, q, k, v, *args, out_shape=None, **kwargs):
    # grad of v, of the scores, of q and of k: twice the forward (recomputing the scores is not counted,
    # as torch counts the CUDA kernels' backward)
    return 2 * _cpu_sdpa_flops(q, k, v)


def _flop_mapping():
    """FlopCounterMode counts the CUDA attention kernels but not the CPU flash kernel that
    F.scaled_dot_product_attention runs on CPU: without these, attention would count as 0 FLOPs on CPU."""
    aten, out = torch.ops.aten, {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        out[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        out[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_sdpa_backward_flops
    return out


def count_flops(fn):
    """FLOPs of one call of fn (matmuls, convolutions, attention; elementwise work is not counted)."""
    with FlopCounterMode(display=False, custom_mapping=_flop_mapping()) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(device, quick):
    """A dense matmul's FLOP/s: the yardstick for the model's achieved FLOP/s in the same run (same
    machine load, same threads). fp32 on CPU, bf16 on CUDA (what its tensor cores are rated for)."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    t, _ = median_time(lambda: a @ b, device, n=3 if quick else 7, warmup=1 if quick else 2)
    return 2 * n ** 3 / t, f"{str(dtype).removeprefix('torch.')} {n}^3 matmul"


# ============================================================================= our model
def clip_batch(cfg, batch, device, seed=0, autoencoder=None):
    """A training batch with exactly K context frames and K targets (T = 2K), from the action world, in model
    space: a latent model passes its autoencoder (the bench's is untrained: the UNet's cost does not depend on
    what the latents show)."""
    rng = np.random.default_rng(seed)
    ctx, tok, tgt = data.sample_batch(rng, cfg.train_seeds, batch, cfg.world(), n_ctx=cfg.chunk)
    return to_model(ctx, device, autoencoder), torch.as_tensor(tok, device=device), to_model(tgt, device, autoencoder)


def clip_shape(cfg, batch):
    """The clip as the UNet sees it, for the table: pixels, or a latent preset's latents."""
    C, h = (cfg.latent_channels, cfg.size // 4) if cfg.latent_channels else (3, cfg.size)
    return f"B={batch}, T={2 * cfg.chunk}, {C}x{h}x{h}" + (" latents" if cfg.latent_channels else "")


def bench_ours(cfg, device, args, mem, row):
    """Measurements 1-6 for one preset; returns a dict for the JSON (and the clip, for the peer)."""
    torch.manual_seed(0)
    model = VideoUNet(cfg).to(device)
    diffusion = Diffusion(cfg, device)
    phi = sfvgen.slow_parameters(model)  # as train.py: a latent model's autoencoder is frozen
    n_params = sum(p.numel() for p in phi)
    fused = device.type == "cuda"  # the optimizer train.py uses
    opt = torch.optim.AdamW(phi, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=fused, foreach=None if fused else True)
    use_bf16 = {"preset": cfg.bf16, "on": True, "off": False}[args.bf16] and device.type == "cuda"
    net = torch.compile(model) if args.compile and device.type == "cuda" else model  # as train.py
    ctx, tok, tgt = clip_batch(cfg, args.batch, device, autoencoder=model.autoencoder)
    gen = torch.Generator().manual_seed(0)
    mem.reset()

    def train_step(net=net, bf16=use_bf16):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = diffusion.loss(net, ctx, tgt, tok, p_uncond=cfg.p_uncond, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(phi, cfg.grad_clip)
        opt.step()

    # 1 + 5. the first warmup step is also the one whose FLOPs are counted (the counter slows it down);
    # the FLOPs are counted on the eager fp32 model (the same maths; the fused bf16 attention kernels do not
    # run under the counter), compiled and bf16 code is only timed
    model.train()
    flops = count_flops(lambda: train_step(model, False))
    step_s, step_all = median_time(train_step, device, n=args.steps, warmup=args.warmup - 1 + 2 * (net is not model))
    clip = clip_shape(cfg, args.batch)
    row("parameters", f"{n_params / 1e6:.2f} M", "")
    row("train step", f"{step_s * 1e3:.0f} ms", f"{clip}, median of {args.steps}" + (", bf16 autocast" if use_bf16 else "")
        + (", torch.compile" if net is not model else ""))

    # 2 + 3. sampling one chunk with the previous chunk as context; batch 1 as in generate_long
    opt.zero_grad(set_to_none=True)  # so the copy below carries no gradients
    model.eval()
    ctx1, tok1 = ctx[:1], tok[:1]
    K = cfg.chunk
    # --compile: sampling through CUDA graphs (batch-1 denoising steps are kernel-launch bound)
    sampler = (lambda m: torch.compile(m, mode="reduce-overhead")) if args.compile and device.type == "cuda" else (lambda m: m)
    sample_net = sampler(model)
    sample_s, _ = median_time(lambda: diffusion.sample(sample_net, ctx1, tok1, K, generator=gen), device,
                              n=args.steps, warmup=args.warmup + 2 * args.compile)
    fast_model = copy.deepcopy(model)
    sfvgen.add_lora(fast_model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha)
    fast_sample_net = sampler(fast_model)
    n_lora = sum(p.numel() for p in sfvgen.lora_parameters(fast_model))
    fast_opt = torch.optim.Adam(sfvgen.lora_parameters(fast_model), lr=cfg.fast_lr)  # as in generate_long
    null = sfvgen.null_tokens(1, device)
    lora_sample, update = [], []
    for i in range(args.warmup + 2 * args.compile + args.steps):  # the chunk loop of generate_long with the local fast rule
        t0 = clock(device)
        fast_model.eval()
        sfvgen.merge_lora(fast_model)  # as generate_long: sample with W + (alpha / r) B A folded in
        y = diffusion.sample(fast_sample_net, ctx1, tok1, K, generator=gen)
        sfvgen.unmerge_lora(fast_model)
        t1 = clock(device)
        sfvgen.fast_update(fast_model, diffusion, fast_opt, y[:, :0], torch.cat([ctx1, y], dim=1), null,
                           cfg.fast_steps, gen)
        t2 = clock(device)
        if i >= args.warmup + 2 * args.compile:
            lora_sample.append(t1 - t0)
            update.append(t2 - t1)
    fast_chunk_s = statistics.median(s + u for s, u in zip(lora_sample, update))
    update_s = statistics.median(update)
    plain, fast = sample_s / K, fast_chunk_s / K
    overhead = 100 * (fast / plain - 1)
    row("sampling / frame", f"{plain * 1e3:.0f} ms", f"{cfg.sample_steps} steps, batch 1, {K} context frames")
    row("sampling / frame + fast learning", f"{fast * 1e3:.0f} ms", f"{overhead:+.0f}% (one update per chunk of {K})")
    row("fast-learning update", f"{update_s * 1e3:.0f} ms", f"{cfg.fast_steps} Adam steps, {n_lora / 1e3:.1f} k LoRA params")

    # 4. peak over all of the above (the training step dominates)
    peak = mem.read()
    row("peak memory", f"{peak / 2 ** 30:.2f} GiB", mem.what)
    return dict(
        params=n_params, lora_params=n_lora,
        clip=dict(batch=args.batch, frames=2 * K, shape=tuple(ctx.shape[2:]), latent=bool(cfg.latent_channels)),
        bf16=use_bf16, compiled=net is not model, train_step_s=step_s, train_step_times_s=step_all, train_flops=flops,
        train_flops_per_s=flops / step_s,
        sample_s_per_frame=plain, sample_lora_s_per_frame=statistics.median(lora_sample) / K,
        sample_fast_s_per_frame=fast, fast_overhead_pct=overhead, fast_update_s=update_s,
        sample_steps=cfg.sample_steps, fast_steps=cfg.fast_steps, peak_memory_bytes=peak, peak_memory_what=mem.what,
    ), (ctx, tgt)


# ============================================================================= fast paths, each off against on
def naive_attention(q, k, v):
    """softmax(q k^T / sqrt(d)) v written out: what F.scaled_dot_product_attention replaces."""
    w = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
    return w @ v


def bench_fast_paths(cfg, device, args, row):
    """The training step with every fast path on, then with one of them switched off (or an optional one
    switched on), same clip and seed: which ones pay on this device."""
    variants = [("all fast paths on (the default)", {}), ("attention written out instead of SDPA", dict(sdpa=False)),
                ("AdamW one tensor at a time (foreach off)", dict(foreach=False)),
                ("+ channels-last memory format (conv weights)", dict(channels_last=True)),
                ("+ bf16 autocast", dict(bf16=True))]
    out = {}
    for name, v in variants:
        torch.manual_seed(0)
        model = VideoUNet(cfg).to(device)
        if v.get("channels_last"):
            model = model.to(memory_format=torch.channels_last)
        if not out:  # the same clip for every variant (seed 0 builds the same autoencoder each time)
            ctx, tok, tgt = clip_batch(cfg, args.batch, device, autoencoder=model.autoencoder)
        fused = device.type == "cuda" and v.get("foreach", True)
        opt = torch.optim.AdamW(sfvgen.slow_parameters(model), lr=cfg.lr, fused=fused, foreach=None if fused else v.get("foreach", True))
        diffusion, gen = Diffusion(cfg, device), torch.Generator().manual_seed(0)
        sdpa = F.scaled_dot_product_attention
        sfvgen.F.scaled_dot_product_attention = sdpa if v.get("sdpa", True) else naive_attention

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=v.get("bf16", False)):
                loss = diffusion.loss(model, ctx, tgt, tok, p_uncond=cfg.p_uncond, generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        try:
            out[name], _ = median_time(step, device, n=args.steps, warmup=args.warmup)
        finally:
            sfvgen.F.scaled_dot_product_attention = sdpa
        base = out[next(iter(out))]
        row(name, f"{out[name] * 1e3:.0f} ms", "" if name == next(iter(out)) else f"{100 * (out[name] / base - 1):+.0f}% vs default")
    return out


# ============================================================================= the peer
def import_peer():
    """video_diffusion_pytorch.Unet3D, or None and why not."""
    try:
        from video_diffusion_pytorch import Unet3D
    except ImportError as e:  # not installed, or its torchvision import without the stub on PYTHONPATH
        return None, f"{type(e).__name__}: {e}"
    return Unet3D, ""


def peer_param_count(Unet3D, dim):
    """Parameters of Unet3D(dim, PEER_MULTS), built on the meta device (no memory, no init time)."""
    with torch.device("meta"):
        net = Unet3D(dim=dim, dim_mults=PEER_MULTS)
    return sum(p.numel() for p in net.parameters())


def match_width(count, target, multiple=4, max_dim=1024):
    """The multiple of `multiple` whose count(d) is relatively closest to target; counts grow with d, so
    the walk stops at the first one past it. Returns (d, count(d), relative error)."""
    best = None
    for d in range(multiple, max_dim + 1, multiple):
        n = count(d)
        err = abs(n / target - 1)
        if best is None or err < best[2]:
            best = (d, n, err)
        if n > target:
            break
    return best


def bench_peer(Unet3D, cfg, device, args, ours, clip, flops_peak, mem, row):
    """A plain epsilon-MSE training step of Unet3D on the same clip; returns a dict for the JSON."""
    dim, n_params, err = match_width(lambda d: peer_param_count(Unet3D, d), ours["params"])
    if err > 0.1:
        print(f"warning: the closest peer width, dim={dim}, is {100 * err:.0f}% off our parameter count")
    torch.manual_seed(0)
    net = Unet3D(dim=dim, dim_mults=PEER_MULTS).to(device)
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=fused, foreach=None if fused else True)
    abar = Diffusion(cfg, device).abar  # same noise schedule as ours
    x0 = rearrange(torch.cat(clip, dim=1), "b t c h w -> b c t h w")  # its layout
    B, gen = x0.shape[0], torch.Generator().manual_seed(0)
    mem.reset()

    def train_step():
        t = torch.randint(0, cfg.timesteps, (B,), generator=gen).to(device)
        eps = torch.randn(x0.shape, generator=gen).to(device)
        ab = abar[t + 1].view(B, 1, 1, 1, 1)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=ours["bf16"]):
            loss = F.mse_loss(net(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t).float(), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    net.train()
    flops = count_flops(train_step)  # also its one warmup step
    step_s, step_all = median_time(train_step, device, n=args.peer_steps)
    peak = mem.read()
    speedup = step_s / ours["train_step_s"]
    row("peer parameters", f"{n_params / 1e6:.2f} M", f"Unet3D dim={dim}, mults={PEER_MULTS}; ours {ours['params'] / 1e6:.2f} M "
        f"({100 * (n_params / ours['params'] - 1):+.1f}%)")
    row("peer train step", f"{step_s * 1e3:.0f} ms", f"median of {args.peer_steps}; ours is {speedup:.2f}x faster")
    row("peer train FLOP/s", flops_str(flops / step_s),
        f"{100 * flops / step_s / flops_peak:.1f}% of peak, {flops / 1e9:.1f} GFLOP/step")
    row("peer peak memory", f"{peak / 2 ** 30:.2f} GiB", mem.what)
    return dict(dim=dim, dim_mults=PEER_MULTS, params=n_params, param_ratio=n_params / ours["params"], train_step_s=step_s,
                train_step_times_s=step_all, train_flops=flops, train_flops_per_s=flops / step_s, peak_memory_bytes=peak,
                our_speedup=speedup)


# ============================================================================= report
def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def flops_str(x):
    """FLOP/s in G below a tera, else in T (a GPU's peak is hundreds of TFLOP/s)."""
    return f"{x / 1e12:.1f} TFLOP/s" if x >= 1e12 else f"{x / 1e9:.1f} GFLOP/s"


def print_table(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) if j != 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))) + "  " + r[3])
        if i == 0:
            print("-" * (sum(widths) + 6 + max(len(r[3]) for r in rows)))


def main():
    p = argparse.ArgumentParser(prog="python -m lab.bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--presets", default="tiny", help=f"comma-separated presets to measure ({', '.join(sfvgen.PRESETS)})")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--batch", type=int, default=8, help="clips per training step")
    p.add_argument("--steps", type=int, default=5, help="timed repetitions of each measurement (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed repetitions first (at least 1: it also counts the FLOPs)")
    p.add_argument("--peer", action="store_true", help="also time video-diffusion-pytorch's Unet3D at a matched parameter count")
    p.add_argument("--peer-steps", type=int, default=3, help="timed peer training steps (after one untimed)")
    p.add_argument("--bf16", choices=("preset", "on", "off"), default="preset",
                   help="bf16 autocast of the training step on CUDA: the preset's setting, or forced on / off")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the UNet for the training step, and with CUDA graphs for sampling (CUDA only)")
    p.add_argument("--fast-paths", action="store_true", help="also time the training step with each fast path off (or on)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave torch's default)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 timed steps, 1 warmup, 1 peer step")
    p.add_argument("--json", default="bench.json", help="where to write the results")
    args = p.parse_args()
    if args.quick:
        args.steps, args.warmup, args.peer_steps = 2, 1, 1
    presets = [s.strip() for s in args.presets.split(",") if s.strip()]
    for name in presets:
        if name not in sfvgen.PRESETS:
            p.error(f"--presets: unknown preset {name!r}; presets: {list(sfvgen.PRESETS)}")
    if min(args.batch, args.steps, args.warmup, args.peer_steps) < 1:
        p.error("--batch, --steps, --warmup and --peer-steps must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = cli.pick_device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True  # as train.py
    t_start = time.perf_counter()

    peer, why = (None, "not asked (--peer)")
    if args.peer:
        peer, why = import_peer()
        if peer is None:
            print(f"peer: skipped, video_diffusion_pytorch does not import ({why}); to install it: `{PEER_INSTALL}`")

    print(f"device: {device} ({device_name(device)}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    flops_peak, peak_what = matmul_peak(device, args.quick)
    mem = PeakMemory(device)
    rows = [("preset", "measurement", "value", "notes"), ("-", "matmul peak", flops_str(flops_peak), peak_what)]
    out = dict(meta=dict(torch=torch.__version__, python=platform.python_version(), device=str(device),
                         device_name=device_name(device), threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
                         time=time.strftime("%Y-%m-%d %H:%M:%S"), args=vars(args), peak_flops_per_s=flops_peak,
                         peak_what=peak_what, memory_what=mem.what), presets={})
    for name in presets:
        cfg = sfvgen.preset(name)
        print(f"measuring {name} ...", flush=True)
        row = lambda what, value, notes: rows.append((name, what, value, notes))
        ours, clip = bench_ours(cfg, device, args, mem, row)
        ours["train_flops_frac_of_peak"] = ours["train_flops_per_s"] / flops_peak
        row("train FLOP/s", flops_str(ours["train_flops_per_s"]),
            f"{100 * ours['train_flops_frac_of_peak']:.1f}% of peak, {ours['train_flops'] / 1e9:.1f} GFLOP/step")
        if args.fast_paths:
            print(f"measuring {name} fast paths ...", flush=True)
            ours["fast_paths_train_step_s"] = bench_fast_paths(cfg, device, args, row)
        if peer is not None and cfg.latent_channels:
            ours["peer"] = dict(skipped="the peer is a pixel-space Unet3D; it is compared on pixel presets only")
        elif peer is not None:
            print(f"measuring {name} peer ...", flush=True)
            ours["peer"] = bench_peer(peer, cfg, device, args, ours, clip, flops_peak, mem, row)
        else:
            ours["peer"] = dict(skipped=why)
        out["presets"][name] = ours
        del clip
        if device.type == "cuda":
            torch.cuda.empty_cache()
    out["meta"]["total_s"] = time.perf_counter() - t_start
    print()
    print_table(rows)
    video.write_json(args.json, out)
    print(f"\nwrote {args.json} ({out['meta']['total_s']:.0f} s in all)")


if __name__ == "__main__":
    main()
