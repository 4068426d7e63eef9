"""Evaluation on held-out worlds: long videos with and without TEMP-LoRA fast learning, and its ablations.

Algorithm 1a against the same model without fast learning, the paper's ablations and controls of ours; and the
slow model alone.

    python -m lab.eval --ckpt checkpoints/tiny.pt --worlds 20 [--trajectory out-and-back] [--out-chunks 4] [--ablate]
    python -m lab.eval --ckpt checkpoints/tiny.pt --worlds 20 --arms "TEMP-LoRA,rule=global"
    python -m lab.eval --ckpt checkpoints/tiny.pt --slow 20 [--rollouts 20] [--data my_videos]

--worlds: every row generates the same episodes (test worlds, paths and sampler noise), so rows compare paired
by world; the table gives PSNR, SSIM, the outward and return legs' PSNR, the return leg's gain over the row
without fast learning with a 95% bootstrap interval (lab/stats.py), revisit consistency (SRC) and scene cuts
(the paper's Table 1 metrics on our world). --ablate adds the paper's ablations (Table 3: LoRA targets, the fast
rule, update steps; lab/rules.py) and our controls: another world's memory, and on kinds that revisit, the LoRA
frozen at the turn, this world's and another world's. eval_<trajectory>.json is rewritten after every row.
--slow (ours): single-chunk prediction against repeating the last context frame, and rollouts without memory.
"""
import os
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

import data
import metrics
import sfvgen
import video

from . import common, rules
from .stats import bootstrap_ci

BASE = "no fast learning"


def extra_flags(p):
    p.add_argument("--worlds", type=int, default=0, help="evaluate long videos on this many held-out test worlds")
    common.kind_flags(p, "--worlds")
    p.add_argument("--ablate", action="store_true", help="add LoRA target sets, fast rules, update steps and controls "
                   "(wrong memory; on revisit kinds the LoRA frozen at the turn, this world's and another world's)")
    p.add_argument("--arms", default=None, help=f"only these rows, comma-separated (the row {BASE!r} is always run)")
    common.rule_flags(p)
    p.add_argument("--slow", type=int, default=0, help="single-chunk prediction on this many test worlds (the slow model alone)")
    p.add_argument("--rollouts", type=int, default=20, help="with --slow: 8-chunk rollouts (PSNR per chunk) on this many worlds")
    p.add_argument("--split", default="test", choices=("test", "val"),
                   help="the held-out test worlds, or the validation worlds (to tune on)")
    p.add_argument("--data", dest="data_dir", default=None,
                   help="with --slow: measure on the held-out videos of this folder of your videos (annotations.jsonl)")


def eval_arms(args, cfg):
    """The rows of the table: (name, config overrides, fast rule, fast learning on, control)."""
    rule = args.fast_rule
    arms = [(BASE, {}, rule, False, None), ("TEMP-LoRA", {}, rule, True, None)]
    if args.ablate:
        arms += [(f"targets={t}", dict(lora_targets=t), rule, True, None) for t in sfvgen.LORA_TARGETS if t != cfg.lora_targets]
        arms += [(f"rule={r}", {}, r, True, None) for r in ("original", "global") if r != rule]
        arms += [(f"fast_steps={k}", dict(fast_steps=k), rule, True, None) for k in (1, 2, 8) if k != cfg.fast_steps]
        arms += [("control: wrong memory", {}, rule, True, "wrong")]
        if args.trajectory in data.REVISIT_KINDS:  # memory with the anti-drift part held equal (see evaluate)
            arms += [("frozen at the turn", {}, rule, True, "turn"),
                     ("control: another world's LoRA frozen at the turn", {}, rule, True, "turn-wrong")]
    return common.keep_rows(arms, args.arms, always=BASE)


def fresh_window(rule, reverse, seed):
    """The window function of a video sampled with `seed`: the global rule's draws start anew with every video."""
    return rules.make_window(rule, reverse, np.random.default_rng(seed))


