"""Generate a long action-driven video with and without TEMP-LoRA fast learning (Algorithm 1a).

    python generate.py --ckpt checkpoints/tiny.pt --world-seed 200001 --actions "go right*2,go down*2,go up*2,go left*2"
    python generate.py --ckpt runs/mine/ckpt.pt --data my_videos --video pan3.mp4     # from your video's first frame
    python generate.py --ckpt runs/mine/ckpt.pt --first-frame photo.png --actions "go right*4,go left*4"

writes out/video.gif (without memory | with memory | the truth), out/frames.npy, out/metrics.json, and prints PSNR,
SSIM, the return leg's PSNR, revisit consistency (SRC) and scene cuts of both videos against the truth: the
simulator's in the built-in world, your own frames with --data (scored where the video has frames for the actions),
none for --first-frame. --memory-out / --memory-in save the episodic memory (sfvgen.Memory) and continue from it.
Only the settings that change a generation are flags here (--fast-steps 8, --lora-targets all, --no-fast-learning,
...); the checkpoint's own config is the base. Measurements and comparisons live in lab/ (python -m lab.eval ...).
"""
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


def extra_flags(p):
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py (or its --export)")
    p.add_argument("--world-seed", type=int, default=None, help="built-in world to generate in (default: the first test world)")
    p.add_argument("--data", dest="data_dir", default=None, help="a folder of your videos with annotations.jsonl (with --video)")
    p.add_argument("--video", default=None, help="with --data: the video to start from (its name in annotations.jsonl)")
    p.add_argument("--start-chunk", type=int, default=0, help="with --data: start at the frame before this chunk of the video")
    p.add_argument("--first-frame", default=None, help="start from this picture (.png, .jpg, ...; no truth, so no scores)")
    p.add_argument("--actions", default=None, help="one action per chunk: 'go right*4,go left*4' (default: the video's "
                                                   "annotated actions with --data, else 'go right*4,go left*4')")
    p.add_argument("--out", dest="out_dir", default="out", help="output folder (video, frames, metrics)")
    p.add_argument("--gif", default="video.gif", help="name of the video in --out: .gif or .mp4")
    p.add_argument("--memory-out", default=None, help="save the episodic memory (sfvgen.Memory) of the video with memory here")
    p.add_argument("--memory-in", default=None, help="continue a video from a saved episodic memory")


def start(args, cfg):
    """Where the video starts and what it is scored against: (first frame (H, W, 3) uint8, actions, truth
    (N, H, W, 3) or None, camera poses (N, 2) or None, world seed or None, what the truth is called)."""
    if args.first_frame:
        frame = video.resize(video.read_video(args.first_frame)[:1], cfg.size)[0]
        actions = data.parse_actions(args.actions or "go right*4,go left*4")
        return frame, actions, None, None, None, "no truth"
    if args.data_dir:
        ep = video.load_folder(args.data_dir, cfg.world(), only=args.video)[0]
        K, c = cfg.chunk, args.start_chunk
        if not 0 <= c < len(ep.actions):
            raise ValueError(f"--start-chunk {c}: {ep.name} has chunks 0..{len(ep.actions) - 1}")
        annotated, frames = ep.actions[c:], ep.frames[c * K:]
        actions = data.parse_actions(args.actions) if args.actions else annotated
        n = next((i for i, (a, b) in enumerate(zip(actions, annotated)) if a != b), min(len(actions), len(annotated)))
        # your frames are the truth of the chunks whose actions match the video's; the poses follow from the actions
        truth = frames[:1 + n * K] if n else None
        return frames[0], actions, truth, data.trajectory(actions, (0, 0), cfg.world()), None, "your frames"
    seed = cfg.test_seeds[0] if args.world_seed is None else args.world_seed
    actions = data.parse_actions(args.actions or "go right*4,go left*4")
    truth, positions = data.render_episode(seed, actions, cfg.world())
    return truth[0], actions, truth, positions, seed, "ground truth"


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


