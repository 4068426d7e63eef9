"""Slow learning: train the masked conditional video diffusion model on the action world.

    python train.py --preset tiny --out runs/tiny                   # train (2-core CPU friendly)
    python train.py --preset tiny --out runs/tiny --resume on       # continue exactly where it stopped
    python train.py --export runs/tiny/ckpt.pt small.pt             # EMA weights in half precision (for sharing)
    torchrun --standalone --nproc_per_node=8 train.py --preset gpu  # several GPUs (DDP); --batch stays global
    python train.py --loop on --init checkpoints/tiny.pt --lr 1e-4 --warmup 0 --out runs/tiny-loop
                                                                    # the slow-fast learning loop (Algorithm 1b)

Reads top to bottom: config, processes and device, seed, model, optimizer, resume, loop (data -> masked
loss -> step -> EMA -> log / validate / checkpoint). `main(cfg)` is what tests call for a few steps.
With --loop one step is one outer iteration of Algorithm 1b (sfvgen.slow_fast_iteration): the inner loop
fast-learns a fresh LoRA on each of --loop-episodes episodes, the outer step trains the slow weights with
the stored LoRA snapshots plugged in. Checkpoints hold the slow weights only, as in slow learning.
Under torchrun every process draws the same global batch and computes its own slice; DDP averages the
gradients, so N processes take the same steps as one process with the whole batch. Rank 0 writes.
"""
import copy
import json
import math
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import asdict

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import cli
import data
import sfvgen
from sfvgen import Diffusion, VideoUNet, to_model


def lr_at(cfg, step):
    """Linear warmup to cfg.lr, then cosine decay to 0.1 * cfg.lr at max_steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state(rng, device):
    # CUDA: the generator of the training device only; under torchrun every rank's GPU holds the same state
    return dict(python=random.getstate(), numpy=rng.bit_generator.state, torch=torch.get_rng_state(),
                cuda=[torch.cuda.get_rng_state(device)] if device.type == "cuda" else [])


def set_rng_state(rng, state, device):
    random.setstate(state["python"])
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if state["cuda"] and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"][0], device)


def check_writable(folder, need_bytes=0):
    """Fail before any work when the output folder cannot be created or written, or the disk is nearly full."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, ".write_test")
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.remove(probe)
    except OSError as e:
        raise SystemExit(f"error: cannot write to output folder {folder!r} ({e.strerror or e})") from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise SystemExit(f"error: only {free / 2**20:.0f} MiB free under {folder!r}; checkpoints need about {need_bytes / 2**20:.0f} MiB")


def batch_to(device, batch):
    """numpy (context, tokens, target) -> model tensors on the device."""
    ctx, tok, tgt = batch
    return to_model(ctx, device), torch.as_tensor(tok, device=device), to_model(tgt, device)


@torch.no_grad()
def validation_loss(model, diffusion, cfg, device, n_batches=4):
    """Masked loss on fixed validation worlds and a fixed noise draw (comparable across steps)."""
    rng, gen = np.random.default_rng(1234), torch.Generator().manual_seed(1234)
    losses = []
    for k in range(n_batches):
        ctx, tok, tgt = batch_to(device, data.sample_batch(rng, cfg.val_seeds, cfg.batch, cfg.world(), n_ctx=k % cfg.chunk + 1))
        losses.append(float(diffusion.loss(model, ctx, tgt, tok, generator=gen)))
    return sum(losses) / len(losses)


def sample_gif(model, diffusion, cfg, path):
    """Generated | ground truth on one validation world, 4 chunks out and 4 back."""
    seed = cfg.val_seeds[0]
    actions = ["go right"] * 4 + ["go left"] * 4
    truth, _ = data.render_episode(seed, actions, cfg.world())
    gen = sfvgen.generate_long(model, diffusion, cfg, truth[0], actions, fast=False, seed=0)["frames"]
    data.write_gif(path, np.concatenate([gen, truth], axis=2).repeat(3, 1).repeat(3, 2))


