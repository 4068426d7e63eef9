"""Long action-driven video generation, with and without TEMP-LoRA fast learning, and its evaluation.

    python generate.py --ckpt CKPT --world-seed 12345 --actions "go right*4,go left*4" --out out/
        one video from the world's first frame; out/video.gif = without memory | with memory | ground truth
        (only generated | ground truth with --fast off), out/frames.npy, out/metrics.json
    python generate.py --ckpt CKPT --eval 20 --trajectory out-and-back [--ablate]
        held-out test episodes, fast learning off and on (and the ablations): a table, also as JSON
    python generate.py --ckpt CKPT --plan 20 --loop-ckpt LOOP_CKPT
        planning (plan.py): outward actions, then 'go back'; inverse dynamics turns the frames into moves (Table 2)
    python generate.py --ckpt CKPT --memory-matrix 20 [--trajectory triangle] [--memory-cost]
        the memory matrix (matrix.py): every way to remember on the same worlds, controls, curves, calibration
    python generate.py --ckpt CKPT --memory-probe 20 | --memory-span 20
        what the fast weights keep, on ground-truth legs (probe.py): recall in PSNR; losses chunk by chunk
    python generate.py --ckpt CKPT --eval-slow 20
        single-chunk prediction against the "repeat the last context frame" baseline, and rollouts

Every Config field is a flag here too (--fast-steps 8, --lora-targets all, ...): the checkpoint's own
config is the base and the flags given override it.
"""
import json
import os
import resource
import sys
import time
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

import cli
import data
import matrix
import metrics
import plan
import probe
import sfvgen
import train


def extra_flags(p):
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py (or its --export)")
    p.add_argument("--world-seed", type=int, default=None, help="world to generate in (default: the first test world)")
    p.add_argument("--actions", default="go right*4,go left*4", help="one action per chunk: 'go right*4,go left*4'")
    p.add_argument("--out", dest="out_dir", default="out", help="output folder (GIF, frames, metrics)")
    p.add_argument("--gif", default="video.gif", help="name of the video in --out (.gif, or .mp4 with an ffmpeg plugin)")
    p.add_argument("--memory-out", default=None, help="save the episodic memory (LoRA, optimizer, chunk, context) here")
    p.add_argument("--memory-in", default=None, help="continue a video from a saved episodic memory")
    p.add_argument("--eval", type=int, default=0, help="evaluate on this many held-out test worlds")
    p.add_argument("--trajectory", default="out-and-back", choices=data.KINDS,
                   help="episode kind for --eval, --memory-probe and --memory-matrix")
    p.add_argument("--out-chunks", type=int, default=4, help="chunks of the outward leg in --eval episodes")
    p.add_argument("--ablate", action="store_true", help="with --eval: add LoRA target sets, fast rules and controls "
                   "(wrong memory; on revisit kinds the LoRA frozen at the turn, this world's and another world's)")
    p.add_argument("--arms", default=None,
                   help="with --eval: only these rows, comma-separated (the baseline row is always run); "
                        "with --plan or --memory-matrix: only these rows")
    p.add_argument("--memory-probe", type=int, default=0,
                   help="on this many worlds: fast-learn the ground-truth outward leg, generate the return from the turning point")
    p.add_argument("--memory-span", type=int, default=0,
                   help="on this many worlds: how the loss of each learned chunk changes as fast learning goes on (no sampling)")
    p.add_argument("--teacher-forced", action="store_true",
                   help="with --memory-probe: generate each return chunk from the true chunk before it, not from the model's own frames")
    p.add_argument("--retrace", default="off", choices=("off", "aligned", "shifted"),
                   help="with --memory-probe / --memory-span (ours, a check): learn the outward leg with rehearsed "
                        "conditional pairs plus reversed outward windows, one frame off the return's chunks "
                        "(aligned) or exactly on them (shifted), instead of the fast rule")
    p.add_argument("--plan", type=int, default=0,
                   help="planning on this many test worlds: walk a path, then 'go back'; frames -> inverse dynamics -> simulator")
    p.add_argument("--loop-ckpt", default=None, help="with --plan: loop-trained weights (train.py --loop on) for the full-method row")
    p.add_argument("--idm", default="checkpoints/idm.pt", help="inverse-dynamics checkpoint for --plan (trained and saved here if missing)")
    p.add_argument("--memory-matrix", type=int, default=0,
                   help="the memory matrix (matrix.py) on this many test worlds: every way to remember, same weights, with controls")
    p.add_argument("--no-controls", action="store_true", help="with --memory-matrix: skip the reset and paired-history controls")
    p.add_argument("--memory-cost", action="store_true",
                   help="seconds and peak memory per chunk as the history grows, for the memory arms (a process per point)")
    p.add_argument("--eval-slow", type=int, default=0, help="single-chunk prediction on this many test worlds")
    p.add_argument("--rollouts", type=int, default=20, help="with --eval-slow: 8-chunk rollouts (PSNR per chunk) on this many worlds")


