"""A training curve: the slow model's single-chunk measures (known-region PSNR, whole-frame gain over repeating the
last frame) at every snapshot of a run, against the CPU-minutes spent to reach it.

    python train.py ... --snapshot-every 250 --out runs/x        # half-precision EMA snapshots snap_*.pt
    python -m lab.curve runs/x [runs/y ...] --slow 40 --out docs/curve

Each snapshot carries the CPU-minutes of its run (all threads, resumed runs included); a latent model's curve adds
the CPU-minutes of the autoencoder it was trained on (its checkpoint, named in the config). Writes curve.json, a
markdown table (curve.md) and, when matplotlib is installed (pip install ".[plots]"), curve.png.
"""
import argparse
import glob
import json
import os
import sys

import torch

import cli
import data
import metrics
import sfvgen
import video

from . import common


def measure(path, n, seed=0, threads=1):
    """(step, CPU-minutes with the autoencoder's, single-chunk scores) of one snapshot, on n held-out test items."""
    model, cfg, ckpt = sfvgen.load_model(path)
    items = data.chunk_items(cfg.test_seeds, n, cfg.world(), seed=seed)
    ae = model.autoencoder
    with torch.no_grad():
        x = sfvgen.Diffusion(cfg).sample(model, sfvgen.to_model(items["context"], None, ae),
                                         torch.as_tensor(items["tokens"]), cfg.chunk, torch.Generator().manual_seed(seed))
    return ckpt.get("step", 0), ckpt.get("cpu_minutes", 0.0) + before(cfg), metrics.chunk_scores(sfvgen.to_frames(x, ae), items)


def before(cfg):
    """CPU-minutes spent before a run began: its autoencoder's, and those of the run it continues (--init)."""
    minutes = 0.0
    if cfg.latent_channels and cfg.autoencoder and os.path.exists(cfg.autoencoder):
        minutes += sfvgen.load_checkpoint(cfg.autoencoder, require=("autoencoder",)).get("cpu_minutes", 0.0)
    if cfg.init and os.path.exists(cfg.init):
        init = sfvgen.load_checkpoint(cfg.init)
        minutes += init.get("cpu_minutes", 0.0) + before(sfvgen.Config(**init["config"]))
    return minutes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.prog = "python -m lab.curve"
    p.add_argument("runs", nargs="+", help="training output folders holding snap_*.pt")
    p.add_argument("--slow", type=int, default=40, help="held-out single-chunk items per snapshot")
    p.add_argument("--out", dest="out_dir", default="out/curve", help="folder of curve.json, curve.md and curve.png")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cli.check_writable(args.out_dir)
    rows = []
    for run in args.runs:
        snaps = sorted(glob.glob(os.path.join(run, "snap_*.pt")))
        if not snaps:
            sys.exit(f"error: {run}: no snap_*.pt (train with --snapshot-every N)")
        for path in snaps:
            try:
                step, minutes, s = measure(path, args.slow)
            except ValueError as e:
                sys.exit(f"error: {e}")
            rows.append(dict(run=run, step=step, cpu_minutes=round(minutes, 1), known_psnr=round(s["known_psnr"], 2),
                             gain=round(s["gain"], 2), psnr=round(s["psnr"], 2), flat_psnr=round(s["flat_psnr"], 2),
                             oracle_psnr=round(s["oracle_psnr"], 2)))
            print(json.dumps(rows[-1]), flush=True)
    video.write_json(os.path.join(args.out_dir, "curve.json"), dict(items=args.slow, rows=rows))
    table = ["| run | step | CPU-minutes | known-region PSNR | whole-frame gain over repeat-last |",
             "|---|---|---|---|---|"]
    table += [f"| {r['run']} | {r['step']} | {r['cpu_minutes']:.1f} | {r['known_psnr']:.2f} dB | {r['gain']:+.2f} dB |"
              for r in rows]
    common.write_table(os.path.join(args.out_dir, "curve.md"), table)
    plt = common.pyplot("curve.png")
    if plt is None:
        return rows
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for run in args.runs:
        r = [x for x in rows if x["run"] == run]
        for ax, key in zip(axes, ("known_psnr", "gain")):
            ax.plot([x["cpu_minutes"] for x in r], [x[key] for x in r], marker="o", label=os.path.basename(run.rstrip("/")))
    axes[0].set(xlabel="CPU-minutes (autoencoder included)", ylabel="dB", title="known-region PSNR")
    axes[1].set(xlabel="CPU-minutes (autoencoder included)", ylabel="dB", title="whole-frame gain over repeat-last")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    common.save_figure(plt, fig, os.path.join(args.out_dir, "curve.png"))
    print(f"wrote {args.out_dir}/curve.json, curve.md and curve.png")
    return rows


if __name__ == "__main__":
    main()
