"""The memory matrix: TEMP-LoRA against the other ways a video world model can remember, on one world.

Ours: the paper compares TEMP-LoRA with other long-video methods (Table 1); the matrix holds the weights fixed and
changes only what the model may remember.

    python -m lab.matrix --ckpt checkpoints/tiny-mem.pt --worlds 20 [--trajectory out-and-back] [--arms ...]
        [--no-controls] [--memory-cost]

Every arm uses the same trained weights, sampler, seeds and worlds; only what the model may remember
differs. On a latent model (preset tiny-latent) the arms splice and copy latents; every score reads decoded frames.
The agent knows its own actions, so it knows its camera pose at every frame (`positions`).

    arm                        context of chunk i (frames 1 + iK .. (i + 1)K)
    no memory                  the previous chunk (the start frame for chunk 0)
    window 2, window 4         the last 2 or 4 chunks
    own frames (ceiling)       every frame generated so far
    ground-truth first visits  every earlier frame from the simulator, then the own previous chunk
    pose retrieval             the earlier generated frames at the new frames' poses (outside the previous
                               chunk), then the previous chunk
    random retrieval           as many earlier generated frames drawn at random from the same pool
    TEMP-LoRA                  the previous chunk; the fast weights learn every chunk (Algorithm 1a)
    copy first visit           no memory, then every frame whose pose was seen before is replaced by a
                               copy of the generated first visit (a bound that learns nothing)

The backbone must know these contexts: python -m lab.train --memory-mix 0.7 trains on them (sample_memory_batch).
Retrieved frames carry the "from memory" frame position (MemoryUNet). Controls: the TEMP-LoRA reset before the
return, and the paired history (another world's outward leg before this world's current view). Calibration says
what a dB means here; --memory-cost times a chunk as the history grows. memory_matrix_<trajectory>.json (rewritten
after every world), calibration.json and memory_cost.json go to --out.
"""
import copy
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

import data
import metrics
import sfvgen
import video

from . import common
from .plan import load_idm
from .stats import bootstrap_ci

NONE, CEILING, GT, RETRIEVE, RANDOM, TEMP_LORA, COPY = ("no memory", "own frames (ceiling)", "ground-truth first visits",
                                                       "pose retrieval", "random retrieval", "TEMP-LoRA", "copy first visit")
ARMS = (NONE, "window 2", "window 4", CEILING, GT, RETRIEVE, RANDOM, TEMP_LORA, COPY)
RESET = "control: TEMP-LoRA reset before the return"
PAIRED = "control: paired history"  # prefix; the arm follows
SHARES = {RETRIEVE: NONE, RANDOM: NONE, COPY: NONE, RESET: TEMP_LORA}  # identical to that arm until the first revisit
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository: cost points run there


# ----------------------------------------------------------------------------- retrieved frames
class MemoryUNet(sfvgen.VideoUNet):
    """The video UNet whose first n_mem context frames are retrieved memory frames: out of time order, they take
    the "from memory" frame position (index 0, as frames 2K or more back). Set model.n_mem before a forward
    (Diffusion.sample / loss); the weights are VideoUNet's (load its state dict)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.n_mem = 0

    def frame_positions(self, N, n_ctx, device):
        pos_ids = super().frame_positions(N, n_ctx, device)
        pos_ids[:self.n_mem] = 0
        return pos_ids


def memory_model(model):
    """A MemoryUNet with `model`'s config and weights (VideoUNet's keys), in eval mode on the same device."""
    mem = MemoryUNet(model.cfg).to(next(model.parameters()).device)
    mem.load_state_dict(model.state_dict())
    return mem.eval()


def with_n_mem(model, n_mem, fn):
    """fn() with model.n_mem = n_mem (retrieved frames at the front of the context), 0 again after."""
    model.n_mem = n_mem
    try:
        return fn()
    finally:
        model.n_mem = 0


# ----------------------------------------------------------------------------- training clips with the arms' contexts
MEMORY_MODES = ("window2", "window4", "all", "retrieve", "random")


def revisit_matches(positions, frame_ids, before):
    """Pose retrieval: for each frame in frame_ids, the earliest frame m < before whose camera corner is the
    same (an exact revisit). Returns a list of those m, in frame_ids' order (frames with no match: none)."""
    out = []
    for n in frame_ids:
        same = np.flatnonzero((positions[:max(before, 0)] == positions[n]).all(axis=1))
        if len(same):
            out.append(int(same[0]))
    return out


