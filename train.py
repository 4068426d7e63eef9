"""Slow learning: train the masked conditional video diffusion model; with --loop, the slow-fast learning
loop.

    python train.py --preset tiny --out runs/tiny              # train on the built-in world
    python train.py --preset tiny --out runs/tiny --resume     # continue exactly where it stopped
    python train.py --data my_videos/ --out runs/mine          # train on your own videos (annotations.jsonl)
    python train.py --export runs/tiny/ckpt.pt small.pt        # EMA weights in half precision (for sharing)
    python train.py --loop --init checkpoints/tiny.pt --lr 1e-4 --warmup 0 --out runs/tiny-loop
                                                               # the slow-fast learning loop (Algorithm 1b)
    torchrun --standalone --nproc_per_node=8 train.py --preset gpu   # several GPUs (DDP); --batch is global
    python train.py --preset tiny-latent --stage autoencoder --out runs/tiny-latent-ae
    python train.py --preset tiny-latent --autoencoder runs/tiny-latent-ae/ckpt.pt
                                      # a latent model: its frame autoencoder first, then the UNet on its
                                      # frozen latents (the paper's VAE)

`main(cfg)` reads top to bottom: config, processes and device, seed, model, optimizer, resume, then the loop
(data -> masked loss -> step -> EMA -> log / validate / checkpoint); tests call it for a few steps. With
--loop one step is one outer iteration of Algorithm 1b (sfvgen.slow_fast_iteration). Checkpoints hold the slow
weights. Under torchrun every process draws the same global batch and noise and computes its own rows; DDP
averages the gradients, so N processes take the same steps as one process with the whole batch. Rank 0 writes.
"""
import copy
import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import asdict

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import cli
import data
import metrics
import sfvgen
import video
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
    """numpy (context, tokens, target) -> model tensors on the device (a latent model's: latents, encoded
    on the fly)."""
    ctx, tok, tgt = batch
    return (to_model(ctx, device, autoencoder), torch.as_tensor(tok, device=device),
            to_model(tgt, device, autoencoder))


def sources(cfg, quiet=True):
    """Where training draws from: the built-in world (train / validation seed ranges), or your folder of
    videos (cfg.data: its "train" and held-out "val" videos, video.load_folder). Returns three functions:
        clips(rng, seeds, n_ctx=None)  (context, tokens, target) numpy clips of slow learning (seeds: a pool)
        val_clips(rng, n_ctx)          the same from the validation worlds or the held-out videos
        episodes(rng, seeds)           cfg.loop_episodes whole episodes [(frames, actions)] for the loop"""
    spec, kinds, loop_kinds = cfg.world(), tuple(cfg.train_kinds.split(",")), tuple(cfg.loop_kinds.split(","))
    if not cfg.data:
        def clips(rng, seeds, n_ctx=None):
            return data.sample_batch(rng, seeds, cfg.batch, spec, n_ctx=n_ctx, kinds=kinds)

        def episodes(rng, seeds):
            return data.sample_episodes(rng, seeds, cfg.loop_episodes, spec, loop_kinds, cfg.loop_out_chunks)
        return clips, lambda rng, n_ctx: clips(rng, cfg.val_seeds, n_ctx), episodes
    folder = video.load_folder(cfg.data, spec, **({"warn": lambda m: None} if quiet else {}))
    train_eps, val_eps = [e for e in folder if e.split == "train"], [e for e in folder if e.split == "val"]
    if not train_eps:
        raise ValueError(f"{cfg.data}: every video is held out (\"split\": \"val\"); mark some \"train\"")
    if not quiet:
        names = ", ".join(e.name for e in val_eps)
        held = f"{len(val_eps)} held out for validation ({names})" if val_eps else "none held out, so the " \
            "validation loss is measured on training videos (mark some \"split\": \"val\")"
        print(f"{cfg.data}: {len(train_eps)} videos for training, {held}")
    val_eps = val_eps or train_eps

    def folder_clips(rng, seeds, n_ctx=None):
        return video.sample_folder_batch(rng, train_eps, cfg.batch, spec, n_ctx)

    def folder_episodes(rng, seeds):
        return video.sample_folder_episodes(rng, train_eps, cfg.loop_episodes, spec, 2 * cfg.loop_out_chunks)
    return folder_clips, lambda rng, n_ctx: video.sample_folder_batch(rng, val_eps, cfg.batch, spec, n_ctx), \
        folder_episodes


