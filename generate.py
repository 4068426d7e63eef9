"""Generate a long action-driven video with and without TEMP-LoRA fast learning (Algorithm 1a).

    python generate.py --ckpt checkpoints/tiny.pt --world-seed 200001 \\
        --actions "go right*2,go down*2,go up*2,go left*2"
    python generate.py --ckpt runs/mine/ckpt.pt --data my_videos --video pan3.mp4   # your video's first frame
    python generate.py --ckpt runs/mine/ckpt.pt --first-frame photo.png --actions "go right*4,go left*4"

writes out/video.gif (without memory | with memory | the truth), out/frames.npy and out/metrics.json, and
prints PSNR, SSIM, the return leg's PSNR, revisit consistency (SRC) and scene cuts of both videos against the
truth: the simulator's in the built-in world; your own frames with --data (where the video has frames for the
actions); none for --first-frame. --memory-out / --memory-in save the episodic memory (sfvgen.Memory) and
continue from it. Only the settings that change a generation are flags here (--fast-steps 8, --lora-targets
all, --no-fast-learning, ...); the checkpoint's own config is the base. Measurements live in lab/.
"""
import math
import os
import sys
import time

import numpy as np
from tqdm import tqdm

import cli
import data
import metrics
import sfvgen
import video

DEFAULT_ACTIONS = "go right*4,go left*4"


def extra_flags(p):
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py (or its --export)")
    p.add_argument("--world-seed", type=int, default=None,
                   help="built-in world to generate in (default: the first test world)")
    p.add_argument("--data", dest="data_dir", default=None,
                   help="a folder of your videos with annotations.jsonl (with --video)")
    p.add_argument("--video", default=None,
                   help="with --data: the video to start from (its name in annotations.jsonl)")
    p.add_argument("--start-chunk", type=int, default=0,
                   help="with --data: start at the frame before this chunk of the video")
    p.add_argument("--first-frame", default=None,
                   help="start from this picture (.png, .jpg, ...; there is no truth, so no scores)")
    p.add_argument("--actions", default=None,
                   help=f"one action per chunk: '{DEFAULT_ACTIONS}' (default: the video's annotated "
                        f"actions with --data, else '{DEFAULT_ACTIONS}')")
    p.add_argument("--out", dest="out_dir", default="out", help="output folder (video, frames, metrics)")
    p.add_argument("--gif", default="video.gif", help="name of the video in --out: .gif or .mp4")
    p.add_argument("--memory-out", default=None,
                   help="save the episodic memory (sfvgen.Memory) of the video with memory here")
    p.add_argument("--memory-in", default=None, help="continue a video from a saved episodic memory")


def check_args(args):
    """Refuse flag combinations that cannot work, before any work starts."""
    if args.data_dir and not args.video:
        raise ValueError("--data needs --video NAME: the video to start from")
    if args.video and not args.data_dir:
        raise ValueError("--video needs --data DIR: the folder with annotations.jsonl")
    if sum(map(bool, (args.data_dir, args.first_frame, args.world_seed is not None))) > 1:
        raise ValueError("start from one of --world-seed, --data/--video or --first-frame")
    if args.memory_in and (args.data_dir or args.first_frame):
        raise ValueError("--memory-in continues a saved video: leave out --data and --first-frame")
    if not args.gif.endswith((".gif", ".mp4")):
        raise ValueError(f"--gif {args.gif}: the video is a .gif or an .mp4")
    if args.gif.endswith(".mp4"):
        try:
            import imageio_ffmpeg  # noqa: F401  (imageio's .mp4 backend, in requirements.txt)
        except ImportError:
            raise ValueError("--gif *.mp4 needs imageio's ffmpeg backend: pip install imageio-ffmpeg "
                             "(in requirements.txt), or write a .gif") from None
    if args.actions:
        data.parse_actions(args.actions)


def start(args, cfg, memory):
    """Where the video starts and what it is scored against: dict(first: (H, W, 3) uint8, None when
    continuing; actions; truth: (N, H, W, 3) uint8 or None; positions: the camera poses (N, 2) or None;
    seed: the world seed or None; name: what the truth is called)."""
    K = cfg.chunk
    actions = data.parse_actions(args.actions) if args.actions else None
    if memory is not None:  # continue a video: the truth of the built-in world it is in, when it is in one
        actions = actions or data.parse_actions(DEFAULT_ACTIONS)
        seed = memory.world_seed if memory.world_seed is not None else args.world_seed
        if seed is None:
            return dict(first=None, actions=actions, truth=None, positions=None, seed=None, name="no truth")
        truth, positions = data.render_episode(seed, memory.actions + actions, cfg.world())
        n = len(actions) * K  # only the new frames are generated and scored
        return dict(first=None, actions=actions, truth=truth[-n:], positions=positions[-n:], seed=seed,
                    name="ground truth")
    if args.first_frame:
        first = video.resize(video.read_picture(args.first_frame)[None], cfg.size)[0]
        return dict(first=first, actions=actions or data.parse_actions(DEFAULT_ACTIONS), truth=None,
                    positions=None, seed=None, name="no truth")
    if args.data_dir:
        ep = video.load_folder(args.data_dir, cfg.world(), only=args.video)[0]
        c = args.start_chunk
        if not 0 <= c < len(ep.actions):
            raise ValueError(f"--start-chunk {c}: {ep.name} has chunks 0..{len(ep.actions) - 1}")
        annotated, frames = ep.actions[c:], ep.frames[c * K:]
        actions = actions or annotated
        # your frames are the truth of the first n chunks (whose actions match the video's); poses follow
        # the actions
        same = [a == b for a, b in zip(actions, annotated)]
        n = same.index(False) if False in same else len(same)
        return dict(first=frames[0], actions=actions, truth=frames[:1 + n * K] if n else None,
                    positions=data.trajectory(actions, (0, 0), cfg.world()), seed=None, name="your frames")
    seed = cfg.test_seeds[0] if args.world_seed is None else args.world_seed
    actions = actions or data.parse_actions(DEFAULT_ACTIONS)
    truth, positions = data.render_episode(seed, actions, cfg.world())
    return dict(first=truth[0], actions=actions, truth=truth, positions=positions, seed=seed,
                name="ground truth")


