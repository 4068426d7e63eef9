"""Long-horizon planning with the video model (the paper's section 4.3 and Table 2, UniPi-style), on our world.

    python -m lab.plan --ckpt checkpoints/tiny.pt --worlds 20 [--loop-ckpt runs/tiny-loop/ckpt.pt] [--idm checkpoints/idm.pt]

The task: walk a path of outward chunks, then go back to the start. The video model is given the outward
actions, then the sub-goal text "go back" for every return chunk, with TEMP-LoRA learning across chunks;
an inverse-dynamics model turns the generated frames into moves; the simulator executes them from the true
start. Scores (the paper's Table 2): the final distance to the start and the mean closest distance to the
outward path's waypoints; ours: the return leg read chunk by chunk (`return_reading`).

    arm (ARMS)                           slow weights            fast learning
    without TEMP-LoRA                    the checkpoint's        off
    TEMP-LoRA + slow-only weights        the checkpoint's        on (Algorithm 1a)
    TEMP-LoRA + loop-trained weights     --loop-ckpt's           on (the weights of Algorithm 1b)

The inverse-dynamics model (ours: the paper does not describe its executor) is trained on ground-truth frame pairs
and saved at --idm the first time. --fast-reverse (ours) learns each window also played backwards (lab/rules.py).
plan.json in --out holds the rows and every world's scores.
"""
import math
import os
from dataclasses import replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import data
import metrics
import sfvgen
import video

from . import common, rules

NO_FAST, SLOW_ONLY, LOOP = "without TEMP-LoRA", "TEMP-LoRA + slow-only weights", "TEMP-LoRA + loop-trained weights"
ARMS = (NO_FAST, SLOW_ONLY, LOOP)


