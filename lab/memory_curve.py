"""Memory against its price: SRC memory of the fast weights against the time fast learning adds, one point per
`python -m lab.eval --worlds N --ablate --arms "TEMP-LoRA,frozen at the turn,control: another world's LoRA frozen
at the turn"` run (one fast-update setting each).

    python -m lab.memory_curve out/mem/default out/mem/all_s8 ... --out out/memory_curve

Reads each run's eval_out-and-back.json and writes memory_curve.md (a table row per setting) and, when matplotlib
is installed, memory_curve.png. Memory is read as the paper reads it, SRC (a revisit against the video's own first
visit), with both controls: no fast learning, and another world's LoRA frozen at the same turn (what any LoRA
gives); beside it the return leg against the truth, which memory must not cost. The goal column counts the worlds
where SRC is at least 3 dB over both controls with the return leg not below no memory.
"""
import argparse
import json
import os
import sys

from . import common

NONE, FAST, FROZEN, OTHER = ("no fast learning", "TEMP-LoRA", "frozen at the turn",
                             "control: another world's LoRA frozen at the turn")


def point(run):
    """One setting: its time ratio, and the memory rows (mean and 95% interval) of its eval JSON."""
    path = os.path.join(run, "eval_out-and-back.json")
    try:
        rows = {r["arm"]: r for r in json.load(open(path))["rows"]}
        none, fast, frozen = rows[NONE], rows[FAST], rows[FROZEN]
        frozen["src_gain_vs_another"]
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"error: {path}: not a finished lab.eval run with the arms {FAST!r}, {FROZEN!r} and {OTHER!r} ({e})")
    return dict(setting=os.path.basename(run.rstrip("/")), worlds=len(frozen["src_psnr_per_world"]),
                time=fast["seconds_per_frame"] / none["seconds_per_frame"],
                fast_return=(fast["return_gain"], *fast["return_gain_ci"]),
                fast_src=(fast["src_gain_vs_none"], *fast["src_gain_vs_none_ci"]),
                src_none=(frozen["src_gain_vs_none"], *frozen["src_gain_vs_none_ci"]),
                src_other=(frozen["src_gain_vs_another"], *frozen["src_gain_vs_another_ci"]),
                frozen_return=(frozen["return_gain"], *frozen["return_gain_ci"]), goal=frozen["goal_worlds"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.prog = "python -m lab.memory_curve"
    p.add_argument("runs", nargs="+", help="lab.eval output folders, one fast-update setting each")
    p.add_argument("--out", dest="out_dir", default="out/memory_curve", help="folder of memory_curve.md and .png")
    args = p.parse_args(argv)
    pts = sorted((point(r) for r in args.runs), key=lambda x: x["time"])
    f = lambda v: f"{v[0]:+.2f} [{v[1]:+.2f}, {v[2]:+.2f}]"  # noqa: E731
    table = ["| setting | time per frame (x no memory) | TEMP-LoRA: return gain | TEMP-LoRA: SRC over none | frozen at the turn: "
             "SRC over none | SRC over another world's LoRA | return gain | goal worlds |", "|---|---|---|---|---|---|---|---|"]
    table += [f"| {x['setting']} | {x['time']:.2f}x | {f(x['fast_return'])} | {f(x['fast_src'])} | {f(x['src_none'])} | "
              f"{f(x['src_other'])} | {f(x['frozen_return'])} | {x['goal']}/{x['worlds']} |" for x in pts]
    common.write_table(os.path.join(args.out_dir, "memory_curve.md"), table)
    print("\n".join(table))
    plt = common.pyplot("memory_curve.png")
    if plt is None:
        return pts
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for key, label in (("src_other", "SRC: this world's LoRA over another's"), ("src_none", "SRC: over no memory"),
                       ("frozen_return", "return leg vs truth: over no memory")):
        ax.errorbar([x["time"] for x in pts], [x[key][0] for x in pts], fmt="o",
                    yerr=[[x[key][0] - x[key][1] for x in pts], [x[key][2] - x[key][0] for x in pts]], label=label, capsize=3)
    for x in pts:
        ax.annotate(x["setting"], (x["time"], x["src_other"][0]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.axhline(3, color="grey", ls="--", lw=0.8)
    ax.axvline(2, color="grey", ls=":", lw=0.8)
    ax.set(xlabel="time per frame with fast learning / without", ylabel="dB (LoRA frozen at the turn)",
           title="memory against its price")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    common.save_figure(plt, fig, os.path.join(args.out_dir, "memory_curve.png"))
    print(f"wrote {args.out_dir}/memory_curve.md and memory_curve.png")
    return pts


if __name__ == "__main__":
    main()
