"""Generate a long action-driven video with and without TEMP-LoRA fast learning (Algorithm 1a).

    python generate.py --ckpt checkpoints/tiny.pt --world-seed 200001 --actions "go right*2,go down*2,go up*2,go left*2"

writes out/video.gif (without memory | with memory | ground truth), out/frames.npy, out/metrics.json, and prints
PSNR, SSIM, the return leg's PSNR, revisit consistency (SRC) and scene cuts of both videos against the simulator.
--memory-out / --memory-in save the episodic memory (Theta, its optimizer, the last chunk) and continue from it.
Only the settings that change a generation are flags here (--fast-steps 8, --lora-targets all, --no-fast-learning,
...); the checkpoint's own config is the base. Measurements and comparisons live in lab/ (python -m lab.eval ...).
"""
import json
import os
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

import cli
import data
import metrics
import sfvgen


def extra_flags(p):
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py (or its --export)")
    p.add_argument("--world-seed", type=int, default=None, help="world to generate in (default: the first test world)")
    p.add_argument("--actions", default="go right*4,go left*4", help="one action per chunk: 'go right*4,go left*4'")
    p.add_argument("--out", dest="out_dir", default="out", help="output folder (GIF, frames, metrics)")
    p.add_argument("--gif", default="video.gif", help="name of the video in --out (.gif, or .mp4 with an ffmpeg plugin)")
    p.add_argument("--memory-out", default=None, help="save the episodic memory (LoRA, optimizer, chunk, context) here")
    p.add_argument("--memory-in", default=None, help="continue a video from a saved episodic memory")