# ============================================================================= inverse dynamics
class InverseDynamics(nn.Module):
    """a_t = f(x_t, x_{t+1}): which move took frame t to frame t+1 (UniPi-style planning turns generated
    frames into actions with it). A small CNN on the two frames and their difference.
    (B, 2, 3, H, W) in [-1, 1] -> (B, len(MOVES)) logits."""
    MOVES = tuple(data.MOVES)  # go left, go right, go up, go down, stay

    def __init__(self, size, width=32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(9, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GELU(),      # H/2
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.GELU(),  # H/4
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.GELU(),  # H/8
            nn.Flatten(), nn.Linear(2 * width * math.ceil(size / 8) ** 2, len(self.MOVES)))  # a stride-2 conv gives ceil(H/2)

    def forward(self, pair):
        a, b = pair[:, 0], pair[:, 1]                      # (B, 3, H, W) each
        return self.net(torch.cat([a, b, b - a], dim=1))   # the difference makes the motion easy to see

    @torch.no_grad()
    def infer(self, frames):
        """uint8 frames (N, H, W, 3) -> the N - 1 moves between consecutive frames, as action texts."""
        x = sfvgen.to_model(frames[None], next(self.parameters()).device)[0]  # (N, 3, H, W)
        logits = self(torch.stack([x[:-1], x[1:]], dim=1))                    # (N - 1, 5)
        return [self.MOVES[k] for k in logits.argmax(-1).tolist()]


def move_pairs(rng, seeds, n, spec):
    """n ground-truth frame pairs (n, 2, H, W, 3) uint8 with random starts and moves, and the move ids (n,)."""
    one = replace(spec, chunk=1)  # one frame per action: a single move
    pairs, labels = [], rng.integers(0, len(InverseDynamics.MOVES), size=n)
    for k in labels:
        seed = int(seeds[rng.integers(len(seeds))])
        start = tuple(int(v) for v in rng.integers(0, spec.canvas, 2))
        pairs.append(data.render_episode(seed, [InverseDynamics.MOVES[k]], one, start=start)[0])
    return np.stack(pairs), labels


def train_inverse_dynamics(cfg, device, steps=800, batch=64, seed=0, progress=None):
    """Cross-entropy on ground-truth pairs of training worlds. Returns the model (eval mode)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    idm = InverseDynamics(cfg.size).to(device)
    opt = torch.optim.AdamW(idm.parameters(), lr=1e-3)
    seeds = range(cfg.train_seeds[0], cfg.train_seeds[0] + 256)  # 256 worlds stay in the world cache
    for _ in (progress or (lambda x: x))(range(steps)):
        pairs, labels = move_pairs(rng, seeds, batch, cfg.world())
        loss = F.cross_entropy(idm(sfvgen.to_model(pairs, device)), torch.as_tensor(labels, device=device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return idm.eval()


def load_idm(path, cfg, device):
    """The inverse-dynamics model: from `path`, or trained on ground-truth pairs (about a minute on a CPU) and saved there."""
    if os.path.exists(path):
        ckpt = sfvgen.load_checkpoint(path, require=("size", "model"))
        if ckpt["size"] != cfg.size:
            raise ValueError(f"{path}: inverse dynamics for {ckpt['size']}x{ckpt['size']} frames; "
                             f"the video model makes {cfg.size}x{cfg.size}")
        idm = InverseDynamics(cfg.size).to(device)
        idm.load_state_dict(ckpt["model"])
        return idm.eval()
    idm = train_inverse_dynamics(cfg, device, progress=lambda x: tqdm(x, desc="training inverse dynamics", leave=False))
    sfvgen.save_checkpoint(path, dict(size=cfg.size, model=idm.state_dict()))
    print(f"wrote {path}")
    return idm


def idm_accuracy(idm, cfg, n=2000):
    """The share of moves read right on n ground-truth pairs of held-out (test) worlds."""
    pairs, labels = move_pairs(np.random.default_rng(cfg.seed), range(*cfg.test_seeds), n, cfg.world())
    with torch.no_grad():
        logits = idm(sfvgen.to_model(pairs, next(idm.parameters()).device))
    return float((logits.argmax(-1).cpu().numpy() == labels).mean())


# ============================================================================= scoring a plan
def plan_scores(moves, truth_pos, n_out, spec):
    """The paper's Table 2 metrics. Execute per-frame moves from the true start; distances in pixels on the torus.
    final: executed end to the start; waypoints: mean over the outward path's chunk ends (start included)
    of the closest executed position on the return leg."""
    executed = data.trajectory(moves, truth_pos[0], replace(spec, chunk=1))  # (N, 2): one move per frame
    waypoints = truth_pos[:n_out:spec.chunk]                                      # (n + 1, 2)
    ret = executed[n_out - 1:]                                                    # from the turning point on
    closest = [data.torus_distance(ret, w, spec).min() for w in waypoints]
    return dict(final=float(data.torus_distance(executed[-1], truth_pos[0], spec)), waypoints=float(np.mean(closest)))


def return_reading(moves, actions, K):
    """What each return chunk did, read chunk by chunk from the per-frame moves (N - 1 of them) of a video
    whose first chunks are outward moves and the rest 'go back' (ours: a diagnostic, not in the paper).
    A chunk's move is the move read most often in its K frames. Per return chunk (lists, 1 = yes):
    retraced: the move the simulator's 'go back' makes there (data.resolve_go_back);
    undid_previous: the opposite of the chunk before it, as read (on the turn the two agree where the last
    outward chunk was read as commanded)."""
    n_out = sum(a != "go back" for a in actions)
    chunks = [moves[c * K:(c + 1) * K] for c in range(len(actions))]
    chunk_moves = [max(m, key=m.count) for m in chunks]  # ties: the first move read
    goal = data.resolve_go_back(actions)
    ret = range(n_out, len(actions))
    return dict(retraced=[int(chunk_moves[c] == goal[c]) for c in ret],
                undid_previous=[int(chunk_moves[c] != "stay" and chunk_moves[c] == data.OPPOSITE[chunk_moves[c - 1]])
                                for c in ret])


# ============================================================================= the task, arm by arm
def plan_episode(model, diffusion, cfg, idm, seed, actions, fast, window=sfvgen.local_window):
    """One task of section 4.3 in world `seed`: generate the video of `actions` from the true start frame
    (Algorithm 1a when `fast`, learning `window`), read its moves with inverse dynamics, execute them, score them."""
    spec, K = cfg.world(), cfg.chunk
    n_out = sum(a != "go back" for a in actions)
    truth, pos = data.render_episode(seed, actions, spec)                        # (N, H, W, 3), (N, 2)
    frames = sfvgen.generate_long(model, diffusion, cfg, truth[0], actions, fast_learning=fast, seed=cfg.seed, window=window)["frames"]
    moves = idm.infer(frames)                                                    # N - 1 moves
    s = plan_scores(moves, pos, 1 + n_out * K, spec)
    s.update(return_reading(moves, actions, K))
    s["return_psnr"] = metrics.psnr(frames[1 + n_out * K:], truth[1 + n_out * K:])
    return s


def plan_table(model, diffusion, cfg, n_worlds, out_chunks, idm, loop_model=None, arms=ARMS, window=sfvgen.local_window):
    """Every arm on the same n_worlds held-out worlds, paths and sampler noise. Returns the rows (means, and
    the per-world scores)."""
    rng = np.random.default_rng(cfg.seed)
    tasks = [(cfg.test_seeds[0] + i, data.make_actions("go-back", rng, n=out_chunks)) for i in range(n_worlds)]
    weights = {NO_FAST: (model, False), SLOW_ONLY: (model, True), LOOP: (loop_model, True)}
    rows = []
    for name in arms:
        slow, fast = weights[name]
        if slow is None:
            raise ValueError(f"the row {name!r} needs --loop-ckpt")
        m = sfvgen.with_lora(slow, cfg) if fast else slow  # a fresh TEMP-LoRA over a copy of the slow weights
        scores = [plan_episode(m, diffusion, cfg, idm, seed, actions, fast, window)
                  for seed, actions in tqdm(tasks, desc=name, leave=False)]
        rows.append(dict(method=name, **{k: np.mean([s[k] for s in scores], axis=0).tolist() for k in scores[0]},
                         per_world=scores))
    return rows, [s for s, _ in tasks]


def print_table(rows, acc, n_worlds, out_chunks, spec):
    print(f"inverse dynamics: {100 * acc:.1f}% of moves right on 2000 ground-truth pairs of held-out worlds")
    print(f"{'method':<34} | {'final distance to start (px)':>28} | {'closest to waypoints (px)':>25} | {'return PSNR':>11} | "
          f"return chunks retraced / undoing the chunk before (1 = the turn)")
    for r in rows:
        per_chunk = " ".join(f"{100 * a:.0f}/{100 * b:.0f}%" for a, b in zip(r["retraced"], r["undid_previous"]))
        print(f"{r['method']:<34} | {r['final']:>28.1f} | {r['waypoints']:>25.1f} | {r['return_psnr']:>11.2f} | {per_chunk}")
    print(f"({n_worlds} held-out worlds, {out_chunks} outward chunks of {spec.chunk} frames at {spec.speed} px per frame: "
          f"the turning point is {out_chunks * spec.chunk * spec.speed} px of walking from the start)")


# ============================================================================= the entry point
def extra_flags(p):
    p.add_argument("--worlds", type=int, required=True, help="plan on this many held-out test worlds")
    p.add_argument("--out-chunks", type=int, default=4, help="chunks of the outward path before the 'go back' chunks")
    p.add_argument("--loop-ckpt", default=None, help="loop-trained weights (train.py --loop) for the full-method row")
    p.add_argument("--idm", default="checkpoints/idm.pt", help="inverse-dynamics checkpoint (trained and saved here if missing)")
    p.add_argument("--arms", default=None, help=f"only these rows, comma-separated: {', '.join(ARMS)}")
    p.add_argument("--fast-reverse", action="store_true", help="also learn each window played backwards (ours)")


def plan(args, model, cfg, diffusion):
    """Outward actions, then 'go back' for every return chunk; inverse dynamics turns the generated frames into
    moves, which the simulator executes. The paper's Table 2 layout."""
    dev = next(model.parameters()).device
    idm = load_idm(args.idm, cfg, dev)
    acc = idm_accuracy(idm, cfg)
    arms = [a for a, *_ in common.keep_rows([(a,) for a in ARMS], args.arms)]
    if not args.arms and not args.loop_ckpt:
        arms.remove(LOOP)  # the two slow-only rows
    loop_model = sfvgen.load_model(args.loop_ckpt, dev)[0] if args.loop_ckpt else None
    window = rules.make_window("local", args.fast_reverse)
    rows, worlds = plan_table(model, diffusion, cfg, args.worlds, args.out_chunks, idm, loop_model, arms, window)
    print_table(rows, acc, args.worlds, args.out_chunks, cfg.world())
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "plan.json")
    video.write_json(path, dict(checkpoint=args.ckpt, loop_checkpoint=args.loop_ckpt, idm_accuracy=acc, worlds=worlds, rows=rows))
    print(f"wrote {path}")
    return dict(idm_accuracy=acc, rows=rows)


def main(argv=None):
    return common.main(plan, argv, common.parser(__doc__.split("\n")[0], extra_flags, "python -m lab.plan"))


if __name__ == "__main__":
    main()