def sample_memory_batch(rng, seeds, batch, spec=data.WorldSpec(), mode=None, n_out=None):
    """Training clips for the memory arms (python -m lab.train --memory-mix): chunk i of an out-and-back episode
    of n_out in 2..4 outward chunks, predicted from one of these contexts (one per batch):
      window2, window4  the last 2 or 4 chunks (the start frame repeated where the episode is shorter)
      all               every frame before chunk i (the episode so far: the ceiling arm)
      retrieve          the earlier frames at the target frames' poses, outside the last chunk, then the last chunk
      random            as many frames drawn at random from that same pool, then the last chunk
    retrieve and random predict a chunk of the return leg, where the poses repeat. The action text is kept.
    Returns context (B, f_p, H, W, 3) uint8, tokens (B, L), target (B, K, H, W, 3) uint8, n_mem (the number
    of retrieved frames at the front of the context)."""
    K = spec.chunk
    mode = str(rng.choice(MEMORY_MODES)) if mode is None else mode
    n = int(rng.integers(2, 5)) if n_out is None else n_out
    lo = n + 1 if mode in ("retrieve", "random") else 1  # a return chunk with K earlier matches (out-and-back)
    i = int(rng.integers(lo, 2 * n))  # the target chunk; frames 1 + i K .. (i + 1) K
    first = 1 + i * K  # its first frame; the last context chunk is frames first - K .. first - 1
    target_ids = list(range(first, first + K))
    ctx, tok, tgt, n_mem = [], [], [], 0
    for _ in range(batch):
        seed = int(rng.choice(seeds)) if isinstance(seeds, list) else int(rng.integers(seeds[0], seeds[1]))
        actions = data.make_actions("out-and-back", rng, n=n)
        start = tuple(int(v) for v in rng.integers(0, spec.canvas, 2))
        frames, pos = data.render_episode(seed, actions[:i + 1], spec, start=start)  # (1 + (i + 1) K, H, W, 3)
        if mode.startswith("window"):
            w = int(mode[-1]) * K
            ids = [max(m, 0) for m in range(first - w, first)]  # before the start: the start frame (our choice)
        elif mode == "all":
            ids = list(range(first))
        else:
            mem = revisit_matches(pos, target_ids, first - K)
            if mode == "random":
                mem = sorted(int(m) for m in rng.choice(first - K, size=len(mem), replace=False))
            ids, n_mem = mem + list(range(first - K, first)), len(mem)
        ctx.append(frames[ids])
        tgt.append(frames[target_ids])
        tok.append(data.tokenize(actions[i]))
    return np.stack(ctx), np.array(tok, dtype=np.int64), np.stack(tgt), n_mem


# ----------------------------------------------------------------------------- the arms' contexts
def context_ids(arm, first, K, positions, rng):
    """The frames chunk i sees, first = 1 + i K its first frame: (frame ids, n_mem retrieved frames in front)."""
    prev = list(range(max(first - K, 0), first))                         # the previous chunk
    if arm.startswith("window"):
        return [max(m, 0) for m in range(first - int(arm[-1]) * K, first)], 0  # start frame repeated, as in training
    if arm in (CEILING, GT):
        return list(range(first)), 0
    if arm in (RETRIEVE, RANDOM):
        pool = max(first - K, 0)                                          # frames 0 .. pool-1: outside the previous chunk
        mem = revisit_matches(positions, range(first, first + K), pool)  # exact poses
        if arm == RANDOM and mem:                                          # as many, drawn from the same pool
            mem = sorted(int(m) for m in rng.choice(pool, size=len(mem), replace=len(mem) > pool))
        return mem + prev, len(mem)
    return prev, 0                                                         # no memory, TEMP-LoRA, copy first visit


def start_state(first_frame, seed, device, autoencoder=None):
    """Before chunk 0: the start frame in model space (latents through a latent model's autoencoder), fresh noise
    generators (rng: retrieval's draws), a fresh TEMP-LoRA (None)."""
    return dict(x=sfvgen.to_model(first_frame[None, None], device, autoencoder), gen=torch.Generator().manual_seed(seed).get_state(),
                fast_gen=sfvgen.fast_generator(seed).get_state(), rng=np.random.default_rng(seed).bit_generator.state,
                lora=None, opt=None)


