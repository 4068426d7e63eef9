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
    python generate.py --ckpt CKPT --eval-slow 20
        single-chunk prediction against the "repeat the last context frame" baseline, and rollouts

Every Config field is a flag here too (--fast-steps 8, --lora-targets all, ...): the checkpoint's own
config is the base and the flags given override it.
"""
import copy
import json
import os
import resource
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

import data
import matrix
import metrics
import plan
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
    device = sfvgen.pick_device(args.device or "auto")
    model, stored, _ = sfvgen.load_model(args.ckpt, device)
    cfg = sfvgen.config_from_args(args, base=stored)
    sfvgen.check_weight_fields(args.ckpt, stored, cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return model, cfg, sfvgen.Diffusion(cfg, device)


def with_lora(model, cfg):
    """A copy of the slow model carrying a fresh TEMP-LoRA of the configured targets and rank."""
    m = copy.deepcopy(model)
    sfvgen.add_lora(m, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, seed=cfg.seed)
    return m


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
    lora_model = with_lora(model, cfg) if cfg.fast or memory is not None else None  # built once
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
        c = sfvgen.Config(**{**sfvgen.asdict(cfg), **over})
        m = with_lora(model, c) if fast else model
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


# ----------------------------------------------------------------------------- memory on ground-truth legs: probe, span
def ground_truth_chunks(seed, actions, cfg, device):
    """An episode's true frames as Algorithm 1a's history: [X_0 (the start frame), X_1, ..], each
    (1, T_i, 3, H, W), and the action tokens a_1, a_2, .. (each (1, L)) of X_1, X_2, .."""
    x = sfvgen.to_model(data.render_episode(seed, actions, cfg.world())[0][None], device)  # (1, 1 + N K, 3, H, W)
    return [x[:, :1]] + list(x[:, 1:].split(cfg.chunk, dim=1)), [sfvgen.action_tokens([a], device) for a in actions]


def learn_chunks(model, diffusion, cfg, X, tokens, seed, after_update=None, retrace="off", actions=None):
    """TEMP-LoRA fast learning (the configured rule and steps) on the chunks X_1 .. of a ground-truth
    history X (ground_truth_chunks) instead of generated ones; after_update(u) runs after the update on
    chunk u. retrace "aligned" / "shifted" (--retrace): learn with retrace_update instead, which needs
    the actions (text) of X_1 ... Returns the LoRA state."""
    sfvgen.reset_lora(model)
    opt = torch.optim.Adam(sfvgen.lora_parameters(model), lr=cfg.fast_lr)
    gen, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    for u in range(1, len(X)):  # Algorithm 1a's update after chunk u
        if retrace != "off":
            retrace_update(model, diffusion, opt, X[:u + 1], actions[:u], retrace == "shifted", cfg.fast_steps, rng, gen)
        else:
            sfvgen.fast_learn_chunk(model, diffusion, opt, X[:u + 1], tokens[u - 1], cfg, rng, gen)
        if after_update:
            after_update(u)
    return sfvgen.lora_state(model)


def retrace_windows(X, actions, shift):
    """Pieces of the walk back that an outward history X = [X_0, X_1, .., X_i] already shows (ours, not the
    paper's): (context, target, move) with K reversed frames as context, the next K reversed frames as
    target and the move that plays them, the opposite of the outward one. An out-and-back return shows the
    outward frames reversed, one frame off the chunk boundaries (return chunk k is the outward frames
    K(n - k) .. K(n - k) + K - 1 reversed, given the K after them), so:
      shift=1: frames [K m, K m + 2K) reversed, every m they are known for: exactly the return leg's
               chunks 2 .. n given their predecessors;
      shift=0: frames [K j - 2K + 1, K j + 1) reversed, i.e. X_{j-1} given X_j played backwards, for
               j = 1 .. i: the same places, one frame (one move) off the return's chunks."""
    K = X[1].shape[1]
    if not shift:
        return [(X[j].flip(1), X[j - 1].flip(1), data.OPPOSITE[actions[j - 1]]) for j in range(1, len(X))]
    frames = torch.cat(X, dim=1)  # (1, 1 + i K, 3, H, W): frame f is the view after f moves
    i = len(X) - 1
    wins = []
    for m in range(i):
        if K * m + 2 * K - 1 <= K * i:  # the window's last frame is known
            w = frames[:, K * m:K * m + 2 * K].flip(1)
            wins.append((w[:, :K], w[:, K:], data.OPPOSITE[actions[m]]))
    return wins


def retrace_update(model, diffusion, opt, X, actions, shift, steps, rng, generator):
    """--retrace (ours, a check of what the fast weights keep, not a rule of the paper): after outward chunk
    i, `steps` Adam steps on the LoRA, each on the sum of two masked conditional losses:
      a learned chunk X_j (j drawn from 1..i: rehearsal) given X_{j-1} and its action, and
      a retrace window (retrace_windows) given its context and its move: with shift=0 the window of the same j,
      with shift=1 one drawn from those known so far (none after chunk 1)."""
    sfvgen.set_trainable(model, "fast")
    tokens = {a: sfvgen.action_tokens([a], X[0].device) for a in data.OPPOSITE}  # every move, tokenized once
    cond = lambda ctx, x0, move: diffusion.loss(model, ctx, x0, tokens[move], generator=generator)  # noqa: E731
    i = len(X) - 1
    wins = retrace_windows(X, actions, shift)
    for _ in range(steps):
        j = int(rng.integers(1, i + 1))
        loss = cond(X[j - 1], X[j], actions[j - 1])
        if wins:
            loss = loss + cond(*(wins[int(rng.integers(len(wins)))] if shift else wins[j - 1]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def cmd_memory_probe(args, model, cfg, diffusion):
    """Can TEMP-LoRA store and recall at all? The LoRA fast-learns the *ground-truth* outward leg, then
    the return leg is generated from the true turning point (context = the true last outward chunk) with
    a fresh LoRA, with that LoRA (frozen), and with a LoRA learned on another world's outward leg.
    --teacher-forced: each return chunk from the true chunk before it (what the LoRA gives when its input is
    the true video; the return-leg PSNR is then the mean over the return chunks).
    --trajectory: a kind whose second half revisits the first (the return walks the leg backwards; with
    loop-twice, the first lap is the "outward leg" and the second lap, the same moves again, the "return")."""
    if args.trajectory not in data.REVISIT_KINDS:
        raise ValueError(f"--memory-probe: --trajectory must be one of {list(data.REVISIT_KINDS)}, not {args.trajectory!r}")
    if args.retrace != "off" and args.trajectory != "out-and-back":
        raise ValueError(f"--retrace learns pieces of an out-and-back return: use --trajectory out-and-back, not {args.trajectory!r}")
    dev = next(model.parameters()).device
    m, K = with_lora(model, cfg), cfg.chunk
    rng = np.random.default_rng(cfg.seed)
    eps = [(cfg.test_seeds[0] + i, data.make_actions(args.trajectory, rng, n=args.out_chunks)) for i in range(args.memory_probe)]
    n = len(eps[0][1]) // 2  # chunks of the outward leg: the first half of every episode of this kind
    truths = [data.render_episode(s, a, cfg.world())[0] for s, a in eps]
    loras = []
    for s, a in tqdm(eps, desc="learn outward", leave=False):
        X, tokens = ground_truth_chunks(s, a[:n], cfg, dev)
        loras.append(learn_chunks(m, diffusion, cfg, X, tokens, cfg.seed, retrace=args.retrace, actions=a[:n]))
    names = ("fresh LoRA (no memory)", "LoRA of this world's outward leg", "LoRA of another world's outward leg")
    rows, chunks = {name: [] for name in names}, {name: [] for name in names}  # return-leg PSNR; PSNR per return chunk
    state = dict(gen=torch.Generator().manual_seed(cfg.seed).get_state(), fast_gen=sfvgen.fast_generator(cfg.seed).get_state(),
                 rng=np.random.default_rng(cfg.seed).bit_generator.state)
    for k, ((seed, actions), truth) in enumerate(tqdm(list(zip(eps, truths)), desc="return legs", leave=False)):
        for name, lora in zip(names, [None, loras[k], loras[(k + 1) % len(loras)]]):
            # free: the whole return leg from the true turning point (context = the true chunk n), on its own frames;
            # teacher forced: each return chunk c + 1 from the true chunk c before it
            legs = [(c, actions[c:c + 1]) for c in range(n, 2 * n)] if args.teacher_forced else [(n, actions[n:])]
            frames = []
            for c, acts in legs:
                start = dict(history=[sfvgen.to_model(truth[None, 1 + (c - 1) * K:1 + c * K], dev)], chunk=c, **state)
                frames.append(sfvgen.generate_long(m, diffusion, cfg, truth[0], acts, fast=False, seed=cfg.seed,
                                                   memory=start, frozen_lora=lora)["frames"])
            frames = np.concatenate(frames)  # (n K, H, W, 3): the return leg
            per = [metrics.psnr(frames[c * K:(c + 1) * K], truth[1 + (n + c) * K:1 + (n + c + 1) * K]) for c in range(n)]
            rows[name].append(float(np.mean(per)) if args.teacher_forced else metrics.psnr(frames, truth[1 + n * K:]))
            chunks[name].append(per)
    out = {}
    for name, vals in rows.items():
        diff = np.subtract(vals, rows[names[0]])
        mean, lo, hi = metrics.bootstrap_ci(diff)
        per_gain = np.subtract(chunks[name], chunks[names[0]]).mean(0)  # (n,): gain per return chunk, 1 = the turn
        out[name] = dict(return_psnr=float(np.mean(vals)), gain=mean, ci=[lo, hi], better=int(np.sum(diff > 0)),
                         per_chunk_gain=per_gain.tolist())
        print(f"{name:<38} return-leg PSNR {np.mean(vals):6.2f} dB  gain {mean:+.2f} [{lo:+.2f}, {hi:+.2f}]  "
              f"better {int(np.sum(diff > 0))}/{len(vals)}  per return chunk " + " / ".join(f"{g:+.2f}" for g in per_gain))
    os.makedirs(args.out_dir, exist_ok=True)
    write_json(os.path.join(args.out_dir, "memory_probe.json"), dict(checkpoint=args.ckpt, worlds=[s for s, _ in eps], rows=out))
    return out


@torch.no_grad()
def chunk_losses(model, diffusion, X, tokens, draws, seed):
    """Losses of a ground-truth history's chunks X = [X_0 (the start frame), X_1, ..] (ground_truth_chunks),
    with `draws` fixed (t, eps) draws per chunk (the same draws on every call, so calls compare paired):
      cond: the masked conditional loss of X_i given X_{i-1} and its action a_i (how generation uses the fast weights)
      fast: the fast loss of the window [X_{i-1}; X_i] (all frames noised, null action: what the fast weights learn).
    Returns two (len(X) - 1,) arrays."""
    model.eval()
    null = sfvgen.null_tokens(draws, X[0].device)
    rep = lambda z: z.expand(draws, *z.shape[1:])  # noqa: E731 -- the same clip, `draws` noise levels and noises
    cond, fast = [], []
    for i in range(1, len(X)):
        window = torch.cat([X[i - 1], X[i]], dim=1)
        for out, ctx, x0, tok in ((cond, X[i - 1], X[i], rep(tokens[i - 1])), (fast, window[:, :0], window, null)):
            draw = torch.Generator().manual_seed(seed + i)  # chunk i's draws, the same on every call
            out.append(diffusion.loss(model, rep(ctx), rep(x0), tok, generator=draw).item())
    return np.array(cond), np.array(fast)


def cmd_memory_span(args, model, cfg, diffusion):
    """How long does TEMP-LoRA remember a chunk? On ground-truth outward legs (--out-chunks chunks, a path that
    never crosses itself) the fast weights learn chunk after chunk with the configured rule and steps. Each
    chunk's losses are compared, paired, with the fresh LoRA's: right after its own update, and at the end of
    the leg (lag = updates since it was learned); the same chunk indices of another world at the end of the
    leg show the side effects that are not memory. Then the return leg, which walks back over the outward leg
    (never learned itself): its conditional losses with this world's fast weights. No sampling: losses only."""
    dev = next(model.parameters()).device
    m, n, draws = with_lora(model, cfg), args.out_chunks, 8
    rng = np.random.default_rng(cfg.seed)
    eps = [data.make_actions("out-and-back", rng, n=n) for _ in range(args.memory_span)]
    worlds = [ground_truth_chunks(cfg.test_seeds[0] + i, a, cfg, dev) for i, a in enumerate(eps)]
    sfvgen.reset_lora(m)
    fresh = [chunk_losses(m, diffusion, X, tok, draws, cfg.seed) for X, tok in tqdm(worlds, desc="fresh LoRA", leave=False)]
    pct = lambda new, old: 100 * (new / old - 1)  # noqa: E731 -- loss change in %, negative = lower loss
    keys = ("fast_learned", "cond_learned", "fast_end", "cond_end", "cond_other")
    per = {k: np.zeros((len(worlds), n)) for k in keys}  # [world, lag at the end of the leg]
    ret = np.zeros((len(worlds), 2, n))  # [world, (this world's return leg, another world's), return chunk]: change in %
    for w, (X, tok) in enumerate(tqdm(worlds, desc="learn and test", leave=False)):
        def just_learned(u):  # chunk u right after its own update (lag 0 then, lag n - u at the end)
            cond, fast = chunk_losses(m, diffusion, X[u - 1:u + 1], tok[u - 1:u], draws, cfg.seed + u - 1)
            per["cond_learned"][w, n - u] = pct(cond[0], fresh[w][0][u - 1])
            per["fast_learned"][w, n - u] = pct(fast[0], fresh[w][1][u - 1])
        learn_chunks(m, diffusion, cfg, X[:n + 1], tok, cfg.seed, after_update=just_learned,  # the outward leg only
                     retrace=args.retrace, actions=eps[w][:n])
        cond, fast = chunk_losses(m, diffusion, X, tok, draws, cfg.seed)  # the whole episode, return leg included
        other = (w + 1) % len(worlds)
        cond_o, _ = chunk_losses(m, diffusion, *worlds[other], draws, cfg.seed)
        per["cond_end"][w], per["fast_end"][w] = pct(cond[:n], fresh[w][0][:n])[::-1], pct(fast[:n], fresh[w][1][:n])[::-1]
        per["cond_other"][w] = pct(cond_o[:n], fresh[other][0][:n])[::-1]
        ret[w] = pct(cond[n:], fresh[w][0][n:]), pct(cond_o[n:], fresh[other][0][n:])
    print(f"loss change against the fresh LoRA in % (negative: lower), {len(worlds)} worlds, {draws} paired draws per chunk")
    print(f"{'lag':>3} | {'fast loss: learned / end':>24} | {'cond. loss: learned / end':>25} | {'another world':>13} | "
          "memory at the end [95% CI]")
    rows = []
    for lag in range(n):
        mem = per["cond_end"][:, lag] - per["cond_other"][:, lag]
        mean, lo, hi = metrics.bootstrap_ci(mem)
        row = dict(lag=lag, **{k: float(per[k][:, lag].mean()) for k in keys}, memory=mean, memory_ci=[lo, hi],
                   worlds_better=int(np.sum(mem < 0)))
        rows.append(row)
        print(f"{lag:>3} | {row['fast_learned']:>+11.1f} / {row['fast_end']:>+10.1f} | "
              f"{row['cond_learned']:>+11.1f} / {row['cond_end']:>+11.1f} | "
              f"{row['cond_other']:>+13.1f} | {mean:+.1f} [{lo:+.1f}, {hi:+.1f}] {int(np.sum(mem < 0))}/{len(mem)}")
    mem = ret[:, 0].mean(1) - ret[:, 1].mean(1)
    mean, lo, hi = metrics.bootstrap_ci(mem)
    back = dict(cond_this=float(ret[:, 0].mean()), cond_other=float(ret[:, 1].mean()), memory=mean, memory_ci=[lo, hi],
                worlds_better=int(np.sum(mem < 0)), per_chunk_this=ret[:, 0].mean(0).tolist(),
                per_chunk_other=ret[:, 1].mean(0).tolist())
    print(f"return leg (walks back over the outward leg, not learned): cond. loss {back['cond_this']:+.1f}, "
          f"another world {back['cond_other']:+.1f}, memory {mean:+.1f} [{lo:+.1f}, {hi:+.1f}] {back['worlds_better']}/{len(mem)}")
    print("  per return chunk (1 = the turn): this world " + " / ".join(f"{v:+.1f}" for v in back["per_chunk_this"])
          + ", another world " + " / ".join(f"{v:+.1f}" for v in back["per_chunk_other"]))
    os.makedirs(args.out_dir, exist_ok=True)
    write_json(os.path.join(args.out_dir, "memory_span.json"), dict(checkpoint=args.ckpt, worlds=len(worlds), draws=draws, rows=rows,
                                                                    return_leg=back, per_world={k: v.tolist() for k, v in per.items()}))
    return rows


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
    parser = sfvgen.config_parser(__doc__.split("\n")[0], extra_flags, skip=("out", "resume", "init"))
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