def outward_leg(model, diffusion, cfg, episodes, k, n_ret, rule, reverse, cache):
    """Episode k's outward leg generated with fast learning (Algorithm 1a), its LoRA and state at the turn;
    computed once per episode, config and rule (ours: the frozen-at-the-turn control, not in the paper)."""
    key = (k, repr(cfg), rule, reverse)
    if key not in cache:
        seed, actions = episodes[k]
        truth, _ = data.render_episode(seed, actions, cfg.world())
        cache[key] = common.timed(model, diffusion, cfg, truth[0], actions[:-n_ret], True, cfg.seed,
                                  window=fresh_window(rule, reverse, cfg.seed))
    return cache[key]


def episode(m, diffusion, c, episodes, k, n_ret, fast, control, rule, reverse, outward_memory):
    """The video of episode k in a row (fast learning on or off, with `rule`, or a control): dict(frames,
    seconds_per_frame)."""
    seed, actions = episodes[k]
    truth, _ = data.render_episode(seed, actions, c.world())
    dev = next(m.parameters()).device
    if control == "wrong":  # memory of another world's episode, frozen: does any LoRA help?
        other = episodes[(k + 1) % len(episodes)]
        wrong = common.timed(m, diffusion, c, data.render_episode(other[0], other[1], c.world())[0][0], other[1], True, c.seed,
                             window=fresh_window(rule, reverse, c.seed))
        start = sfvgen.Memory.start(truth[0], c.seed, dev, m.autoencoder, lora=wrong["memory"].lora)
        res = common.timed(m, diffusion, c, None, actions, False, c.seed, memory=start)
        return dict(res, frames=np.concatenate([common.start_frame(start, m.autoencoder), res["frames"]]))
    if control in ("turn", "turn-wrong"):
        # the outward leg generated with fast learning, then the return with the LoRA frozen: this world's
        # (learned on its own outward frames) or another world's (learned the same way on its outward leg).
        # Both returns continue the same video from the same noise, with a LoRA of as many updates: their
        # difference is the memory of the place, not steadier sampling.
        own = outward_leg(m, diffusion, c, episodes, k, n_ret, rule, reverse, outward_memory)
        lora = own if control == "turn" else outward_leg(m, diffusion, c, episodes, (k + 1) % len(episodes), n_ret, rule, reverse,
                                                         outward_memory)
        back = common.timed(m, diffusion, c, None, actions[-n_ret:], False, c.seed,
                            memory=replace(own["memory"], lora=lora["memory"].lora))
        return dict(frames=np.concatenate([own["frames"], back["frames"]]),
                    seconds_per_frame=(own["seconds_per_frame"] + back["seconds_per_frame"]) / 2)
    return common.timed(m, diffusion, c, truth[0], actions, fast, c.seed, window=fresh_window(rule, reverse, c.seed))