def rollout(model, diffusion, cfg, arm, actions, positions, state, truth=None):
    """Generates one chunk per action after state["x"] with `arm`'s memory. positions: (N, 2) camera corners of the
    whole episode; truth: (N, H, W, 3) uint8 for the ground-truth arm. model: a MemoryUNet, with LoRA layers for TEMP-LoRA.
    Returns (the new state, seconds per chunk). state: x (1, n, 3, H, W) the frames so far, in model space
    (latents (1, n, C, h, w) for a latent model: every arm splices and copies latents, decoded only to score);
    gen, fast_gen, rng: the noise generators' states (sampler, fast learning, retrieval); lora, opt: the fast
    weights and their Adam state (None: fresh)."""
    K, dev = cfg.chunk, state["x"].device
    x, gen, fast_gen, rng = state["x"], torch.Generator(), torch.Generator(), np.random.default_rng()
    gen.set_state(state["gen"])  # the sampler's noise
    fast_gen.set_state(state["fast_gen"])  # fast learning's own draws (sfvgen.generate_long)
    rng.bit_generator.state = state["rng"]
    fast = arm == TEMP_LORA
    sfvgen.set_trainable(model, "fast")  # Phi frozen, as in sfvgen.generate_long (the flags can change the last bits)
    if fast:
        sfvgen.reset_lora(model)
        if state["lora"] is not None:
            sfvgen.load_lora_state(model, state["lora"])
        opt = torch.optim.Adam(sfvgen.lora_parameters(model), lr=cfg.fast_lr)  # one optimizer per episode
        if state["opt"] is not None:
            opt.load_state_dict(state["opt"])
    gt = None if truth is None else sfvgen.to_model(truth[None], dev, model.autoencoder)  # (1, N, 3, H, W) or latents
    model.eval()
    secs = []
    for a in actions:
        t0 = time.time()
        first = x.shape[1]
        ids, n_mem = context_ids(arm, first, K, positions, rng)
        src = torch.cat([gt[:, :max(first - K, 0)], x[:, max(first - K, 0):]], 1) if arm == GT else x
        tokens = sfvgen.action_tokens([a], dev)
        if fast:
            sfvgen.merge_lora(model)
        y = with_n_mem(model, n_mem, lambda: diffusion.sample(model, src[:, ids], tokens, K, generator=gen))  # (1, K, 3, H, W)
        if fast:
            sfvgen.unmerge_lora(model)
        if arm == COPY:
            for j in range(K):
                seen = revisit_matches(positions, [first + j], first)
                if seen:
                    y[:, j] = x[:, seen[0]]
        x = torch.cat([x, y], dim=1)
        if fast:  # Algorithm 1a: store the chunk in the fast weights before the next one
            history = [x[:, :1]] + list(x[:, 1:].split(K, dim=1))
            sfvgen.fast_learn_chunk(model, diffusion, opt, history, tokens, cfg, fast_gen)
            model.eval()
        secs.append(time.time() - t0)
    out = dict(x=x, gen=gen.get_state(), fast_gen=fast_gen.get_state(), rng=rng.bit_generator.state,
               lora=sfvgen.lora_state(model) if fast else None, opt=copy.deepcopy(opt.state_dict()) if fast else None)
    return out, secs


def revisit_gaps(positions):
    """Frames since the first visit of each frame's pose, (N,) int; 0 where the pose is new (metrics.revisit_pairs)."""
    gap = np.zeros(len(positions), dtype=int)
    for i, j in metrics.revisit_pairs(positions, min_gap=0):
        gap[j] = j - i
    return gap


