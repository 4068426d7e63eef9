"""Slow learning: train the masked conditional video diffusion model; with --loop, the slow-fast learning loop.

    python train.py --preset tiny --out runs/tiny                   # train on the built-in world (2-core CPU friendly)
    python train.py --preset tiny --out runs/tiny --resume          # continue exactly where it stopped
    python train.py --data my_videos/ --out runs/mine               # train on your own videos (annotations.jsonl)
    python train.py --export runs/tiny/ckpt.pt small.pt             # EMA weights in half precision (for sharing)
    python train.py --loop --init checkpoints/tiny.pt --lr 1e-4 --warmup 0 --out runs/tiny-loop
                                                                    # the slow-fast learning loop (Algorithm 1b)
    torchrun --standalone --nproc_per_node=8 train.py --preset gpu  # several GPUs (DDP); --batch stays global
    python train.py --preset tiny-latent --stage autoencoder --out runs/tiny-latent-ae   # a latent model: its frame
    python train.py --preset tiny-latent --autoencoder runs/tiny-latent-ae/ckpt.pt       # autoencoder first, then the
                                                                    # UNet on its frozen latents (the paper's VAE)

`main(cfg)` reads top to bottom: config, processes and device, seed, model, optimizer, resume, then the loop
(data -> masked loss -> step -> EMA -> log / validate / checkpoint); tests call it for a few steps. With --loop
one step is one outer iteration of Algorithm 1b (sfvgen.slow_fast_iteration). Checkpoints hold the slow weights.
Under torchrun every process draws the same global batch and noise and computes its own rows; DDP averages the
gradients, so N processes take the same steps as one process with the whole batch. Rank 0 writes.
"""
import copy
import json
import math
import os
import random
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


def batch_to(device, batch, autoencoder=None):
    """numpy (context, tokens, target) -> model tensors on the device (a latent model's: latents, encoded on the fly)."""
    ctx, tok, tgt = batch
    return to_model(ctx, device, autoencoder), torch.as_tensor(tok, device=device), to_model(tgt, device, autoencoder)


def world_batches(cfg):
    """The default source of slow learning's clips: data.sample_batch on the world's seeds (or the pool's)."""
    if cfg.data:  # your own videos: every clip is cut from the folder's episodes
        episodes = data.load_folder(cfg.data, cfg.world())
        if not episodes:
            raise ValueError(f"{cfg.data}: annotations.jsonl lists no chunks")
        return lambda rng, seeds, n_ctx=None: data.sample_folder_batch(rng, episodes, cfg.batch, cfg.world(), n_ctx)
    kinds = tuple(cfg.train_kinds.split(","))
    return lambda rng, seeds, n_ctx=None: data.sample_batch(rng, seeds, cfg.batch, cfg.world(), n_ctx=n_ctx, kinds=kinds)


@torch.no_grad()
def validation_loss(model, diffusion, cfg, device, batches, n_batches=4):
    """Masked loss on fixed validation worlds (or your folder) and a fixed noise draw (comparable across steps)."""
    rng, gen = np.random.default_rng(1234), torch.Generator().manual_seed(1234)
    losses = []
    for k in range(n_batches):
        ctx, tok, tgt = batch_to(device, batches(rng, cfg.val_seeds, n_ctx=k % cfg.chunk + 1), model.autoencoder)
        losses.append(float(diffusion.loss(model, ctx, tgt, tok, generator=gen)))
    return sum(losses) / len(losses)


def sample_gif(model, diffusion, cfg, path):
    """Generated | ground truth: a validation world, 4 chunks out and 4 back (or your folder's first video)."""
    if cfg.data:
        actions, truth = data.load_folder(cfg.data, cfg.world())[0]
    else:
        actions = ["go right"] * 4 + ["go left"] * 4
        truth = data.render_episode(cfg.val_seeds[0], actions, cfg.world())[0]
    gen = sfvgen.generate_long(model, diffusion, cfg, truth[0], actions, fast_learning=False, seed=0)["frames"]
    data.write_gif(path, np.concatenate([gen, truth], axis=2).repeat(3, 1).repeat(3, 2))