def evaluate(args, model, cfg, diffusion):
    """Held-out episodes, the same for every row. Prints the table; eval_<trajectory>.json is written after every row."""
    device = next(model.parameters()).device
    rng = np.random.default_rng(cfg.seed)
    first = cfg.val_seeds[0] if args.split == "val" else cfg.test_seeds[0]  # tune on val, report on test
    seeds = [first + i for i in range(args.worlds)]
    episodes = [(s, data.make_actions(args.trajectory, rng, n=args.out_chunks)) for s in seeds]
    # the "return leg": the second half of a kind that revisits the first (the walk back, or the second lap)
    n_ret = len(episodes[0][1]) // 2 if args.trajectory in data.REVISIT_KINDS else 0
    rows, per_seed, first_videos, outward_memory, pending = [], {}, {}, {}, {}
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, f"eval_{args.trajectory}.json")
    for name, over, rule, fast, control in eval_arms(args, cfg):
        c = replace(cfg, **over)
        reverse = args.fast_reverse and rule != "original"  # the original rule has a context: never reversed
        m = sfvgen.with_lora(model, c) if fast else model
        scores, secs = [], []
        for k in tqdm(range(len(episodes)), desc=name, leave=False):
            seed, actions = episodes[k]
            truth, positions = data.render_episode(seed, actions, c.world())
            res = episode(m, diffusion, c, episodes, k, n_ret, fast, control, rule, reverse, outward_memory)
            scores.append(metrics.score(res["frames"], truth, positions, c.chunk, n_ret))
            if k == 0:
                first_videos[name], first_truth, first_positions = res["frames"], truth, positions
            secs.append(res["seconds_per_frame"])
        per_seed[name] = scores
        row = {key: float(np.mean([s[key] for s in scores])) for key in
               ("psnr", "ssim", "outward_psnr", "return_psnr", "src_psnr", "src_ssim", "scene_cuts")}
        row.update(arm=name, seconds_per_frame=float(np.mean(secs)), peak_mb=common.peak_memory_mb(device),
                   chunk_psnr=np.mean([s["chunk_psnr"] for s in scores], 0).round(2).tolist())
        gain = np.subtract([s["return_psnr"] for s in scores], [b["return_psnr"] for b in per_seed[BASE]])
        row.update(return_gain=float(np.mean(gain)), seeds_improved=int(np.sum(gain > 0)),
                   return_gain_ci=list(bootstrap_ci(gain)[1:]),  # paired by world, against the first row
                   return_psnr_per_world=[s["return_psnr"] for s in scores],
                   src_psnr_per_world=[s["src_psnr"] for s in scores],  # to pool runs of other seeds
                   src_ssim_per_world=[s["src_ssim"] for s in scores])
        if n_ret:  # SRC, the paper's memory measure: a revisit against the video's own first visit
            row.update(src_paired(row, rows[0] if rows else row, "none"))
            if name == "frozen at the turn" and CONTROL in [a[0] for a in eval_arms(args, cfg)]:
                pending[name] = row  # compared with another world's LoRA once that row is done
            if name == CONTROL and "frozen at the turn" in pending:
                own = pending.pop("frozen at the turn")
                own.update(src_paired(own, row, "another"))
                kept = np.subtract(own["return_psnr_per_world"], rows[0]["return_psnr_per_world"]) >= 0
                own["goal_worlds"] = int(np.sum((np.array(own["src_gain_vs_none_per_world"]) >= 3) &
                                                (np.array(own["src_gain_vs_another_per_world"]) >= 3) & kept))
        rows.append(row)
        video.write_json(path, dict(checkpoint=args.ckpt, trajectory=args.trajectory, worlds=seeds, rows=rows))  # kept if stopped
    print_table(rows, args.worlds)
    for r in rows[1:]:  # the paper's memory measure, paired by world
        if "src_gain_vs_none" in r:
            line = f"{r['arm']}: SRC-PSNR {r['src_gain_vs_none']:+.2f} dB {fmt_ci(r['src_gain_vs_none_ci'])} over no memory"
            if "src_gain_vs_another" in r:
                line += (f", {r['src_gain_vs_another']:+.2f} dB {fmt_ci(r['src_gain_vs_another_ci'])} over another world's "
                         f"LoRA; +3 dB over both with the return leg kept in {r['goal_worlds']}/{args.worlds} worlds")
            print(line)
    if "TEMP-LoRA" in first_videos:  # the first world: without memory | with memory | ground truth
        gif = os.path.join(args.out_dir, f"eval_{args.trajectory}.gif")
        video.write_video(gif, video.panels(first_videos[BASE], first_videos["TEMP-LoRA"], first_truth, truth=first_truth,
                                            revisit=metrics.revisit_mask(first_positions, 2 * cfg.chunk),
                                            labels=["without memory", "TEMP-LoRA", "ground truth"]))
    print(f"wrote {path} (after every row)")
    return rows


CONTROL = "control: another world's LoRA frozen at the turn"