def first_revisit_chunk(positions, K, n_chunks):
    """The first chunk with a frame at a pose seen before: until then retrieval and copying change nothing."""
    revisits = np.flatnonzero(revisit_gaps(positions))
    return min(int(revisits[0] - 1) // K, n_chunks) if len(revisits) else n_chunks


# ----------------------------------------------------------------------------- scores
def frame_scores(frames, truth, positions):
    """Per frame after the start: PSNR, SSIM against the truth, and the frames since the first visit of its
    pose (0: never seen before)."""
    return dict(psnr=metrics.psnr_per_frame(frames[1:], truth[1:]), ssim=metrics.ssim_per_frame(frames[1:], truth[1:]),
                gap=revisit_gaps(positions[:len(frames)])[1:])


def gap_fraction(arm, none, ceiling):
    """The fraction of the no-memory-to-ceiling gap an arm closes: (arm - none) / (ceiling - none)."""
    return float((arm - none) / (ceiling - none)) if ceiling != none else float("nan")


def pose_accuracy(idm, frames, actions, K, turn):
    """The pose check: the share of generated moves after `turn` chunks that inverse dynamics reads as the
    commanded move (action-following errors are not forgetting)."""
    moves = idm.infer(frames)[turn * K:]                                   # one move per frame pair
    wanted = [a for a in actions[turn:] for _ in range(K)]
    return float(np.mean([m == w for m, w in zip(moves, wanted)]))


# ----------------------------------------------------------------------------- the experiment
def episode_rows(models, diffusion, cfg, seed, actions, arms, idm, paired=(), other_seed=None):
    """All arms (and controls) on one world. Returns {row name: scores}."""
    spec, K = cfg.world(), cfg.chunk
    dev, ae = next(models["base"].parameters()).device, models["base"].autoencoder  # ae: None for a pixel model
    truth, pos = data.render_episode(seed, actions, spec)
    turn = first_revisit_chunk(pos, K, len(actions))
    start = start_state(truth[0], cfg.seed, dev, ae)
    at_turn, out, made = {}, {}, {}

    def finish(name, state, secs):
        frames = sfvgen.to_frames(state["x"], ae)[0]
        fs = frame_scores(frames, truth, pos)
        ret = slice(turn * K, None)                                         # frames of the chunks from `turn` on
        new = fs["gap"] == 0
        out[name] = dict(return_psnr=metrics.psnr(frames[1 + turn * K:], truth[1 + turn * K:]),
                         return_ssim=float(fs["ssim"][ret].mean()),
                         never_seen_psnr=metrics.psnr(frames[1:][new], truth[1:][new]),
                         pose_accuracy=pose_accuracy(idm, frames, actions, K, turn) if idm is not None else float("nan"),
                         seconds_per_chunk=[round(s, 4) for s in secs], frame_psnr=fs["psnr"].round(3).tolist(),
                         frame_gap=fs["gap"].tolist())
        return frames

    for arm in arms:
        model = models["lora" if arm in (TEMP_LORA, RESET) else "base"]
        if arm in SHARES:                                                    # the shared part was generated by that arm
            s, secs = at_turn[SHARES[arm]]
            if arm == RESET:                                                 # fresh fast weights before the return leg
                s = dict(s, lora=None, opt=None)
            s2, secs2 = rollout(model, diffusion, cfg, TEMP_LORA if arm == RESET else arm, actions[turn:], pos, s, truth)
            made[arm] = finish(arm, s2, secs + secs2)
            continue
        s, secs = rollout(model, diffusion, cfg, arm, actions[:turn], pos, start, truth)
        at_turn[arm] = (s, secs)
        s2, secs2 = rollout(model, diffusion, cfg, arm, actions[turn:], pos, s, truth)
        made[arm] = finish(arm, s2, secs + secs2)
    other_truth = data.render_episode(other_seed, actions, spec)[0] if paired else None  # another world, same walk
    for arm in paired:  # the same current chunk and return actions, the outward history of another world
        model = models["lora" if arm == TEMP_LORA else "base"]
        sB, _ = rollout(model, diffusion, cfg, arm, actions[:turn], pos, start_state(other_truth[0], cfg.seed, dev, ae), other_truth)
        sA = at_turn[SHARES.get(arm, arm)][0]
        cut = max(1 + turn * K - K, 0)                                       # keep A's previous chunk: the current view
        hybrid = dict(sA, x=torch.cat([sB["x"][:, :cut], sA["x"][:, cut:]], 1), lora=sB["lora"], opt=sB["opt"])
        s2, _ = rollout(model, diffusion, cfg, arm, actions[turn:], pos, hybrid, np.concatenate([other_truth[:cut], truth[cut:]]))
        frames = sfvgen.to_frames(s2["x"], ae)[0]
        r = slice(1 + turn * K, None)
        out[f"{PAIRED} ({arm})"] = dict(return_psnr=metrics.psnr(frames[r], truth[r]),
                                         other_world_psnr=metrics.psnr(frames[r], other_truth[r]))
        out[arm]["other_world_psnr"] = metrics.psnr(made[arm][r], other_truth[r])  # the real history, same yardstick
    return out, turn


def pooled_psnr(psnrs):
    """The PSNR of frames taken together (their mean squared error), from per-frame PSNRs:
    10 log10(1 / mean(10^(-PSNR_n / 10))). Unlike the mean of PSNRs, one exact frame cannot dominate."""
    return float(10 * np.log10(1 / np.mean(10 ** (-np.asarray(psnrs) / 10)))) if len(psnrs) else float("nan")


def far_revisit_psnr(w, K):
    """PSNR of the frames that revisit a pose first seen at least two context windows (2K frames) earlier."""
    return pooled_psnr([p for p, g in zip(w["frame_psnr"], w["frame_gap"]) if g >= 2 * K])


def summarize(per_world, rows, K=None):
    """The table: per row, means with 95% bootstrap intervals over worlds, paired against no memory.
    With K: also the revisits at least two context windows after the first visit (far_psnr, far_gap_closed)."""
    table = {}
    none = np.array([w[NONE]["return_psnr"] for w in per_world])
    ceiling = np.mean([w[CEILING]["return_psnr"] for w in per_world]) if CEILING in per_world[0] else float("nan")
    bound = np.mean([w[COPY]["return_psnr"] for w in per_world]) if COPY in per_world[0] else float("nan")
    far_ref = None
    if K and "frame_psnr" in per_world[0][NONE] and CEILING in per_world[0]:  # revisits >= 2 windows after the first visit
        far_ref = [np.mean([far_revisit_psnr(w[a], K) for w in per_world]) for a in (NONE, CEILING)]
    for name in rows:
        ws = [w[name] for w in per_world]
        ret = np.array([w["return_psnr"] for w in ws])
        r = dict(worlds=len(ws), return_psnr=bootstrap_ci(ret), gain=bootstrap_ci(ret - none),
                 better=int(np.sum(ret > none)), gap_closed=gap_fraction(ret.mean(), none.mean(), ceiling),
                 copy_gap_closed=gap_fraction(ret.mean(), none.mean(), bound))  # the same, against the copy bound
        for key in ("return_ssim", "never_seen_psnr", "pose_accuracy", "other_world_psnr"):
            if key in ws[0]:
                r[key] = bootstrap_ci([w[key] for w in ws])
        if "never_seen_psnr" in ws[0]:
            r["never_seen_change"] = bootstrap_ci([w["never_seen_psnr"] - v[NONE]["never_seen_psnr"]
                                                           for w, v in zip(ws, per_world)])
        if far_ref and "frame_psnr" in ws[0]:
            far = float(np.mean([far_revisit_psnr(w, K) for w in ws]))
            r.update(far_psnr=far, far_gap_closed=gap_fraction(far, *far_ref))
        if "seconds_per_chunk" in ws[0]:
            r["seconds_per_chunk"] = np.mean([w["seconds_per_chunk"] for w in ws], 0).round(3).tolist()
        table[name] = r
    return table


def gap_curves(per_world, rows, K):
    """Revisit PSNR against the frames since the first visit, in context windows (one chunk, K frames):
    {row: {windows: (PSNR of those frames pooled, frames)}}, over every revisit frame of every world."""
    curves = {}
    for name in rows:
        if "frame_gap" not in per_world[0][name]:
            continue
        by = {}
        for w in per_world:
            for p, g in zip(w[name]["frame_psnr"], w[name]["frame_gap"]):
                if g > 0:
                    by.setdefault(int(np.ceil(g / K)), []).append(p)
        curves[name] = {b: (round(pooled_psnr(v), 3), len(v)) for b, v in sorted(by.items())}
    return curves


def print_table(table, n):
    nan = [float("nan")] * 3
    print(f"{'arm':<44} | {'return PSNR [95% CI]':>22} | {'gain':>6} | better/{n} | gap closed | to copy | "
          f"far PSNR | far gap closed | {'SSIM':>5} | never-seen chg | pose acc | s/chunk first, last")
    for name, r in table.items():
        m, lo, hi = r["return_psnr"]
        secs = r.get("seconds_per_chunk", [float("nan")])
        print(f"{name:<44} | {m:6.2f} [{lo:6.2f}, {hi:6.2f}] | {r['gain'][0]:+6.2f} | {r['better']:>8} | "
              f"{r['gap_closed']:>10.2f} | {r['copy_gap_closed']:>7.2f} | {r.get('far_psnr', nan[0]):8.2f} | "
              f"{r.get('far_gap_closed', nan[0]):>14.2f} | {r.get('return_ssim', nan)[0]:5.3f} | "
              f"{r.get('never_seen_change', nan)[0]:+14.2f} | {r.get('pose_accuracy', nan)[0]:8.2f} | {secs[0]:.2f}, {secs[-1]:.2f}")


def print_controls(table):
    """The paired-history rows: does the return follow the history it saw?"""
    for name, r in table.items():
        if name.startswith(PAIRED):
            arm = name[len(PAIRED) + 2:-1]
            real = table[arm]
            print(f"{name}: return PSNR against this world {r['return_psnr'][0]:.2f} (its real history: "
                  f"{real['return_psnr'][0]:.2f}), against the other world {r['other_world_psnr'][0]:.2f} "
                  f"(real history: {real['other_world_psnr'][0]:.2f})")


def plot_curves(curves, path, title):
    """PNG of the curves, when matplotlib is installed (an optional extra); returns whether it was written."""
    plt = common.pyplot("PNG; the curves are in the JSON")
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, c in curves.items():
        ax.plot(list(c), [v[0] for v in c.values()], marker="o", label=name)
    ax.set_xlabel("frames since the first visit (context windows of one chunk)")
    ax.set_ylabel("revisit PSNR against ground truth (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    common.save_figure(plt, fig, path)
    return True


def matrix_table(model, diffusion, cfg, n_worlds, trajectory, out_chunks, out_dir, idm=None, arms=ARMS, controls=True,
        write_json=None, checkpoint=""):
    """The memory matrix on n_worlds held-out worlds; the JSON is rewritten after every world."""
    rng = np.random.default_rng(cfg.seed)
    seeds = [cfg.test_seeds[0] + i for i in range(n_worlds)]
    episodes = [(s, data.make_actions(trajectory, rng, n=out_chunks)) for s in seeds]
    models = dict(base=model, lora=sfvgen.with_lora(model, cfg))
    arms = tuple(arms) + ((RESET,) if controls and TEMP_LORA in arms else ())
    paired = tuple(a for a in (TEMP_LORA, RETRIEVE, CEILING) if a in arms) if controls else ()
    per_world, path = [], os.path.join(out_dir, f"memory_matrix_{trajectory}.json")
    for k, (seed, actions) in enumerate(tqdm(episodes, desc=f"memory matrix ({trajectory})")):
        res, turn = episode_rows(models, diffusion, cfg, seed, actions, arms, idm, paired, seeds[(k + 1) % len(seeds)])
        per_world.append(res)
        rows = list(res)
        table = summarize(per_world, rows, cfg.chunk)
        curves = gap_curves(per_world, rows, cfg.chunk)
        if write_json:
            write_json(path, dict(checkpoint=checkpoint, trajectory=trajectory, out_chunks=out_chunks, worlds=seeds[:k + 1],
                                  table=table, curves=curves, per_world=per_world))
    print_table(table, len(per_world))
    print_controls(table)
    png = os.path.join(out_dir, f"memory_curves_{trajectory}.png")
    if plot_curves({n: c for n, c in curves.items() if not n.startswith("control")}, png,
                   f"{trajectory}, {out_chunks} chunks out, {len(per_world)} worlds"):
        print(f"wrote {png}")
    print(f"wrote {path}")
    return table, curves


# ----------------------------------------------------------------------------- what a dB means here
def edited_world(world, drop=None, swap=None):
    """A copy of `world` with shape `drop` left out, or shape swap[0] drawn in shape swap[1]'s colour."""
    shapes = list(world.shapes)  # (centre y, centre x, radius, rows, columns, colour) in drawing order
    if swap is not None:
        k, j = swap
        shapes[k] = shapes[k][:-1] + shapes[j][-1:]
    if drop is not None:
        del shapes[drop]
    edited = copy.copy(world)
    edited.paint(shapes)
    return edited


def calibration(spec, seeds):
    """PSNR and SSIM of a ground-truth view against the same view with one small change, over worlds:
    the camera one pixel off, one shape in another shape's colour, one shape missing. The shape sits a quarter
    of the view from its corner (clear of the agent marker)."""
    rows = {"one-pixel shift": [], "one shape recoloured": [], "one shape missing": []}
    for seed in seeds:
        world = data.World(seed, spec)
        k = seed % len(world.shapes)
        cy, cx = world.shapes[k][:2]
        y, x = cy - spec.size // 4, cx - spec.size // 4
        view = world.view(y, x)
        edits = [world.view(y, x + 1), edited_world(world, swap=(k, (k + 1) % len(world.shapes))).view(y, x),
                 edited_world(world, drop=k).view(y, x)]
        for name, other in zip(rows, edits):
            rows[name].append((metrics.psnr(view, other), metrics.ssim(view, other)))
    return {name: dict(psnr=float(np.mean([v[0] for v in vals])), ssim=float(np.mean([v[1] for v in vals])))
            for name, vals in rows.items()}


# ----------------------------------------------------------------------------- does the backbone read memory?
@torch.no_grad()
def context_losses(model, diffusion, cfg, n_clips=30, seed=5):
    """Masked loss on held-out return chunks (out-and-back, 3 chunks out) with three contexts of the same clip:
    the previous chunk only, plus the frames at the target poses, plus as many random earlier frames. Each clip's
    loss is the mean of 4 noise draws, the same draws for every context."""
    rng, out = np.random.default_rng(seed), {"previous chunk": [], "retrieve": [], "random": []}
    dev = next(model.parameters()).device
    for k in range(n_clips):
        state = copy.deepcopy(rng.bit_generator.state)
        for mode in ("retrieve", "random"):
            rng.bit_generator.state = state  # the same clip for both
            ctx, tok, tgt, n_mem = sample_memory_batch(rng, cfg.test_seeds, 1, cfg.world(), mode=mode, n_out=3)
            variants = {mode: (ctx, n_mem)}
            if mode == "retrieve":
                variants["previous chunk"] = (ctx[:, n_mem:], 0)
            for name, (c, m) in variants.items():
                gen = torch.Generator().manual_seed(k)
                model.n_mem = m  # the retrieved frames in front of the context (MemoryUNet)
                x_c, x_t = (sfvgen.to_model(v, dev, model.autoencoder) for v in (c, tgt))  # latents for a latent model
                tokens = torch.as_tensor(tok, device=dev)
                out[name].append(np.mean([float(diffusion.loss(model, x_c, x_t, tokens, generator=gen)) for _ in range(4)]))
    model.n_mem = 0
    return {name: float(np.mean(v)) for name, v in out.items()}


# ----------------------------------------------------------------------------- cost as the episode grows
def cost_point(ckpt, arm, n_chunks, threads=1):
    """Seconds and process peak memory for one chunk after n_chunks of history (ground-truth frames stand in
    for generated ones; the next chunk revisits the path, so retrieval fills its K slots). Run in a fresh
    process per point (cost_curve), so peak memory is this point's own."""
    torch.set_num_threads(threads)
    model, cfg, _ = sfvgen.load_model(ckpt, "cpu")
    model, diffusion, K = memory_model(model), sfvgen.Diffusion(cfg, "cpu"), cfg.chunk
    if arm == TEMP_LORA:
        sfvgen.add_lora(model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, seed=cfg.seed)
    half = (n_chunks + 1) // 2
    actions = ["go right"] * half + ["go left"] * (n_chunks - half + 1)  # the last one is the measured chunk
    truth, pos = data.render_episode(cfg.test_seeds[0], actions, cfg.world())
    state = start_state(truth[0], cfg.seed, "cpu", model.autoencoder)
    state["x"] = sfvgen.to_model(truth[None, :1 + n_chunks * K], "cpu", model.autoencoder)
    warm = dict(state, x=state["x"][:, :1 + (n_chunks - 1) * K])
    rollout(model, diffusion, cfg, arm, actions[n_chunks - 1:n_chunks], pos, warm)  # warm-up: one chunk earlier
    before = peak_rss_mb()
    _, secs = rollout(model, diffusion, cfg, arm, actions[n_chunks:], pos, state, truth)
    return dict(arm=arm, chunks=n_chunks, seconds=secs[0], peak_mb=peak_rss_mb(), before_mb=before)


def peak_rss_mb():
    """This process's peak resident memory: VmHWM on Linux (ru_maxrss would report the parent's peak, which a
    child started by fork and exec inherits), ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / (1024 if sys.platform == "darwin" else 1)


def cost_curve(ckpt, arms=(NONE, "window 4", CEILING, RETRIEVE, TEMP_LORA), lengths=(2, 4, 8, 16, 32), threads=1):
    """cost_point for every arm and history length, each in its own process."""
    out = []
    for arm in arms:
        for n in tqdm(lengths, desc=f"cost: {arm}", leave=False):
            r = subprocess.run([sys.executable, "-m", "lab.matrix", "--cost-point", os.path.abspath(ckpt), arm, str(n), str(threads)],
                               capture_output=True, text=True, check=True, cwd=ROOT)
            out.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return out


# ----------------------------------------------------------------------------- the entry point
def extra_flags(p):
    p.add_argument("--worlds", type=int, default=0, help="the memory matrix on this many test worlds: every way to remember")
    common.kind_flags(p, "--worlds")
    p.add_argument("--arms", default=None, help=f"only these rows, comma-separated (the row {NONE!r} is always run): {', '.join(ARMS)}")
    p.add_argument("--no-controls", action="store_true", help="skip the reset and paired-history controls")
    p.add_argument("--memory-cost", action="store_true",
                   help="seconds and peak memory per chunk as the history grows, for the memory arms (a process per point)")
    p.add_argument("--idm", default="checkpoints/idm.pt", help="inverse-dynamics checkpoint of the pose check (trained here if missing)")


def memory_matrix(args, model, cfg, diffusion):
    """Calibration, every arm on the same worlds, the controls, the curves; with --memory-cost, the cost per chunk
    as the history grows."""
    arms = [a for a, *_ in common.keep_rows([(a,) for a in ARMS], args.arms, always=NONE)]
    if not (args.worlds or args.memory_cost):
        raise ValueError("give --worlds N (the matrix) or --memory-cost (its cost), or both")
    os.makedirs(args.out_dir, exist_ok=True)
    table = curves = None
    if args.worlds:
        table, curves = memory_matrix_table(args, memory_model(model), cfg, diffusion, arms)
    if args.memory_cost:
        cost = cost_curve(args.ckpt, threads=cfg.threads or 1)
        print(f"{'arm':<24} | history (chunks) | seconds per chunk | peak MB")
        for c in cost:
            print(f"{c['arm']:<24} | {c['chunks']:>16} | {c['seconds']:>17.2f} | {c['peak_mb']:7.0f}")
        video.write_json(os.path.join(args.out_dir, "memory_cost.json"), cost)
    return table, curves


def memory_matrix_table(args, model, cfg, diffusion, arms):
    """Calibration, the context losses, then matrix_table: the table and the curves."""
    dev = next(model.parameters()).device
    calib = calibration(cfg.world(), range(cfg.test_seeds[0], cfg.test_seeds[0] + 20))
    print("what a dB means here (20 worlds, ground truth against one change):")
    for name, c in calib.items():
        print(f"  {name:<22} PSNR {c['psnr']:5.2f} dB  SSIM {c['ssim']:.3f}")
    video.write_json(os.path.join(args.out_dir, "calibration.json"), calib)
    losses = context_losses(model, diffusion, cfg)
    print("masked loss on 30 held-out return chunks, by context: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    idm = load_idm(args.idm, cfg, dev)
    return matrix_table(model, diffusion, cfg, args.worlds, args.trajectory, args.out_chunks, args.out_dir, idm=idm, arms=arms,
               controls=not args.no_controls, write_json=video.write_json, checkpoint=args.ckpt)


def main(argv=None):
    return common.main(memory_matrix, argv, common.parser(__doc__.split("\n")[0], extra_flags, "python -m lab.matrix"))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--cost-point"]:  # one cost point (cost_curve runs it): --cost-point CKPT ARM CHUNKS THREADS
        print(json.dumps(cost_point(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))
    else:
        main()