def main(argv=None):
    parser = cli.config_parser(__doc__.split("\n")[0], extra_flags, only=cli.GENERATION_FIELDS,
                               script="generate.py", skip=("out", "data"))
    args = parser.parse_args(argv)
    try:
        check_args(args)
        cli.check_writable(args.out_dir)
        model, cfg, diffusion = cli.build(args)
        memory = sfvgen.Memory.load(args.memory_in) if args.memory_in else None
        where = start(args, cfg, memory)
        if sfvgen.load_checkpoint(args.ckpt)["config"].get("data") and where["seed"] is not None:
            print(f"warning: {args.ckpt} was trained on your videos (--data); this generates in the built-in "
                  f"world {where['seed']}", file=sys.stderr)
        return generate(args, model, cfg, diffusion, where, memory)
    except ValueError as e:
        sys.exit(f"error: {e}")


def generate(args, model, cfg, diffusion, where, memory=None):
    """Both videos (or the continued one), their scores and every file; returns the scores."""
    actions, truth, K = where["actions"], where["truth"], cfg.chunk
    lora_model = sfvgen.with_lora(model, cfg) if cfg.fast_learning or memory is not None else None
    if memory is not None:
        try:
            sfvgen.load_lora_state(lora_model, memory.lora)
        except ValueError as e:
            raise ValueError(f"{args.memory_in}: memory from another model or LoRA setting ({e})") from None
    arms = {"with memory": True} if memory is not None else \
        {"without memory": False, "with memory": True} if cfg.fast_learning else {"generated": False}
    results, shown = {}, []
    for name, fast in arms.items():
        t0 = time.time()
        res = sfvgen.generate_long(lora_model if fast else model, diffusion, cfg, where["first"], actions,
                                   fast_learning=fast, seed=cfg.seed, memory=memory,
                                   progress=lambda x: tqdm(x, desc=name, leave=False))
        frames, s = res["frames"], dict(seconds_per_frame=(time.time() - t0) / (len(actions) * K))
        n = 0 if truth is None else len(truth)  # scored where the truth has frames (your video may end first)
        if n and memory is None:
            s.update(metrics.score(frames[:n], truth, where["positions"][:n], K, (n - 1) // K // 2))
        elif n:  # a continuation: its new frames only
            s.update(psnr=metrics.psnr(frames[:n], truth), ssim=metrics.ssim(frames[:n], truth))
        results[name] = s
        shown.append(frames)
        video.save_npy(os.path.join(args.out_dir, "frames.npy" if fast else "frames_no_memory.npy"), frames)
        if fast and args.memory_out:
            res["memory"].world_seed = where["seed"]
            res["memory"].save(args.memory_out)
    write_outputs(args, shown, where, results, list(arms), memory is None, K)
    return results


def write_outputs(args, shown, where, results, arms, from_start, K):
    """The side-by-side video (a label over each panel, PSNR bars, revisits marked), metrics.json, and the
    lines printed."""
    truth, positions, N = where["truth"], where["positions"], len(shown[0])
    panels, labels, bars, revisit = shown, arms, None, None
    if truth is not None:  # held on its last frame where your video ends before the actions do
        panels = shown + [np.concatenate([truth, np.repeat(truth[-1:], N - len(truth), 0)])]
        labels = arms + [where["name"]]
        bars = panels[-1] if len(truth) == N else None  # PSNR bars only where every frame has its truth
    if positions is not None and from_start:
        revisit = metrics.revisit_mask(positions, 2 * K, N)
    path = os.path.join(args.out_dir, args.gif)
    video.write_video(path, video.panels(*panels, truth=bars, revisit=revisit, labels=labels))
    video.write_json(os.path.join(args.out_dir, "metrics.json"), dict(
        world_seed=where["seed"], actions=where["actions"], truth=where["name"], results=results))
    for name, s in results.items():
        if "psnr" not in s:
            print(f"{name:>15}: no scores (no truth to compare with)")
            continue
        src = "no revisit" if math.isnan(s.get("src_psnr", math.nan)) else f"{s['src_psnr']:.2f} dB"
        extra = f"  return-leg PSNR {s['return_psnr']:.2f} dB  SRC-PSNR {src}  " \
                f"scene cuts {s['scene_cuts']}" if "return_psnr" in s else ""
        print(f"{name:>15}: PSNR {s['psnr']:.2f} dB  SSIM {s['ssim']:.3f}{extra}")
    marks = "; bars: PSNR against the truth, yellow: a revisit" if bars is not None else ""
    print(f"wrote {path} ({' | '.join(labels)}{marks}) and {args.out_dir}/metrics.json")


if __name__ == "__main__":
    main()