@torch.no_grad()
def validation(model, diffusion, cfg, device, val_clips, n_batches=4, n_chunks=16):
    """On the EMA weights, comparable across steps: the masked loss on fixed validation clips with a fixed
    noise draw; in the built-in world also single-chunk prediction on fixed validation items
    (metrics.chunk_scores: known-region PSNR, the headline, and the whole-frame gain over repeating the
    last frame)."""
    rng, gen = np.random.default_rng(1234), torch.Generator().manual_seed(1234)
    losses = []
    for k in range(n_batches):
        ctx, tok, tgt = batch_to(device, val_clips(rng, n_ctx=k % cfg.chunk + 1), model.autoencoder)
        losses.append(float(diffusion.loss(model, ctx, tgt, tok, generator=gen)))
    out = dict(val_loss=round(sum(losses) / len(losses), 5))
    if not cfg.data:
        items = data.chunk_items(cfg.val_seeds, n_chunks, cfg.world())
        ctx = to_model(items["context"], device, model.autoencoder)
        tokens = torch.as_tensor(items["tokens"], device=device)
        x = diffusion.sample(model, ctx, tokens, cfg.chunk, torch.Generator().manual_seed(0))
        scores = metrics.chunk_scores(sfvgen.to_frames(x, model.autoencoder), items)
        out.update(known_psnr=round(scores["known_psnr"], 2), gain=round(scores["gain"], 2))
    return out


def log(cfg, write, **record):
    """One JSON line: printed (through the progress bar's `write`) and appended to out/log.jsonl."""
    line = json.dumps(record)
    write(line)
    with open(os.path.join(cfg.out, "log.jsonl"), "a") as f:
        f.write(line + "\n")


def sample_gif(model, diffusion, cfg, path):
    """Generated | ground truth: a validation world, 4 chunks out and 4 back (or your first held-out
    video)."""
    if cfg.data:
        eps = video.load_folder(cfg.data, cfg.world(), warn=lambda m: None)
        actions, truth = next((e for e in eps if e.split == "val"), eps[0])[1:3]
    else:
        actions = ["go right"] * 4 + ["go left"] * 4
        truth = data.render_episode(cfg.val_seeds[0], actions, cfg.world())[0]
    gen = sfvgen.generate_long(model, diffusion, cfg, truth[0], actions, fast_learning=False)["frames"]
    video.write_video(path, np.concatenate([gen, truth], axis=2).repeat(3, 1).repeat(3, 2))


def start_processes(cfg, device):
    """torchrun starts one process per GPU (or CPU slot): returns (device, rank, world size, this rank's
    batch rows), or (device, 0, 1, None) in a plain single process."""
    if not ("RANK" in os.environ and "WORLD_SIZE" in os.environ):
        return device, 0, 1, None
    rank, world, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if cfg.batch % world:
        raise SystemExit(f"error: --batch {cfg.batch} is the global batch; it must divide evenly over "
                         f"{world} processes")
    if device.type == "mps":
        raise SystemExit("error: torchrun training needs --device cuda or cpu")
    if cfg.loop:
        raise SystemExit("error: --loop runs in one process (each episode's fast weights are its own); "
                         "start it without torchrun")
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    per = cfg.batch // world
    return device, rank, world, slice(rank * per, (rank + 1) * per)


class Stop:
    """Ctrl-C (SIGINT) and SIGTERM (what a cluster scheduler sends before it kills a job) ask training to
    stop: the step under way finishes, a checkpoint is written, and --resume continues bit for bit. A
    second Ctrl-C stops at once (the last checkpoint stays)."""

    def __init__(self):
        self.asked, self.before = None, {}
        # Python delivers signals to the main thread only
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.before[sig] = signal.signal(sig, self.ask)

    def ask(self, signum, frame):
        if self.asked is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.asked = signum
        print(f"\n{signal.Signals(signum).name}: finishing this step, then saving a checkpoint "
              f"(Ctrl-C again: stop now)", file=sys.stderr, flush=True)

    def restore(self):
        for sig, handler in self.before.items():
            signal.signal(sig, handler)


