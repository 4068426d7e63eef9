"""What the fast weights keep, measured on ground-truth legs.

Ours: checks of TEMP-LoRA, not rules of the paper; they test the claim of the paper's section 3.2 that the
TEMP-LoRA stores episodic memory.

    python -m lab.probe --ckpt checkpoints/tiny.pt --recall 20 [--trajectory out-and-back] [--teacher-forced] [--retrace aligned|shifted]
    python -m lab.probe --ckpt checkpoints/tiny.pt --span 20 [--retrace aligned|shifted]

memory_probe: the LoRA fast-learns an episode's *true* outward leg (Algorithm 1a's update, no sampling), then
the return leg is generated from the true turning point with a fresh LoRA, with that LoRA frozen, and with
another world's: recall in PSNR, with generation's drift taken out.
memory_span: no sampling at all; the losses of every learned chunk, paired against a fresh LoRA's, right after
its update and at the end of the leg (how long a chunk stays), and of the return leg, which is never learned.
retrace_update (--retrace): a check of whether other fast losses (rehearsed conditional pairs plus reversed
outward windows) store what a return needs. --fast-rule / --fast-reverse learn with another rule (lab/rules.py).
memory_probe.json / memory_span.json in --out hold the rows.
"""
import os

import numpy as np
import torch
from tqdm import tqdm

import data
import metrics
import sfvgen
import video

from . import common, rules
from .stats import bootstrap_ci


def ground_truth_chunks(seed, actions, cfg, device, autoencoder=None):
    """An episode's true frames as Algorithm 1a's history: [X_0 (the start frame), X_1, ..], each
    (1, N_i, 3, H, W), and the action tokens a_1, a_2, .. (each (1, L)) of X_1, X_2, .."""
    x = sfvgen.to_model(data.render_episode(seed, actions, cfg.world())[0][None], device, autoencoder)  # (1, 1 + N K, 3, H, W)
    return [x[:, :1]] + list(x[:, 1:].split(cfg.chunk, dim=1)), [sfvgen.action_tokens([a], device) for a in actions]


def learn_chunks(model, diffusion, cfg, X, tokens, seed, after_update=None, retrace="off", actions=None, rule="local",
                 reverse=False):
    """TEMP-LoRA fast learning (the fast rule `rule`, reversed with `reverse`, lab/rules.py; cfg.fast_steps) on the
    chunks X_1 .. of a ground-truth history X (ground_truth_chunks) instead of generated ones; after_update(u) runs
    after the update on chunk u. retrace "aligned" / "shifted" (--retrace): learn with retrace_update instead, which
    needs the actions (text) of X_1 ... Returns the LoRA state."""
    sfvgen.reset_lora(model)
    opt = torch.optim.Adam(sfvgen.lora_parameters(model), lr=cfg.fast_lr)
    gen, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    window = rules.make_window(rule, reverse, rng)
    for u in range(1, len(X)):  # Algorithm 1a's update after chunk u
        if retrace != "off":
            retrace_update(model, diffusion, opt, X[:u + 1], actions[:u], retrace == "shifted", cfg.fast_steps, rng, gen)
        else:
            sfvgen.fast_learn_chunk(model, diffusion, opt, X[:u + 1], tokens[u - 1], cfg, gen, window)
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