def save_npy(path, array):
    """np.save to a temp name, then rename: never a half-written file."""
    tmp = path + ".tmp.npy"
    np.save(tmp, array)
    os.replace(tmp, path)


def build(args):
    """Model from the checkpoint, config = checkpoint config + flags; LoRA added when fast learning may run."""
    device = cli.pick_device(args.device or "auto")
    model, stored, _ = sfvgen.load_model(args.ckpt, device)
    cfg = cli.config_from_args(args, base=stored)
    cli.check_weight_fields(args.ckpt, stored, cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return model, cfg, sfvgen.Diffusion(cfg, device)


def score(gen, truth, positions, cfg, n_return):
    """Frame metrics against the simulator's ground truth (gen, truth: (N, H, W, 3) uint8)."""
    K = cfg.chunk
    ret = slice(len(gen) - n_return * K, len(gen))  # the return leg: the last n_return chunks
    out = slice(1, len(gen) - n_return * K)
    src = metrics.src_metrics(gen, truth, positions, min_gap=2 * K)  # revisits beyond one context window
    chunks = [slice(1 + i * K, 1 + (i + 1) * K) for i in range((len(gen) - 1) // K)]  # after the start frame
    return dict(psnr=metrics.psnr(gen[1:], truth[1:]), ssim=metrics.ssim(gen[1:], truth[1:]),
                outward_psnr=metrics.psnr(gen[out], truth[out]),
                return_psnr=metrics.psnr(gen[ret], truth[ret]) if n_return else float("nan"),
                src_psnr=src["src_psnr"], src_ssim=src["src_ssim"], scene_cuts=metrics.count_scene_cuts(gen),
                chunk_psnr=[metrics.psnr(gen[c], truth[c]) for c in chunks],
                chunk_ssim=[metrics.ssim(gen[c], truth[c]) for c in chunks])


def run(model, diffusion, cfg, first, actions, fast, seed, memory=None, progress=False, frozen_lora=None):
    t0 = time.time()
    res = sfvgen.generate_long(model, diffusion, cfg, first, actions, fast=fast, seed=seed, memory=memory, frozen_lora=frozen_lora,
                               progress=(lambda x: tqdm(x, desc="chunks", leave=False)) if progress else None)
    res["seconds_per_frame"] = (time.time() - t0) / (len(actions) * cfg.chunk)
    return res


def outward_leg(model, diffusion, cfg, episodes, k, n_ret, cache):
    """Episode k's outward leg generated with fast learning (Algorithm 1a), its LoRA and state at the turn;
    computed once per episode and config (ours: the frozen-at-the-turn control, not in the paper)."""
    key = (k, repr(cfg))
    if key not in cache:
        seed, actions = episodes[k]
        truth, _ = data.render_episode(seed, actions, cfg.world())
        cache[key] = run(model, diffusion, cfg, truth[0], actions[:-n_ret], True, cfg.seed)
    return cache[key]


def peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


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


def panels(*videos, scale=3):
    """Side by side, each padded by a white line, scaled up for viewing: (N, H, n*(W+2), 3)."""
    padded = [np.pad(v, ((0, 0), (0, 0), (0, 2), (0, 0)), constant_values=255) for v in videos]
    return np.concatenate(padded, axis=2).repeat(scale, 1).repeat(scale, 2)


# ----------------------------------------------------------------------------- one long video
def cmd_generate(args, model, cfg, diffusion):
    seed = cfg.test_seeds[0] if args.world_seed is None else args.world_seed
    actions = data.parse_actions(args.actions)
    os.makedirs(args.out_dir, exist_ok=True)
    memory, before = None, []
    if args.memory_in:  # continue a video: the fast weights, optimizer and last context come from the file
        memory = sfvgen.load_checkpoint(args.memory_in, require=("history", "chunk", "lora", "opt", "actions", "gen", "fast_gen", "rng"))
        before = list(memory["actions"])
    lora_model = sfvgen.with_lora(model, cfg) if cfg.fast or memory is not None else None  # built once
    if memory is not None:
        try:
            sfvgen.load_lora_state(lora_model, memory["lora"])
        except ValueError as e:
            raise ValueError(f"{args.memory_in}: memory from another model or LoRA setting ({e})") from None
    truth, positions = data.render_episode(seed, before + actions, cfg.world())
    if memory is None:
        arms = {"without memory": False, "with memory": True} if cfg.fast else {"generated": False}
    else:
        arms = {"with memory": True}
        new = len(actions) * cfg.chunk  # only the new frames are generated and scored
        truth, positions = truth[-new:], positions[-new:]
    results, shown = {}, []
    for name, fast in arms.items():
        res = run(lora_model if fast else model, diffusion, cfg, truth[0], actions, fast, cfg.seed,
                  memory=memory, progress=True)
        frames = res["frames"]
        s = score(frames, truth, positions, cfg, len(actions) // 2) if memory is None else \
            dict(psnr=metrics.psnr(frames, truth), ssim=metrics.ssim(frames, truth))
        results[name] = {**s, "seconds_per_frame": res["seconds_per_frame"]}
        shown.append(frames)
        save_npy(os.path.join(args.out_dir, "frames_no_memory.npy" if name == "without memory" else "frames.npy"), frames)
        if fast and args.memory_out:
            sfvgen.save_checkpoint(args.memory_out, {**res["memory"], "actions": before + actions})
    video = os.path.join(args.out_dir, args.gif)
    write_video(video, panels(*shown, truth))
    write_json(os.path.join(args.out_dir, "metrics.json"), dict(world_seed=seed, actions=actions, results=results))
    for name, s in results.items():
        extra = f"  return-leg PSNR {s['return_psnr']:.2f} dB  SRC-PSNR {s['src_psnr']:.2f} dB  scene cuts {s['scene_cuts']}" \
            if "return_psnr" in s else ""
        print(f"{name:>15}: PSNR {s['psnr']:.2f} dB  SSIM {s['ssim']:.3f}{extra}")
    print(f"wrote {video} ({' | '.join(list(arms) + ['ground truth'])}) and {args.out_dir}/metrics.json")


# ----------------------------------------------------------------------------- evaluation
def eval_arms(args, cfg):
    """The rows of the evaluation table: (name, config overrides, fast on, control)."""
    arms = [("no fast learning", {}, False, None), ("TEMP-LoRA", {}, True, None)]
    if args.ablate:
        arms += [(f"targets={t}", dict(lora_targets=t), True, None) for t in sfvgen.LORA_TARGETS if t != cfg.lora_targets]
        arms += [(f"rule={r}", dict(fast_rule=r), True, None) for r in ("original", "global") if r != cfg.fast_rule]
        arms += [(f"fast_steps={k}", dict(fast_steps=k), True, None) for k in (1, 2, 8) if k != cfg.fast_steps]
        arms += [("control: wrong memory", {}, True, "wrong")]
        if args.trajectory in data.REVISIT_KINDS:  # memory with the anti-drift part held equal (see cmd_eval)
            arms += [("frozen at the turn", {}, True, "turn"),
                     ("control: another world's LoRA frozen at the turn", {}, True, "turn-wrong")]
    return keep_rows(arms, args.arms, always="no fast learning")


def keep_rows(arms, flag, always=None):
    """--arms: only the rows it names (comma-separated), plus `always`; each row is deterministic, so rows
    of separate runs line up."""
    if not flag:
        return arms
    keep = set(flag.split(",")) | {always}
    unknown = keep - {a[0] for a in arms} - {None}
    if unknown:
        raise ValueError(f"--arms: unknown rows {sorted(unknown)}; rows are {[a[0] for a in arms]}")
    return [a for a in arms if a[0] in keep]


def cmd_eval(args, model, cfg, diffusion):
    """Held-out episodes, same seeds for every row. Prints the table; eval_<trajectory>.json is written after every row."""
    device = next(model.parameters()).device
    rng = np.random.default_rng(cfg.seed)
    seeds = [cfg.test_seeds[0] + i for i in range(args.eval)]
    episodes = [(s, data.make_actions(args.trajectory, rng, n=args.out_chunks)) for s in seeds]
    # the "return leg": the second half of a kind that revisits the first (the walk back, or the second lap)
    n_ret = len(episodes[0][1]) // 2 if args.trajectory in data.REVISIT_KINDS else 0
    rows, per_seed, first_videos, outward_memory = [], {}, {}, {}
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, f"eval_{args.trajectory}.json")
    for name, over, fast, control in eval_arms(args, cfg):
        c = replace(cfg, **over)
        m = sfvgen.with_lora(model, c) if fast else model
        scores, secs = [], []
        for k, (seed, actions) in enumerate(tqdm(episodes, desc=name, leave=False)):
            truth, positions = data.render_episode(seed, actions, c.world())
            if control == "wrong":  # memory of another world's episode, frozen: does any LoRA help?
                other = episodes[(k + 1) % len(episodes)]
                wrong = run(m, diffusion, c, data.render_episode(other[0], other[1], c.world())[0][0], other[1], True, c.seed)
                res = run(m, diffusion, c, truth[0], actions, False, c.seed, frozen_lora=wrong["memory"]["lora"])
            elif control in ("turn", "turn-wrong"):
                # the outward leg generated with fast learning, then the return with the LoRA frozen: this
                # world's (learned on its own outward frames) or another world's (learned the same way on its
                # outward leg). Both returns continue the same video from the same noise, with a LoRA of as
                # many updates: their difference is the memory of the place, not steadier sampling.
                own = outward_leg(m, diffusion, c, episodes, k, n_ret, outward_memory)
                lora = own if control == "turn" else outward_leg(m, diffusion, c, episodes, (k + 1) % len(episodes),
                                                                 n_ret, outward_memory)
                back = run(m, diffusion, c, None, actions[-n_ret:], False, c.seed, memory=own["memory"],
                           frozen_lora=lora["memory"]["lora"])
                res = dict(frames=np.concatenate([own["frames"], back["frames"]]),
                           seconds_per_frame=(own["seconds_per_frame"] + back["seconds_per_frame"]) / 2)
            else:
                res = run(m, diffusion, c, truth[0], actions, fast, c.seed)
            scores.append(score(res["frames"], truth, positions, c, n_ret))
            if k == 0:
                first_videos[name], first_truth = res["frames"], truth
            secs.append(res["seconds_per_frame"])
        per_seed[name] = scores
        row = {key: float(np.mean([s[key] for s in scores])) for key in
               ("psnr", "ssim", "outward_psnr", "return_psnr", "src_psnr", "src_ssim", "scene_cuts")}
        row.update(arm=name, seconds_per_frame=float(np.mean(secs)), peak_mb=peak_memory_mb(device),
                   chunk_psnr=np.mean([s["chunk_psnr"] for s in scores], 0).round(2).tolist())
        gain = np.subtract([s["return_psnr"] for s in scores], [b["return_psnr"] for b in per_seed["no fast learning"]])
        row.update(return_gain=float(np.mean(gain)), seeds_improved=int(np.sum(gain > 0)),
                   return_gain_ci=list(metrics.bootstrap_ci(gain)[1:]),  # paired by world, against the first row
                   return_psnr_per_world=[s["return_psnr"] for s in scores],
                   src_psnr_per_world=[s["src_psnr"] for s in scores])  # to pool runs of other seeds
        rows.append(row)
        write_json(path, dict(checkpoint=args.ckpt, trajectory=args.trajectory, worlds=seeds, rows=rows))  # kept if stopped
    print_table(rows, args.eval)
    if "TEMP-LoRA" in first_videos:  # the first world: without memory | with memory | ground truth
        video = os.path.join(args.out_dir, f"eval_{args.trajectory}.gif")
        write_video(video, panels(first_videos["no fast learning"], first_videos["TEMP-LoRA"], first_truth))
    print(f"wrote {path} (after every row)")
    return rows


def print_table(rows, n):
    cols = [("arm", 24, "{}"), ("psnr", 7, "{:.2f}"), ("ssim", 6, "{:.3f}"), ("outward_psnr", 8, "{:.2f}"),
            ("return_psnr", 8, "{:.2f}"), ("return_gain", 8, "{:+.2f}"), ("seeds_improved", 6, "{}"),
            ("src_psnr", 8, "{:.2f}"), ("scene_cuts", 6, "{:.2f}"), ("seconds_per_frame", 8, "{:.3f}"), ("peak_mb", 7, "{:.0f}")]
    heads = ["arm", "PSNR", "SSIM", "out PSNR", "ret PSNR", "ret gain", f"better/{n}", "SRC PSNR", "cuts", "s/frame", "peak MB"]
    print(" | ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, (_, w, _)) in enumerate(zip(heads, cols))))
    for r in rows:
        print(" | ".join(f.format(r[k]).ljust(w) if i == 0 else f.format(r[k]).rjust(w) for i, (k, w, f) in enumerate(cols)))


def cmd_eval_slow(args, model, cfg, diffusion):
    """Single-chunk prediction on moving chunks of held-out worlds, against repeating the last context
    frame, and 8-chunk rollouts from the start frame (PSNR per chunk index)."""
    device = next(model.parameters()).device
    rng = np.random.default_rng(cfg.seed)
    ctx, tok, tgt = [], [], []
    while len(ctx) < args.eval_slow:  # keep items whose chunk moves the camera
        c, t, g = data.sample_batch(rng, cfg.test_seeds, 1, cfg.world(), n_ctx=cfg.chunk, kinds=("out-and-back",))
        if data.VOCAB[t[0][1]] in ("left", "right", "up", "down"):
            ctx.append(c[0]), tok.append(t[0]), tgt.append(g[0])
    gen = sfvgen.to_frames(diffusion.sample(model, sfvgen.to_model(np.stack(ctx), device), torch.tensor(np.stack(tok), device=device),
                                            cfg.chunk, torch.Generator().manual_seed(cfg.seed)))
    model_psnr = [metrics.psnr(g, t) for g, t in zip(gen, tgt)]
    base_psnr = [metrics.psnr(np.repeat(c[-1:], cfg.chunk, 0), t) for c, t in zip(ctx, tgt)]
    chunk_psnr = []
    for i in tqdm(range(args.rollouts), desc="rollouts", leave=False):
        actions = data.make_actions("out-and-back", rng, n=4)
        truth, positions = data.render_episode(cfg.test_seeds[0] + i, actions, cfg.world())
        res = run(model, diffusion, cfg, truth[0], actions, False, cfg.seed)
        chunk_psnr.append(score(res["frames"], truth, positions, cfg, 4)["chunk_psnr"])
    out = dict(model_psnr=float(np.mean(model_psnr)), repeat_last_psnr=float(np.mean(base_psnr)),
               gain=float(np.mean(model_psnr) - np.mean(base_psnr)),
               rollout_chunk_psnr=np.mean(chunk_psnr, 0).round(2).tolist() if chunk_psnr else [])
    print(f"single chunk: model {out['model_psnr']:.2f} dB, repeat-last {out['repeat_last_psnr']:.2f} dB, gain {out['gain']:+.2f} dB "
          f"({args.eval_slow} held-out moving chunks)\nrollout PSNR per chunk: {out['rollout_chunk_psnr']}")
    return out


# ----------------------------------------------------------------------------- memory on ground-truth legs (probe.py)
def cmd_memory_probe(args, model, cfg, diffusion):
    """--memory-probe (probe.memory_probe): recall of a LoRA learned on the true outward leg."""
    out, worlds = probe.memory_probe(model, diffusion, cfg, args.memory_probe, args.trajectory, args.out_chunks,
                                     args.teacher_forced, args.retrace)
    os.makedirs(args.out_dir, exist_ok=True)
    write_json(os.path.join(args.out_dir, "memory_probe.json"), dict(checkpoint=args.ckpt, worlds=worlds, rows=out))
    return out


def cmd_memory_span(args, model, cfg, diffusion):
    """--memory-span (probe.memory_span): how each learned chunk's losses change as fast learning goes on."""
    res = probe.memory_span(model, diffusion, cfg, args.memory_span, args.out_chunks, args.retrace)
    os.makedirs(args.out_dir, exist_ok=True)
    write_json(os.path.join(args.out_dir, "memory_span.json"), dict(checkpoint=args.ckpt, **res))
    return res["rows"]


# ----------------------------------------------------------------------------- planning (section 4.3)
def cmd_plan(args, model, cfg, diffusion):
    """Long-horizon planning (plan.py): outward actions, then 'go back' for every return chunk; inverse
    dynamics turns the generated frames into moves, which the simulator executes. The paper's Table 2 layout."""
    dev = next(model.parameters()).device
    idm = plan.load_idm(args.idm, cfg, dev)
    acc = plan.idm_accuracy(idm, cfg)
    arms = [a for a, *_ in keep_rows([(a,) for a in plan.ARMS], args.arms)]
    if not args.arms and not args.loop_ckpt:
        arms.remove(plan.LOOP)  # the two slow-only rows
    loop_model = sfvgen.load_model(args.loop_ckpt, dev)[0] if args.loop_ckpt else None
    rows, worlds = plan.run(model, diffusion, cfg, args.plan, args.out_chunks, idm, loop_model, arms)
    plan.print_table(rows, acc, args.plan, args.out_chunks, cfg.world())
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "plan.json")
    write_json(path, dict(checkpoint=args.ckpt, loop_checkpoint=args.loop_ckpt, idm_accuracy=acc, worlds=worlds, rows=rows))
    print(f"wrote {path}")
    return dict(idm_accuracy=acc, rows=rows)


# ----------------------------------------------------------------------------- the memory matrix (matrix.py)
def cmd_memory_matrix(args, model, cfg, diffusion):
    """The memory matrix (matrix.py): calibration, every arm on the same worlds, the controls, the curves;
    with --memory-cost, the cost per chunk as the history grows."""
    arms = [a for a, *_ in keep_rows([(a,) for a in matrix.ARMS], args.arms, always=matrix.NONE)]
    os.makedirs(args.out_dir, exist_ok=True)
    table = curves = None
    if args.memory_matrix:
        table, curves = memory_matrix_table(args, model, cfg, diffusion, arms)
    if args.memory_cost:
        cost = matrix.cost_curve(args.ckpt, threads=cfg.threads or 1)
        print(f"{'arm':<24} | history (chunks) | seconds per chunk | peak MB")
        for c in cost:
            print(f"{c['arm']:<24} | {c['chunks']:>16} | {c['seconds']:>17.2f} | {c['peak_mb']:7.0f}")
        write_json(os.path.join(args.out_dir, "memory_cost.json"), cost)
    return table, curves


def memory_matrix_table(args, model, cfg, diffusion, arms):
    """Calibration, then matrix.run: the table and the curves."""
    dev = next(model.parameters()).device
    calib = matrix.calibration(cfg.world(), range(cfg.test_seeds[0], cfg.test_seeds[0] + 20))
    print("what a dB means here (20 worlds, ground truth against one change):")
    for name, c in calib.items():
        print(f"  {name:<22} PSNR {c['psnr']:5.2f} dB  SSIM {c['ssim']:.3f}")
    write_json(os.path.join(args.out_dir, "calibration.json"), calib)
    losses = matrix.context_losses(model, diffusion, cfg)
    print("masked loss on 30 held-out return chunks, by context: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    idm = plan.load_idm(args.idm, cfg, dev)
    return matrix.run(model, diffusion, cfg, args.memory_matrix, args.trajectory, args.out_chunks, args.out_dir,
                      idm=idm, arms=arms, controls=not args.no_controls, write_json=write_json, checkpoint=args.ckpt)


# ----------------------------------------------------------------------------- entry point
def main(argv=None):
    parser = cli.config_parser(__doc__.split("\n")[0], extra_flags, skip=("out", "resume", "init"))
    args = parser.parse_args(argv)
    try:
        data.parse_actions(args.actions)  # refuse bad input before any work starts
        if args.retrace != "off" and not (args.memory_probe or args.memory_span):
            raise ValueError("--retrace is a check of --memory-probe and --memory-span; give one of them")
        train.check_writable(args.out_dir)
        model, cfg, diffusion = build(args)
        if args.plan:
            return cmd_plan(args, model, cfg, diffusion)
        if args.memory_probe:
            return cmd_memory_probe(args, model, cfg, diffusion)
        if args.memory_span:
            return cmd_memory_span(args, model, cfg, diffusion)
        if args.memory_matrix or args.memory_cost:
            return cmd_memory_matrix(args, model, cfg, diffusion)
        if args.eval_slow:
            return cmd_eval_slow(args, model, cfg, diffusion)
        if args.eval:
            return cmd_eval(args, model, cfg, diffusion)
        return cmd_generate(args, model, cfg, diffusion)
    except ValueError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