def setup(cfg, quiet):
    """What every run starts with: the device (and the processes under torchrun), threads, the output
    folder checked, the seeds, the data stream and the world pool. Returns (device, rank, world size, batch
    rows, rng, pool). A run whose --max-steps is not past --warmup is warned about (its learning rate never
    peaks)."""
    device, rank, world, rows = start_processes(cfg, cli.pick_device(cfg.device))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls on Ampere and later GPUs
        # cuDNN's fused attention failed in the bf16 backward of the gpu preset's temporal attention (B H W
        # sequences of T frames: 65,536 at 32x32, batch 64; torch 2.11, H100); flash / memory-efficient
        # kernels do it
        torch.backends.cuda.enable_cudnn_sdp(False)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if rank == 0:
        cli.check_writable(cfg.out)
        if cfg.max_steps <= cfg.warmup and not quiet and not cfg.resume:
            print(f"warning: --max-steps {cfg.max_steps} is not past --warmup {cfg.warmup}: the learning "
                  f"rate never reaches --lr {cfg.lr} (give a smaller --warmup)", file=sys.stderr)
    # the same seed on every rank (unlike nanoGPT): same initial weights, same data and noise draws
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)  # the data stream
    return device, rank, world, rows, rng, data.WorldPool(cfg.train_seeds, rng)