def start_processes(cfg, device):
    """torchrun starts one process per GPU (or CPU slot): returns (device, rank, world size, this rank's batch rows),
    or (device, 0, 1, None) in a plain single process."""
    if not ("RANK" in os.environ and "WORLD_SIZE" in os.environ):
        return device, 0, 1, None
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
    return device, rank, world, slice(rank * per, (rank + 1) * per)


def train_autoencoder(cfg, quiet=False):
    """--stage autoencoder: a latent model's frame autoencoder (sfvgen.FrameAutoencoder), trained with
    L = || D(E(x)) - x ||^2 on the frames of slow learning's clips, then its latent statistics; it is frozen after.
    Writes out/ckpt.pt with the config and the autoencoder. Returns {"losses": [...], "step": final step}."""
    if not cfg.latent_channels:
        raise ValueError("--stage autoencoder trains a latent model's autoencoder: give --latent-channels (or --preset tiny-latent)")
    device = cli.pick_device(cfg.device)
    cli.check_writable(cfg.out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    batches, pool = world_batches(cfg), data.WorldPool(cfg.train_seeds, rng)
    ae = sfvgen.FrameAutoencoder(cfg.latent_channels, cfg.ae_width).to(device)
    opt = torch.optim.Adam(ae.parameters(), lr=cfg.lr)

    def frames():  # one frame of each of a batch of clips, so the frames show different places: (batch, 3, H, W)
        clips = batches(rng, pool.step(rng), n_ctx=cfg.chunk)[2]  # (batch, K, H, W, 3) uint8
        return to_model(clips[np.arange(len(clips)), rng.integers(0, cfg.chunk, len(clips))][:, None], device)[:, 0]

    losses, t_start, cpu_start = [], time.time(), time.process_time()
    for step in tqdm(range(cfg.max_steps), desc=f"frame autoencoder ({device})", disable=quiet):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        x = frames()
        loss = torch.nn.functional.mse_loss(ae.decode(ae.encode(x)), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if (step + 1) % cfg.log_every == 0 and not quiet:
            tqdm.write(json.dumps(dict(step=step + 1, loss=round(sum(losses[-cfg.log_every:]) / cfg.log_every, 5),
                                       minutes=round((time.time() - t_start) / 60, 2),
                                       cpu_minutes=round((time.process_time() - cpu_start) / 60, 2))))
        if cfg.max_minutes > 0 and time.time() - t_start > 60 * cfg.max_minutes:
            break
    ae.set_statistics(torch.cat([frames() for _ in range(2048 // cfg.batch + 1)]))  # so the UNet sees latents of unit scale
    sfvgen.save_checkpoint(os.path.join(cfg.out, "ckpt.pt"), dict(config=asdict(cfg), step=len(losses), autoencoder=ae.state_dict()))
    if not quiet:
        print(f"wrote {os.path.join(cfg.out, 'ckpt.pt')}: the frame autoencoder after {len(losses)} steps "
              f"({(time.process_time() - cpu_start) / 60:.2f} CPU-minutes); train the latent model with --autoencoder")
    return dict(losses=losses, step=len(losses))


def main(cfg, quiet=False, batches=None, network=VideoUNet, window=sfvgen.local_window):
    """Slow learning (or, with cfg.loop, the slow-fast learning loop). Returns {"losses": [...], "step": final step}.
    The lab's seams: batches(rng, seeds, n_ctx=None) -> (context, tokens, target) numpy clips, default
    `world_batches(cfg)`; network(cfg) builds the network to train (default VideoUNet); window: the loop's fast rule.
    cfg.stage == "autoencoder" trains a latent model's frame autoencoder instead (train_autoencoder)."""
    if cfg.stage == "autoencoder":
        return train_autoencoder(cfg, quiet)
    device, rank, world, rows = start_processes(cfg, cli.pick_device(cfg.device))
    ddp, master = rows is not None, rank == 0  # the master is the one process that writes checkpoints, samples and logs
    torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls on Ampere and later GPUs
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # the same seed on every rank (unlike nanoGPT): same initial weights, same data and noise draws
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)  # the data stream
    batches = world_batches(cfg) if batches is None else batches
    ckpt_path = os.path.join(cfg.out, "ckpt.pt")

    model = network(cfg).to(device)  # built after seeding: the same seed gives the same initial weights
    if cfg.latent_channels and not cfg.resume and not cfg.init:  # the frozen frame autoencoder, trained before
        if not cfg.autoencoder:
            raise ValueError("a latent model needs --autoencoder: the checkpoint of train.py --stage autoencoder")
        model.autoencoder.load_state_dict(sfvgen.load_checkpoint(cfg.autoencoder, require=("config", "autoencoder"))["autoencoder"])
    n_params = sum(p.numel() for p in model.parameters())
    if master:
        cli.check_writable(cfg.out, need_bytes=20 * 4 * n_params)  # a checkpoint is ~4 copies of the weights; room for a few
    if cfg.init and not cfg.resume:
        init_model, init_cfg, _ = sfvgen.load_model(cfg.init)
        cli.check_weight_fields(cfg.init, init_cfg, cfg)
        model.load_state_dict(init_model.state_dict())
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    fused = device.type == "cuda"
    slow, ema_slow = sfvgen.slow_parameters(model), sfvgen.slow_parameters(ema)  # Phi (a latent model's autoencoder stays frozen)
    opt = torch.optim.AdamW(slow, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused, foreach=None if fused else True)
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
            if cfg.snapshot_every and step % cfg.snapshot_every == 0:  # a half-precision EMA snapshot (training curves)
                export(ckpt_path, os.path.join(cfg.out, f"snap_{step:06d}.pt"), quiet=True)

    stop_asked = []
    if ddp:  # torchrun passes Ctrl-C on as SIGINT to every rank; they finish the step and stop together
        signal.signal(signal.SIGINT, lambda signum, frame: stop_asked.append(signum))
    losses, t_start, cpu_start = [], time.time(), time.process_time()
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
                loss, _ = sfvgen.slow_fast_iteration(model, diffusion, cfg, episodes, window=window)  # fills Phi's .grad
                batch_loss = torch.tensor(loss)
            else:  # slow learning: the masked conditional loss on a batch of (context, action, target) clips
                ctx, tok, tgt = batch_to(device, batches(rng, pool.step(rng)), model.autoencoder)
                draws = diffusion.draw(tgt, cfg.p_uncond)  # t, eps, dropped actions for the whole (global) batch
                if ddp:  # every rank drew the whole global batch and its noise (cheap) and keeps its rows
                    ctx, tok, tgt = ctx[rows], tok[rows], tgt[rows]
                    draws = [None if d is None else d[rows] for d in draws]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    loss = diffusion.loss(net, ctx, tgt, tok, draws=draws)
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
                torch._foreach_lerp_(ema_slow, slow, 1 - decay)
            step += 1
            losses.append(batch_loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr_at(cfg, step):.1e}")
            if step % cfg.log_every == 0 and master and not quiet:
                recent = losses[-cfg.log_every:]  # fewer right after a resume
                bar.write(json.dumps(dict(step=step, loss=round(sum(recent) / len(recent), 5),
                                          minutes=round((time.time() - t_start) / 60, 2),
                                          cpu_minutes=round((time.process_time() - cpu_start) / 60, 2))))
            if step % cfg.eval_every == 0 and not quiet:
                if master:  # on the EMA weights, which are the same on every rank
                    val = validation_loss(ema, diffusion, cfg, device, batches)
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
            if step % cfg.ckpt_every == 0 or step == cfg.max_steps or out_of_time or \
                    (cfg.snapshot_every and step % cfg.snapshot_every == 0):
                checkpoint()
            if out_of_time:
                if master:
                    bar.write(f"stopping at step {step}: --max-minutes {cfg.max_minutes} reached")
                break
    except KeyboardInterrupt:
        checkpoint()
        if master:
            print(f"\ninterrupted at step {step}: checkpoint saved to {ckpt_path}; continue with the same flags and --resume")
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
    parser = cli.config_parser(__doc__.split("\n")[0], extra=lambda p: p.add_argument(
        "--export", nargs=2, metavar=("CKPT", "OUT"), help="write CKPT's EMA weights in half precision to OUT (for sharing), then stop"))
    args = parser.parse_args()
    if args.export:
        try:
            export(*args.export)
        except ValueError as e:
            sys.exit(f"error: {e}")
        sys.exit(0)
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