def main(argv=None):
    parser = cli.config_parser(__doc__.split("\n")[0], extra_flags, only=cli.GENERATION_FIELDS, script="generate.py",
                               skip=("out", "data"))
    args = parser.parse_args(argv)
    try:
        check_args(args)
        if args.actions:
            data.parse_actions(args.actions)  # refuse bad input before any work starts
        cli.check_writable(args.out_dir)
        model, cfg, diffusion = cli.build(args)
        memory = sfvgen.Memory.load(args.memory_in) if args.memory_in else None
        if memory is None:
            first, actions, truth, positions, seed, truth_name = start(args, cfg)
        else:  # continue a video: the truth of the built-in world it is in, when it is in one
            seed = memory.world_seed if memory.world_seed is not None else args.world_seed
            actions = data.parse_actions(args.actions or "go right*4,go left*4")
            first, truth, positions, truth_name = None, None, None, "no truth"
            if seed is not None:
                full, positions = data.render_episode(seed, memory.actions + actions, cfg.world())
                truth, positions, truth_name = full[-len(actions) * cfg.chunk:], positions[-len(actions) * cfg.chunk:], "ground truth"
        if sfvgen.load_checkpoint(args.ckpt)["config"].get("data") and seed is not None:
            print(f"warning: {args.ckpt} was trained on your videos (--data); this generates in the built-in world {seed}",
                  file=sys.stderr)
        return generate(args, model, cfg, diffusion, first, actions, truth, positions, seed, truth_name, memory)
    except ValueError as e:
        sys.exit(f"error: {e}")


def generate(args, model, cfg, diffusion, first, actions, truth, positions, seed, truth_name, memory=None):
    """Both videos (or the continued one), their scores, and every file; returns the scores."""
    lora_model = sfvgen.with_lora(model, cfg) if cfg.fast_learning or memory is not None else None  # built once
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
        res = sfvgen.generate_long(lora_model if fast else model, diffusion, cfg, first, actions, fast_learning=fast,
                                   seed=cfg.seed, memory=memory, progress=lambda x: tqdm(x, desc=name, leave=False))
        frames = res["frames"]
        s = dict(seconds_per_frame=(time.time() - t0) / (len(actions) * cfg.chunk))
        if truth is not None:  # scored on the frames the truth has (your video may be shorter than the actions)
            n = len(truth)
            s.update(metrics.score(frames[:n], truth, positions[:n], cfg.chunk, (n - 1) // cfg.chunk // 2)
                     if memory is None else dict(psnr=metrics.psnr(frames[:n], truth), ssim=metrics.ssim(frames[:n], truth)))
        results[name] = s
        shown.append(frames)
        video.save_npy(os.path.join(args.out_dir, "frames_no_memory.npy" if name == "without memory" else "frames.npy"), frames)
        if fast and args.memory_out:
            res["memory"].world_seed = seed
            res["memory"].save(args.memory_out)
    N = len(shown[0])
    panel_truth = None if truth is None else np.concatenate([truth, np.repeat(truth[-1:], N - len(truth), 0)])
    labels = list(arms) + ([truth_name] if truth is not None else [])
    revisit = metrics.revisit_mask(positions, 2 * cfg.chunk, N) if positions is not None and memory is None else None
    path = os.path.join(args.out_dir, args.gif)
    bars = panel_truth if truth is not None and len(truth) == N else None  # PSNR bars only where every frame has its truth
    video.write_video(path, video.panels(*shown, *([panel_truth] if truth is not None else []), truth=bars,
                                         revisit=revisit, labels=labels))
    video.write_json(os.path.join(args.out_dir, "metrics.json"),
                     dict(world_seed=seed, actions=actions, truth=truth_name, results=results))
    for name, s in results.items():
        extra = f"  return-leg PSNR {s['return_psnr']:.2f} dB  SRC-PSNR {s['src_psnr']:.2f} dB  scene cuts {s['scene_cuts']}" \
            if "return_psnr" in s else ""
        scores = f"PSNR {s['psnr']:.2f} dB  SSIM {s['ssim']:.3f}{extra}" if "psnr" in s else \
            "no scores (no truth to compare with)"
        print(f"{name:>15}: {scores}")
    print(f"wrote {path} ({' | '.join(labels)}; bars: PSNR against the truth, yellow: a revisit) "
          f"and {args.out_dir}/metrics.json")
    return results


if __name__ == "__main__":
    main()