def train_autoencoder(cfg, quiet=False, clips=None):
    """--stage autoencoder: a latent model's frame autoencoder (sfvgen.FrameAutoencoder), trained with L =
    || D(E(x)) - x ||^2 on the frames of slow learning's clips, then its latent statistics; it is frozen
    after. Writes out/ckpt.pt with the config and the autoencoder. Returns {"losses": [...], "step": final
    step}."""
    if not cfg.latent_channels:
        raise ValueError("--stage autoencoder trains a latent model's autoencoder: give --latent-channels "
                         "(or --preset tiny-latent)")
    device, _, _, _, rng, pool = setup(cfg, quiet)
    clips = sources(cfg)[0] if clips is None else clips
    ae = sfvgen.FrameAutoencoder(cfg.latent_channels, cfg.ae_width).to(device)
    opt = torch.optim.Adam(ae.parameters(), lr=cfg.lr)

    # one frame of each of a batch of clips, so the frames show different places: (batch, 3, H, W)
    def frames():
        batch = clips(rng, pool.step(rng), n_ctx=cfg.chunk)[2]  # (batch, K, H, W, 3) uint8
        one = batch[np.arange(len(batch)), rng.integers(0, cfg.chunk, len(batch))]  # (batch, H, W, 3)
        return to_model(one[:, None], device)[:, 0]

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
            loss = sum(losses[-cfg.log_every:]) / cfg.log_every
            log(cfg, tqdm.write, step=step + 1, loss=round(loss, 5),
                minutes=round((time.time() - t_start) / 60, 2),
                cpu_minutes=round((time.process_time() - cpu_start) / 60, 2))
        if cfg.max_minutes > 0 and time.time() - t_start > 60 * cfg.max_minutes:
            break
    # so the UNet sees latents of unit scale
    ae.set_statistics(torch.cat([frames() for _ in range(2048 // cfg.batch + 1)]))
    sfvgen.save_checkpoint(os.path.join(cfg.out, "ckpt.pt"), dict(
        config=asdict(cfg), step=len(losses), autoencoder=ae.state_dict(),
        cpu_minutes=(time.process_time() - cpu_start) / 60))
    if not quiet:
        print(f"wrote {os.path.join(cfg.out, 'ckpt.pt')}: the frame autoencoder after {len(losses)} steps "
              f"({(time.process_time() - cpu_start) / 60:.2f} CPU-minutes); train the latent model with "
              f"--autoencoder")
    return dict(losses=losses, step=len(losses))


def main(cfg, quiet=False, batches=None, network=VideoUNet, window=sfvgen.local_window):
    """Slow learning (or, with cfg.loop, the slow-fast learning loop). Returns {"losses": [...], "step":
    final step}. The lab's seams: batches(rng, seeds, n_ctx=None) -> (context, tokens, target) numpy clips
    (default: `sources`); network(cfg) builds the network to train (default VideoUNet); window: the loop's
    fast rule. cfg.stage == "autoencoder" trains a latent model's frame autoencoder instead
    (train_autoencoder)."""
    clips, val_clips, episodes = sources(cfg, quiet)  # your folder is checked here, before any work
    if batches is not None:  # the lab's clips; validation draws them from the validation worlds
        clips, val_clips = batches, lambda rng, n_ctx: batches(rng, cfg.val_seeds, n_ctx)
    if cfg.stage == "autoencoder":
        return train_autoencoder(cfg, quiet, clips)
    device, rank, world, rows, rng, pool = setup(cfg, quiet)
    # the master is the one process that writes checkpoints, samples and logs
    ddp, master = rows is not None, rank == 0
    ckpt_path = os.path.join(cfg.out, "ckpt.pt")

    model = network(cfg).to(device)  # built after seeding: the same seed gives the same initial weights
    # the frozen frame autoencoder, trained before
    if cfg.latent_channels and not cfg.resume and not cfg.init:
        if not cfg.autoencoder:
            raise ValueError("a latent model needs --autoencoder: the checkpoint of train.py --stage "
                             "autoencoder")
        trained = sfvgen.load_checkpoint(cfg.autoencoder, require=("config", "autoencoder"))
        model.autoencoder.load_state_dict(trained["autoencoder"])
    n_params = sum(p.numel() for p in model.parameters())
    if master:
        # a checkpoint is ~4 copies of the weights; room for a few
        cli.check_writable(cfg.out, need_bytes=20 * 4 * n_params)
    if cfg.init and not cfg.resume:
        init_model, init_cfg, _ = sfvgen.load_model(cfg.init)
        cli.check_weight_fields(cfg.init, init_cfg, cfg)
        model.load_state_dict(init_model.state_dict())
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    fused = device.type == "cuda"
    # Phi (a latent model's autoencoder stays frozen)
    slow, ema_slow = sfvgen.slow_parameters(model), sfvgen.slow_parameters(ema)
    opt = torch.optim.AdamW(slow, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused,
                            foreach=None if fused else True)
    step, cpu_before = 0, 0.0
    if cfg.resume:
        need = ("config", "model", "ema", "optimizer", "step", "rng", "pool")
        ckpt = sfvgen.load_checkpoint(ckpt_path, require=need)
        try:
            model.load_state_dict(ckpt["model"])
            ema.load_state_dict(ckpt["ema"])
            opt.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"{ckpt_path}: cannot resume from it ({str(e).splitlines()[0][:200]})") from None
        step, cpu_before = ckpt["step"], ckpt.get("cpu_minutes", 0.0)
        set_rng_state(rng, ckpt["rng"], device)
        pool.seeds = list(ckpt["pool"])
        if master and not quiet:
            print(f"resumed from {ckpt_path} at step {step}")
    if cfg.loop:  # Algorithm 1b: the fast weights Theta ride on the slow model; the optimizer holds Phi only
        sfvgen.add_lora(model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, seed=cfg.seed)
    diffusion = Diffusion(cfg, device)
    net = torch.compile(model) if cfg.compile and device.type == "cuda" else model
    # forward/backward through DDP (it averages gradients over ranks); EMA and checkpoints use `model`
    if ddp:
        net = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)
    use_bf16 = cfg.bf16 and device.type == "cuda"

    def cpu_minutes():  # this run's CPU time (all threads) plus the runs it resumed
        return cpu_before + (time.process_time() - cpu_start) / 60

    def checkpoint():
        if master:
            sfvgen.save_checkpoint(ckpt_path, dict(
                config=asdict(cfg), step=step, model=sfvgen.slow_state_dict(model), ema=ema.state_dict(),
                optimizer=opt.state_dict(), rng=rng_state(rng, device), pool=pool.seeds,
                cpu_minutes=cpu_minutes()))
            # a half-precision EMA snapshot (training curves)
            if cfg.snapshot_every and step % cfg.snapshot_every == 0:
                export(ckpt_path, os.path.join(cfg.out, f"snap_{step:06d}.pt"), quiet=True)

    stop = Stop()
    losses, t_start, cpu_start = [], time.time(), time.process_time()
    bar = tqdm(total=cfg.max_steps, initial=step, disable=quiet or not master,
               desc=f"{'slow-fast loop' if cfg.loop else 'slow learning'} ({n_params / 1e6:.2f}M params, "
                    f"{device}{f' x {world}' if ddp else ''})")
    try:
        while step < cfg.max_steps:
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, step)
            opt.zero_grad(set_to_none=True)
            # the slow-fast learning loop: inner loop over episodes (fast), then the slow gradient
            if cfg.loop:
                batch = episodes(rng, pool.step(rng))
                loss, _ = sfvgen.slow_fast_iteration(model, diffusion, cfg, batch, window=window)
                batch_loss = torch.tensor(loss)  # Phi's .grad holds the slow loss's gradient
            else:  # slow learning: the masked conditional loss on a batch of (context, action, target) clips
                ctx, tok, tgt = batch_to(device, clips(rng, pool.step(rng)), model.autoencoder)
                # t, eps, dropped actions for the whole (global) batch
                draws = diffusion.draw(tgt, cfg.p_uncond)
                if ddp:  # every rank drew the whole global batch and its noise (cheap) and keeps its rows
                    ctx, tok, tgt = ctx[rows], tok[rows], tgt[rows]
                    draws = [None if d is None else d[rows] for d in draws]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    loss = diffusion.loss(net, ctx, tgt, tok, draws=draws)
                loss.backward()
                batch_loss = loss.detach()
            # the mean of the ranks' slice means is the global batch's loss; all ranks see the same value
            if ddp:
                batch_loss = batch_loss.clone()
                dist.all_reduce(batch_loss)
                batch_loss = batch_loss / world
            if not torch.isfinite(batch_loss):
                kept = f"the last good checkpoint is kept at {ckpt_path}" if os.path.exists(ckpt_path) else \
                    "no checkpoint was written yet"
                msg = f"error: loss is {batch_loss.item()} at step {step}; stopping ({kept}). Try a lower " \
                      f"--lr or a larger --warmup."
                raise SystemExit(msg if master else 1)  # every rank stops; rank 0 says why
            torch.nn.utils.clip_grad_norm_(slow, cfg.grad_clip)
            opt.step()
            # EMA: theta_ema = d theta_ema + (1 - d) theta
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                torch._foreach_lerp_(ema_slow, slow, 1 - decay)
            step += 1
            losses.append(batch_loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr_at(cfg, step):.1e}")
            if step % cfg.log_every == 0 and master and not quiet:
                recent = losses[-cfg.log_every:]  # fewer right after a resume
                log(cfg, bar.write, step=step, loss=round(sum(recent) / len(recent), 5),
                    minutes=round((time.time() - t_start) / 60, 2), cpu_minutes=round(cpu_minutes(), 2))
            if step % cfg.eval_every == 0 and not quiet:
                if master:  # on the EMA weights, which are the same on every rank
                    scores = validation(ema, diffusion, cfg, device, val_clips)
                    sample_gif(ema, diffusion, cfg, os.path.join(cfg.out, f"sample_{step:06d}.gif"))
                    log(cfg, bar.write, step=step, **scores)
                if ddp:
                    dist.barrier()  # the other ranks wait for rank 0 here
            out_of_time = cfg.max_minutes > 0 and time.time() - t_start > 60 * cfg.max_minutes
            stop_now = stop.asked is not None
            if ddp:  # the ranks must agree to stop at the same step, or the others would wait for it forever
                flags = torch.tensor([float(out_of_time), float(stop_now)], device=device)
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                out_of_time, stop_now = bool(flags[0]), bool(flags[1])
            if step % cfg.ckpt_every == 0 or step == cfg.max_steps or out_of_time or stop_now or \
                    (cfg.snapshot_every and step % cfg.snapshot_every == 0):
                checkpoint()
            if stop_now:
                if master:
                    name = signal.Signals(stop.asked).name if stop.asked else "a signal on another rank"
                    print(f"\nstopped by {name} at step {step}: checkpoint saved to {ckpt_path}; continue "
                          f"with the same flags and --resume")
                if ddp:
                    dist.destroy_process_group()
                sys.exit(130 if stop.asked in (None, signal.SIGINT) else 128 + stop.asked)
            if out_of_time:
                if master:
                    bar.write(f"stopping at step {step}: --max-minutes {cfg.max_minutes} reached")
                break
    finally:
        bar.close()
        stop.restore()
    if ddp:
        dist.destroy_process_group()
    return dict(losses=losses, step=step)


def export(src, dst, quiet=False):
    """A small sharing checkpoint: config, step and the EMA weights in half precision."""
    ckpt = sfvgen.load_checkpoint(src)
    weights = ckpt.get("ema") or ckpt["model"]
    small = dict(config=ckpt["config"], step=ckpt.get("step", 0), cpu_minutes=ckpt.get("cpu_minutes", 0.0),
                 model={k: v.half() if v.is_floating_point() else v for k, v in weights.items()})
    sfvgen.save_checkpoint(dst, small)
    if not quiet:
        print(f"wrote {dst} ({os.path.getsize(dst) / 1e6:.1f} MB, step {small['step']})")


if __name__ == "__main__":
    parser = cli.config_parser(__doc__.split("\n")[0], extra=lambda p: p.add_argument(
        "--export", nargs=2, metavar=("CKPT", "OUT"),
        help="write CKPT's EMA weights in half precision to OUT (for sharing), then stop"))
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
    except ValueError as e:  # a bad checkpoint, --init file or video folder: one line that names it
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:  # a second Ctrl-C: stop now
        print(f"\nstopped at once; the last checkpoint in {cfg.out} stays (--resume continues from it)",
              file=sys.stderr)
        sys.exit(130)