def build(args):
    """Model from the checkpoint, config = checkpoint config + flags. Returns (model, cfg, diffusion)."""
    device = cli.pick_device(args.device or "auto")
    model, stored, _ = sfvgen.load_model(args.ckpt, device)
    cfg = cli.config_from_args(args, base=stored)
    cli.check_weight_fields(args.ckpt, stored, cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return model, cfg, sfvgen.Diffusion(cfg, device)


def score(gen, truth, positions, cfg, n_return):
    """Frame metrics against the simulator's ground truth (gen, truth: (N, H, W, 3) uint8); the return leg is
    the last n_return chunks; SRC pairs revisits more than one context window (2K frames) apart."""
    K = cfg.chunk
    ret = slice(len(gen) - n_return * K, len(gen))
    out = slice(1, len(gen) - n_return * K)
    src = metrics.src_metrics(gen, truth, positions, min_gap=2 * K)
    chunks = [slice(1 + i * K, 1 + (i + 1) * K) for i in range((len(gen) - 1) // K)]  # after the start frame
    return dict(psnr=metrics.psnr(gen[1:], truth[1:]), ssim=metrics.ssim(gen[1:], truth[1:]),
                outward_psnr=metrics.psnr(gen[out], truth[out]),
                return_psnr=metrics.psnr(gen[ret], truth[ret]) if n_return else float("nan"),
                src_psnr=src["src_psnr"], src_ssim=src["src_ssim"], scene_cuts=metrics.count_scene_cuts(gen),
                chunk_psnr=[metrics.psnr(gen[c], truth[c]) for c in chunks],
                chunk_ssim=[metrics.ssim(gen[c], truth[c]) for c in chunks])


def save_npy(path, array):
    """np.save to a temp name, then rename: never a half-written file."""
    tmp = path + ".tmp.npy"
    np.save(tmp, array)
    os.replace(tmp, path)


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def write_video(path, frames, fps=8):
    if path.endswith(".mp4"):
        import imageio.v3 as iio
        tmp = path + ".tmp.mp4"
        iio.imwrite(tmp, frames, fps=fps)
        os.replace(tmp, path)
    else:
        data.write_gif(path, frames, fps)


def panels(*videos, truth=None, revisit=None, scale=4):
    """Side by side, scaled up: (N, scale (H + 4), n scale (W + 2), 3). Under each panel a bar whose length is
    the frame's PSNR against `truth` (10 dB: none, 25 dB: full width); frames that revisit a place seen more
    than a context window before (`revisit`, (N,) bool) get a yellow bar end: compare the panels there."""
    N, H, W, _ = videos[0].shape
    cols = []
    for v in videos:
        bar = np.full((N, 4, W, 3), 255, np.uint8)
        if truth is not None and v is not truth:
            p = metrics.psnr_per_frame(v, truth)
            for n in range(N):
                bar[n, 1:3, :int(np.clip((p[n] - 10) / 15, 0, 1) * W)] = (60, 60, 60)
        if revisit is not None:
            bar[revisit, :, -3:] = (240, 200, 0)
        cols.append(np.pad(np.concatenate([v, bar], axis=1), ((0, 0), (0, 0), (0, 2), (0, 0)), constant_values=255))
    return np.concatenate(cols, axis=2).repeat(scale, 1).repeat(scale, 2)


def revisits(positions, min_gap):
    """(N,) bool: the frame shows a camera pose first seen at least min_gap frames before."""
    return np.array([any((positions[:max(n - min_gap + 1, 0)] == positions[n]).all(1)) for n in range(len(positions))])


def main(argv=None):
    parser = cli.config_parser(__doc__.split("\n")[0], extra_flags, only=cli.GENERATION_FIELDS, script="generate.py",
                               skip=("out",))
    args = parser.parse_args(argv)
    try:
        actions = data.parse_actions(args.actions)  # refuse bad input before any work starts
        cli.check_writable(args.out_dir)
        model, cfg, diffusion = build(args)
        return generate(args, model, cfg, diffusion, actions)
    except ValueError as e:
        sys.exit(f"error: {e}")


def generate(args, model, cfg, diffusion, actions):
    seed = cfg.test_seeds[0] if args.world_seed is None else args.world_seed
    memory, before = None, []
    if args.memory_in:  # continue a video: the fast weights, optimizer and last context come from the file
        memory = sfvgen.load_checkpoint(args.memory_in, require=("history", "chunk", "lora", "opt", "actions", "gen", "fast_gen"))
        before = list(memory["actions"])
    lora_model = sfvgen.with_lora(model, cfg) if cfg.fast_learning or memory is not None else None  # built once
    if memory is not None:
        try:
            sfvgen.load_lora_state(lora_model, memory["lora"])
        except ValueError as e:
            raise ValueError(f"{args.memory_in}: memory from another model or LoRA setting ({e})") from None
    truth, positions = data.render_episode(seed, before + actions, cfg.world())
    if memory is None:
        arms = {"without memory": False, "with memory": True} if cfg.fast_learning else {"generated": False}
    else:
        arms = {"with memory": True}
        new = len(actions) * cfg.chunk  # only the new frames are generated and scored
        truth, positions = truth[-new:], positions[-new:]
    results, shown = {}, []
    for name, fast in arms.items():
        t0 = time.time()
        res = sfvgen.generate_long(lora_model if fast else model, diffusion, cfg, truth[0], actions, fast_learning=fast,
                                   seed=cfg.seed, memory=memory, progress=lambda x: tqdm(x, desc=name, leave=False))
        frames = res["frames"]
        s = score(frames, truth, positions, cfg, len(actions) // 2) if memory is None else \
            dict(psnr=metrics.psnr(frames, truth), ssim=metrics.ssim(frames, truth))
        results[name] = {**s, "seconds_per_frame": (time.time() - t0) / (len(actions) * cfg.chunk)}
        shown.append(frames)
        save_npy(os.path.join(args.out_dir, "frames_no_memory.npy" if name == "without memory" else "frames.npy"), frames)
        if fast and args.memory_out:
            sfvgen.save_checkpoint(args.memory_out, {**res["memory"], "actions": before + actions})
    video = os.path.join(args.out_dir, args.gif)
    write_video(video, panels(*shown, truth, truth=truth, revisit=revisits(positions, 2 * cfg.chunk)))
    write_json(os.path.join(args.out_dir, "metrics.json"), dict(world_seed=seed, actions=actions, results=results))
    for name, s in results.items():
        extra = f"  return-leg PSNR {s['return_psnr']:.2f} dB  SRC-PSNR {s['src_psnr']:.2f} dB  scene cuts {s['scene_cuts']}" \
            if "return_psnr" in s else ""
        print(f"{name:>15}: PSNR {s['psnr']:.2f} dB  SSIM {s['ssim']:.3f}{extra}")
    print(f"wrote {video} ({' | '.join(list(arms) + ['ground truth'])}; bars: PSNR against the truth, yellow: a revisit) "
          f"and {args.out_dir}/metrics.json")
    return results


if __name__ == "__main__":
    main()