def main(cfg, quiet=False):
    """Slow learning. Returns {"losses": [...], "step": final step}."""
    device = cli.pick_device(cfg.device)
    ddp = "RANK" in os.environ and "WORLD_SIZE" in os.environ  # started by torchrun: one process per GPU
    rank, world, rows = 0, 1, None
    if ddp:
        rank, world, local_rank = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
        if cfg.batch % world:
            raise SystemExit(f"error: --batch {cfg.batch} is the global batch; it must divide evenly over {world} processes")
        if device.type == "mps":
            raise SystemExit("error: torchrun training needs --device cuda or cpu")
        if cfg.loop:
            raise SystemExit("error: --loop runs in one process (each episode's fast weights are its own); start it without torchrun")
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        per = cfg.batch // world
        rows = slice(rank * per, (rank + 1) * per)  # this rank's items of the global batch
    master = rank == 0  # the one process that writes checkpoints, samples and logs
    torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls on Ampere and later GPUs
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # the same seed on every rank (unlike nanoGPT): same initial weights, same data and noise draws
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)  # the data stream
    ckpt_path = os.path.join(cfg.out, "ckpt.pt")

    model = VideoUNet(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    if master:
        check_writable(cfg.out, need_bytes=20 * 4 * n_params)  # a checkpoint is ~4 copies of the weights; keep room for a few
    if cfg.init and not cfg.resume:
        init_model, init_cfg, _ = sfvgen.load_model(cfg.init)
        cli.check_weight_fields(cfg.init, init_cfg, cfg)
        model.load_state_dict(init_model.state_dict())
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=fused, foreach=None if fused else True)
    slow = [p for group in opt.param_groups for p in group["params"]]  # Phi, in the order of ema.parameters()
    step = 0
    pool = data.WorldPool(cfg.train_seeds, rng)
    if cfg.resume:
        ckpt = sfvgen.load_checkpoint(ckpt_path, require=("config", "model", "ema", "optimizer", "step", "rng"))
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        step = ckpt["step"]
        set_rng_state(rng, ckpt["rng"], device)
        pool.seeds = list(ckpt["pool"])
        if master and not quiet:
            print(f"resumed from {ckpt_path} at step {step}")
    if cfg.loop:  # Algorithm 1b: the fast weights Theta ride on the slow model; the optimizer holds Phi only
        sfvgen.add_lora(model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, seed=cfg.seed)
    diffusion = Diffusion(cfg, device)
    net = torch.compile(model) if cfg.compile and device.type == "cuda" else model
    if ddp:  # forward/backward through DDP (it averages gradients over ranks); EMA and checkpoints use `model`
        # find_unused_parameters: levels without temporal attention keep an unused frame_pos (its grad stays None)
        net = DDP(net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    use_bf16 = cfg.bf16 and device.type == "cuda"

    def checkpoint():
        if master:
            sfvgen.save_checkpoint(ckpt_path, dict(config=asdict(cfg), step=step, model=sfvgen.slow_state_dict(model), ema=ema.state_dict(),
                                                   optimizer=opt.state_dict(), rng=rng_state(rng, device), pool=pool.seeds))

    stop_asked = []
    if ddp:  # torchrun passes Ctrl-C on as SIGINT to every rank; they finish the step and stop together
        signal.signal(signal.SIGINT, lambda signum, frame: stop_asked.append(signum))
    losses, t_start = [], time.time()
    bar = tqdm(total=cfg.max_steps, initial=step, disable=quiet or not master,
               desc=f"{'slow-fast loop' if cfg.loop else 'slow learning'} ({n_params / 1e6:.2f}M params, "
                    f"{device}{f' x {world}' if ddp else ''})")
    try:
        while step < cfg.max_steps:
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, step)
            opt.zero_grad(set_to_none=True)
            if cfg.loop:  # the slow-fast learning loop: inner loop over episodes (fast), then the slow gradient
                episodes = sfvgen.sample_loop_episodes(cfg, rng, pool.step(rng))
                batch_loss = torch.tensor(sfvgen.slow_fast_iteration(model, diffusion, cfg, episodes))  # fills Phi's .grad
            else:  # slow learning: the masked conditional loss on a batch of (context, action, target) clips
                seeds = pool.step(rng)  # every rank draws the whole global batch (cheap) and keeps its rows
                n_mem = 0
                if cfg.memory_mix > 0 and rng.random() < cfg.memory_mix:  # contexts of the memory matrix's arms
                    *batch, n_mem = data.sample_memory_batch(rng, seeds, cfg.batch, cfg.world())
                else:
                    batch = data.sample_batch(rng, seeds, cfg.batch, cfg.world(), kinds=tuple(cfg.train_kinds.split(",")))
                ctx, tok, tgt = batch_to(device, batch)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    loss = diffusion.loss(net, ctx, tgt, tok, p_uncond=cfg.p_uncond, rows=rows, n_mem=n_mem)
                loss.backward()
                batch_loss = loss.detach()
            if ddp:  # the mean of the ranks' slice means is the global batch's loss; all ranks see the same value
                batch_loss = batch_loss.clone()
                dist.all_reduce(batch_loss)
                batch_loss = batch_loss / world
            if not torch.isfinite(batch_loss):
                kept = f"the last good checkpoint is kept at {ckpt_path}" if os.path.exists(ckpt_path) else "no checkpoint was written yet"
                msg = f"error: loss is {batch_loss.item()} at step {step}; stopping ({kept}). Try a lower --lr or a larger --warmup."
                raise SystemExit(msg if master else 1)  # every rank stops; rank 0 says why
            torch.nn.utils.clip_grad_norm_(slow, cfg.grad_clip)
            opt.step()
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))  # EMA: theta_ema = d theta_ema + (1 - d) theta
            with torch.no_grad():
                torch._foreach_lerp_(list(ema.parameters()), slow, 1 - decay)
            step += 1
            losses.append(batch_loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr_at(cfg, step):.1e}")
            if step % cfg.log_every == 0 and master and not quiet:
                recent = losses[-cfg.log_every:]  # fewer right after a resume
                bar.write(json.dumps(dict(step=step, loss=round(sum(recent) / len(recent), 5),
                                          minutes=round((time.time() - t_start) / 60, 2))))
            if step % cfg.eval_every == 0 and not quiet:
                if master:  # on the EMA weights, which are the same on every rank
                    val = validation_loss(ema, diffusion, cfg, device)
                    sample_gif(ema, diffusion, cfg, os.path.join(cfg.out, f"sample_{step:06d}.gif"))
                    bar.write(json.dumps(dict(step=step, val_loss=round(val, 5))))
                if ddp:
                    dist.barrier()  # the other ranks wait for rank 0 here
            out_of_time = cfg.max_minutes > 0 and time.time() - t_start > 60 * cfg.max_minutes
            if ddp:  # the ranks must agree to stop at the same step, or the others would wait for it forever
                flags = torch.tensor([float(out_of_time), float(len(stop_asked) > 0)], device=device)
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                out_of_time = bool(flags[0])
                if flags[1]:
                    raise KeyboardInterrupt
            if step % cfg.ckpt_every == 0 or step == cfg.max_steps or out_of_time:
                checkpoint()
            if cfg.snapshot_every and step % cfg.snapshot_every == 0:
                checkpoint()
                if master:
                    export(ckpt_path, os.path.join(cfg.out, f"snap_{step:06d}.pt"), quiet=True)
            if out_of_time:
                if master:
                    bar.write(f"stopping at step {step}: --max-minutes {cfg.max_minutes} reached")
                break
    except KeyboardInterrupt:
        checkpoint()
        if master:
            print(f"\ninterrupted at step {step}: checkpoint saved to {ckpt_path}; continue with the same flags and --resume on")
        if ddp:
            dist.destroy_process_group()
        sys.exit(130)
    finally:
        bar.close()
    if ddp:
        dist.destroy_process_group()
    return dict(losses=losses, step=step)


def export(src, dst, quiet=False):
    """A small sharing checkpoint: config, step and the EMA weights in half precision."""
    ckpt = sfvgen.load_checkpoint(src)
    weights = ckpt.get("ema") or ckpt["model"]
    small = dict(config=ckpt["config"], step=ckpt.get("step", 0),
                 model={k: v.half() if v.is_floating_point() else v for k, v in weights.items()})
    sfvgen.save_checkpoint(dst, small)
    if not quiet:
        print(f"wrote {dst} ({os.path.getsize(dst) / 1e6:.1f} MB, step {small['step']})")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--export":
        export(sys.argv[2], sys.argv[3])
        sys.exit(0)
    parser = cli.config_parser(__doc__.split("\n")[0])
    args = parser.parse_args()
    try:
        cfg = cli.config_from_args(args)
        if cfg.resume:  # resume keeps the stored config; only the flags given change it
            stored = sfvgen.load_checkpoint(os.path.join(cfg.out, "ckpt.pt"))["config"]
            cfg = cli.config_from_args(args, base=sfvgen.Config(**stored))
    except ValueError as e:
        parser.error(str(e))
    try:
        main(cfg)
    except ValueError as e:  # a bad checkpoint or --init file: one line that names it
        sys.exit(f"error: {e}")