def fmt_ci(ci):
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def src_paired(row, other, name):
    """SRC-PSNR and SRC-SSIM of `row` minus those of `other`, paired by world, with 95% bootstrap intervals, and
    the worlds where the memory goal of the lab holds against it: SRC-PSNR at least 3 dB higher while the return
    leg's PSNR against the truth is not below the row without fast learning's."""
    d_psnr = np.subtract(row["src_psnr_per_world"], other["src_psnr_per_world"])
    d_ssim = np.subtract(row["src_ssim_per_world"], other["src_ssim_per_world"])
    return {f"src_gain_vs_{name}": float(d_psnr.mean()), f"src_gain_vs_{name}_ci": list(bootstrap_ci(d_psnr)[1:]),
            f"src_ssim_gain_vs_{name}": float(d_ssim.mean()),
            f"src_ssim_gain_vs_{name}_ci": list(bootstrap_ci(d_ssim)[1:]),
            f"src_gain_vs_{name}_per_world": d_psnr.round(3).tolist()}


def print_table(rows, n):
    cols = [("arm", 24, "{}"), ("psnr", 7, "{:.2f}"), ("ssim", 6, "{:.3f}"), ("outward_psnr", 8, "{:.2f}"),
            ("return_psnr", 8, "{:.2f}"), ("return_gain", 8, "{:+.2f}"), ("seeds_improved", 6, "{}"),
            ("src_psnr", 8, "{:.2f}"), ("scene_cuts", 6, "{:.2f}"), ("seconds_per_frame", 8, "{:.3f}"), ("peak_mb", 7, "{:.0f}")]
    heads = ["arm", "PSNR", "SSIM", "out PSNR", "ret PSNR", "ret gain", f"better/{n}", "SRC PSNR", "cuts", "s/frame", "peak MB"]
    print(" | ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, (_, w, _)) in enumerate(zip(heads, cols))))
    for r in rows:
        print(" | ".join(f.format(r[k]).ljust(w) if i == 0 else f.format(r[k]).rjust(w) for i, (k, w, f) in enumerate(cols)))


def slow_items(args, cfg):
    """The single-chunk items of --slow: held-out test worlds (data.chunk_items: known region and shift oracle),
    or with --data the held-out videos of your folder (every chunk with a chunk before it; whole frames only)."""
    if not args.data_dir:
        seeds = cfg.val_seeds if args.split == "val" else cfg.test_seeds
        return data.chunk_items(seeds, args.slow, cfg.world(), seed=cfg.seed)
    K = cfg.chunk
    eps = [e for e in video.load_folder(args.data_dir, cfg.world()) if e.split == "val"]
    if not eps:
        raise ValueError(f"{args.data_dir}: no held-out videos (\"split\": \"val\") to measure on")
    ctx, tok, tgt = [], [], []
    for e in eps:
        for i in range(1, len(e.actions)):  # chunk i from the whole chunk i - 1 before it
            ctx.append(e.frames[1 + (i - 1) * K:1 + i * K]), tgt.append(e.frames[1 + i * K:1 + (i + 1) * K])
            tok.append(data.tokenize(e.actions[i]))
    if not ctx:
        raise ValueError(f"{args.data_dir}: the held-out videos have no chunk after a first one")
    n = min(args.slow, len(ctx))
    return dict(context=np.stack(ctx[:n]), tokens=np.array(tok[:n]), target=np.stack(tgt[:n]))


def evaluate_slow(args, model, cfg, diffusion):
    """Single-chunk prediction on held-out chunks (the previous chunk as context, one action): the known-region
    PSNR (the part of each frame that was already in view: a model that keeps what it has seen is exact there),
    whole-frame PSNR and its gain over repeating the last context frame, beside a flat frame of the last frame's
    colour and the shift oracle (metrics.chunk_scores); and 8-chunk rollouts from the start frame (PSNR per chunk
    index). With --data: held-out videos of your folder, whole frames only. Ours: the slow model alone."""
    device, ae = next(model.parameters()).device, model.autoencoder  # a latent model is scored on decoded frames
    items = slow_items(args, cfg)
    x = diffusion.sample(model, sfvgen.to_model(items["context"], device, ae), torch.tensor(items["tokens"], device=device),
                         cfg.chunk, torch.Generator().manual_seed(cfg.seed))
    gen = sfvgen.to_frames(x, ae)
    if "known" in items:
        out = metrics.chunk_scores(gen, items)
        if ae is not None:  # what the autoencoder alone keeps: a latent model cannot do better on decoded frames
            rec = metrics.chunk_scores(sfvgen.to_frames(sfvgen.to_model(items["target"], device, ae), ae), items)
            out.update(autoencoder_known_psnr=rec["known_psnr"], autoencoder_psnr=rec["psnr"])
    else:  # your videos: no geometry, so no known region or oracle
        last = np.repeat(items["context"][:, -1:], cfg.chunk, axis=1)
        out = dict(psnr=float(np.mean([metrics.psnr(g, t) for g, t in zip(gen, items["target"])])),
                   repeat_last_psnr=float(np.mean([metrics.psnr(b, t) for b, t in zip(last, items["target"])])))
        out["gain"] = out["psnr"] - out["repeat_last_psnr"]
    chunk_psnr = []
    rng = np.random.default_rng(cfg.seed)
    for i in tqdm(range(0 if args.data_dir else args.rollouts), desc="rollouts", leave=False):
        actions = data.make_actions("out-and-back", rng, n=4)
        truth, positions = data.render_episode(cfg.test_seeds[0] + i, actions, cfg.world())
        res = common.timed(model, diffusion, cfg, truth[0], actions, False, cfg.seed)
        chunk_psnr.append(metrics.score(res["frames"], truth, positions, cfg.chunk, 4)["chunk_psnr"])
    out = {k: round(v, 3) for k, v in out.items()}
    out.update(items=len(items["target"]), rollout_chunk_psnr=np.mean(chunk_psnr, 0).round(2).tolist() if chunk_psnr else [])
    where = args.data_dir or f"held-out {args.split} worlds"
    if "known_psnr" in out:
        print(f"single chunk ({out['items']} items, {where}): known region {out['known_psnr']:.2f} dB (shift oracle: "
              f"exact there); whole frame {out['psnr']:.2f} dB, gain {out['gain']:+.2f} dB over repeat-last "
              f"({out['repeat_last_psnr']:.2f}); flat frame {out['flat_psnr']:.2f}, shift oracle {out['oracle_psnr']:.2f}")
        if "autoencoder_known_psnr" in out:
            print(f"the autoencoder alone (its reconstruction of the targets): known region {out['autoencoder_known_psnr']:.2f} dB, "
                  f"whole frame {out['autoencoder_psnr']:.2f} dB")
    else:
        print(f"single chunk ({out['items']} items, {where}): whole frame {out['psnr']:.2f} dB, gain {out['gain']:+.2f} dB "
              f"over repeat-last ({out['repeat_last_psnr']:.2f})")
    if out["rollout_chunk_psnr"]:
        print(f"rollout PSNR per chunk: {out['rollout_chunk_psnr']}")
    os.makedirs(args.out_dir, exist_ok=True)
    video.write_json(os.path.join(args.out_dir, "eval_slow.json"), dict(checkpoint=args.ckpt, **out))
    return out


def command(args, model, cfg, diffusion):
    if args.slow:
        return evaluate_slow(args, model, cfg, diffusion)
    if args.worlds:
        return evaluate(args, model, cfg, diffusion)
    raise ValueError("give --worlds N (long videos with and without fast learning) or --slow N (the slow model alone)")


def main(argv=None):
    return common.main(command, argv, common.parser(__doc__.split("\n")[0], extra_flags, "python -m lab.eval"))


if __name__ == "__main__":
    main()