def memory_probe(model, diffusion, cfg, n_worlds, trajectory="out-and-back", out_chunks=4, teacher_forced=False, retrace="off",
                 rule="local", reverse=False):
    """Can TEMP-LoRA store and recall at all? The LoRA fast-learns the *ground-truth* outward leg, then
    the return leg is generated from the true turning point (context = the true last outward chunk) with
    a fresh LoRA, with that LoRA (frozen), and with a LoRA learned on another world's outward leg.
    --teacher-forced: each return chunk from the true chunk before it (what the LoRA gives when its input is
    the true video; the return-leg PSNR is then the mean over the return chunks).
    --trajectory: a kind whose second half revisits the first (the return walks the leg backwards; with
    loop-twice, the first lap is the "outward leg" and the second lap, the same moves again, the "return")."""
    if trajectory not in data.REVISIT_KINDS:
        raise ValueError(f"--recall: --trajectory must be one of {list(data.REVISIT_KINDS)}, not {trajectory!r}")
    if retrace != "off" and trajectory != "out-and-back":
        raise ValueError(f"--retrace learns pieces of an out-and-back return: use --trajectory out-and-back, not {trajectory!r}")
    dev = next(model.parameters()).device
    m, K = sfvgen.with_lora(model, cfg), cfg.chunk
    rng = np.random.default_rng(cfg.seed)
    eps = [(cfg.test_seeds[0] + i, data.make_actions(trajectory, rng, n=out_chunks)) for i in range(n_worlds)]
    n = len(eps[0][1]) // 2  # chunks of the outward leg: the first half of every episode of this kind
    truths = [data.render_episode(s, a, cfg.world())[0] for s, a in eps]
    loras = []
    for s, a in tqdm(eps, desc="learn outward", leave=False):
        X, tokens = ground_truth_chunks(s, a[:n], cfg, dev, m.autoencoder)
        loras.append(learn_chunks(m, diffusion, cfg, X, tokens, cfg.seed, retrace=retrace, actions=a[:n], rule=rule, reverse=reverse))
    names = ("fresh LoRA (no memory)", "LoRA of this world's outward leg", "LoRA of another world's outward leg")
    rows, chunks = {name: [] for name in names}, {name: [] for name in names}  # return-leg PSNR; PSNR per return chunk
    gens = dict(gen=torch.Generator().manual_seed(cfg.seed).get_state(), fast_gen=sfvgen.fast_generator(cfg.seed).get_state())
    for k, ((seed, actions), truth) in enumerate(tqdm(list(zip(eps, truths)), desc="return legs", leave=False)):
        for name, lora in zip(names, [{}, loras[k], loras[(k + 1) % len(loras)]]):  # {}: a fresh LoRA
            # free: the whole return leg from the true turning point (context = the true chunk n), on its own frames;
            # teacher forced: each return chunk c + 1 from the true chunk c before it
            legs = [(c, actions[c:c + 1]) for c in range(n, 2 * n)] if teacher_forced else [(n, actions[n:])]
            frames = []
            for c, acts in legs:
                # the LoRA frozen: generate_long loads the memory's LoRA and, without fast learning, keeps it
                before = sfvgen.to_model(truth[None, 1 + (c - 1) * K:1 + c * K], dev, m.autoencoder)  # the true chunk c - 1
                start = sfvgen.Memory(history=[before], chunk=c, actions=list(actions[:c]), lora=lora, **gens)
                frames.append(sfvgen.generate_long(m, diffusion, cfg, truth[0], acts, fast_learning=False, seed=cfg.seed,
                                                   memory=start)["frames"])
            frames = np.concatenate(frames)  # (n K, H, W, 3): the return leg
            per = [metrics.psnr(frames[c * K:(c + 1) * K], truth[1 + (n + c) * K:1 + (n + c + 1) * K]) for c in range(n)]
            rows[name].append(float(np.mean(per)) if teacher_forced else metrics.psnr(frames, truth[1 + n * K:]))
            chunks[name].append(per)
    out = {}
    for name, vals in rows.items():
        diff = np.subtract(vals, rows[names[0]])
        mean, lo, hi = bootstrap_ci(diff)
        per_gain = np.subtract(chunks[name], chunks[names[0]]).mean(0)  # (n,): gain per return chunk, 1 = the turn
        out[name] = dict(return_psnr=float(np.mean(vals)), gain=mean, ci=[lo, hi], better=int(np.sum(diff > 0)),
                         per_chunk_gain=per_gain.tolist())
        print(f"{name:<38} return-leg PSNR {np.mean(vals):6.2f} dB  gain {mean:+.2f} [{lo:+.2f}, {hi:+.2f}]  "
              f"better {int(np.sum(diff > 0))}/{len(vals)}  per return chunk " + " / ".join(f"{g:+.2f}" for g in per_gain))
    return out, [s for s, _ in eps]


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


def memory_span(model, diffusion, cfg, n_worlds, out_chunks=4, retrace="off", rule="local", reverse=False):
    """How long does TEMP-LoRA remember a chunk? On ground-truth outward legs (--out-chunks chunks, a path that
    never crosses itself) the fast weights learn chunk after chunk with the configured rule and steps. Each
    chunk's losses are compared, paired, with the fresh LoRA's: right after its own update, and at the end of
    the leg (lag = updates since it was learned); the same chunk indices of another world at the end of the
    leg show the side effects that are not memory. Then the return leg, which walks back over the outward leg
    (never learned itself): its conditional losses with this world's fast weights. No sampling: losses only."""
    dev = next(model.parameters()).device
    m, n, draws = sfvgen.with_lora(model, cfg), out_chunks, 8
    rng = np.random.default_rng(cfg.seed)
    eps = [data.make_actions("out-and-back", rng, n=n) for _ in range(n_worlds)]
    worlds = [ground_truth_chunks(cfg.test_seeds[0] + i, a, cfg, dev, m.autoencoder) for i, a in enumerate(eps)]
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
                     retrace=retrace, actions=eps[w][:n], rule=rule, reverse=reverse)
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
        mean, lo, hi = bootstrap_ci(mem)
        row = dict(lag=lag, **{k: float(per[k][:, lag].mean()) for k in keys}, memory=mean, memory_ci=[lo, hi],
                   worlds_better=int(np.sum(mem < 0)))
        rows.append(row)
        print(f"{lag:>3} | {row['fast_learned']:>+11.1f} / {row['fast_end']:>+10.1f} | "
              f"{row['cond_learned']:>+11.1f} / {row['cond_end']:>+11.1f} | "
              f"{row['cond_other']:>+13.1f} | {mean:+.1f} [{lo:+.1f}, {hi:+.1f}] {int(np.sum(mem < 0))}/{len(mem)}")
    mem = ret[:, 0].mean(1) - ret[:, 1].mean(1)
    mean, lo, hi = bootstrap_ci(mem)
    back = dict(cond_this=float(ret[:, 0].mean()), cond_other=float(ret[:, 1].mean()), memory=mean, memory_ci=[lo, hi],
                worlds_better=int(np.sum(mem < 0)), per_chunk_this=ret[:, 0].mean(0).tolist(),
                per_chunk_other=ret[:, 1].mean(0).tolist())
    print(f"return leg (walks back over the outward leg, not learned): cond. loss {back['cond_this']:+.1f}, "
          f"another world {back['cond_other']:+.1f}, memory {mean:+.1f} [{lo:+.1f}, {hi:+.1f}] {back['worlds_better']}/{len(mem)}")
    print("  per return chunk (1 = the turn): this world " + " / ".join(f"{v:+.1f}" for v in back["per_chunk_this"])
          + ", another world " + " / ".join(f"{v:+.1f}" for v in back["per_chunk_other"]))
    return dict(worlds=len(worlds), draws=draws, rows=rows, return_leg=back, per_world={k: v.tolist() for k, v in per.items()})


# ============================================================================= the entry point
def extra_flags(p):
    p.add_argument("--recall", type=int, default=0,
                   help="on this many worlds: fast-learn the ground-truth outward leg, generate the return from the turning point")
    p.add_argument("--span", type=int, default=0,
                   help="on this many worlds: how the loss of each learned chunk changes as fast learning goes on (no sampling)")
    common.kind_flags(p, "--recall (a kind whose second half revisits the first)")
    p.add_argument("--teacher-forced", action="store_true",
                   help="with --recall: generate each return chunk from the true chunk before it, not from the model's own frames")
    p.add_argument("--retrace", default="off", choices=("off", "aligned", "shifted"),
                   help="learn the outward leg with rehearsed conditional pairs plus reversed outward windows, one frame off "
                        "the return's chunks (aligned) or exactly on them (shifted), instead of the fast rule")
    common.rule_flags(p)


def probe(args, model, cfg, diffusion):
    os.makedirs(args.out_dir, exist_ok=True)
    if args.recall:  # recall of a LoRA learned on the true outward leg
        out, worlds = memory_probe(model, diffusion, cfg, args.recall, args.trajectory, args.out_chunks, args.teacher_forced,
                                   args.retrace, args.fast_rule, args.fast_reverse)
        video.write_json(os.path.join(args.out_dir, "memory_probe.json"), dict(checkpoint=args.ckpt, worlds=worlds, rows=out))
        return out
    if args.span:  # how each learned chunk's losses change as fast learning goes on
        res = memory_span(model, diffusion, cfg, args.span, args.out_chunks, args.retrace, args.fast_rule, args.fast_reverse)
        video.write_json(os.path.join(args.out_dir, "memory_span.json"), dict(checkpoint=args.ckpt, **res))
        return res["rows"]
    raise ValueError("give --recall N or --span N")


def main(argv=None):
    return common.main(probe, argv, common.parser(__doc__.split("\n")[0], extra_flags, "python -m lab.probe"))


if __name__ == "__main__":
    main()
