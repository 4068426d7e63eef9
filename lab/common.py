"""What the lab's entry points share: the parser, building the model from a checkpoint, a timed generation,
row selection (--arms), the start frame of a video continued from sfvgen.Memory.start, and writing a table or a
figure (matplotlib is the optional `plots` extra).

Every entry point takes the generation settings of the core (cli.GENERATION_FIELDS: --fast-steps 8,
--lora-targets all, --seed 3, ...) on top of the checkpoint's config, plus its own flags; --out is the folder
its JSON (and GIF or PNG) go to.
"""
import resource
import sys
import time

import torch

import cli
import data
import sfvgen
import video

from . import rules


def parser(description, extra, script):
    """cli.config_parser with the generation fields, --ckpt and --out, then the script's own flags (`extra(p)`)."""
    def flags(p):
        p.add_argument("--ckpt", required=True, help="checkpoint written by train.py (or its --export)")
        p.add_argument("--out", dest="out_dir", default="out", help="output folder (JSON, and GIF or PNG where there is one)")
        extra(p)
    p = cli.config_parser(description, flags, only=cli.GENERATION_FIELDS, script=script, skip=("out", "data"))
    p.prog = script  # "python -m lab.eval" in the usage line
    return p


def rule_flags(p):
    """--fast-rule and --fast-reverse: the fast rule of every fast-learning row (lab/rules.py)."""
    p.add_argument("--fast-rule", default="local", choices=rules.RULES,
                   help="local (the paper), original (text Temp-LoRA) or global (whole history): lab/rules.py")
    p.add_argument("--fast-reverse", action="store_true",
                   help="also learn each window played backwards (ours; local and global rules)")
    p.add_argument("--fast-t-min", type=float, default=0.0,
                   help="the fast loss draws noise levels in [t_min T, T] only (ours; lab/rules.py FastNoise)")


def kind_flags(p, what):
    p.add_argument("--trajectory", default="out-and-back", choices=data.KINDS, help=f"episode kind of {what}")
    p.add_argument("--out-chunks", type=int, default=4, help="chunks of the outward leg of every episode")


def main(command, argv, p):
    """Parse, check the output folder, build the model, command(args, model, cfg, diffusion); errors as one line."""
    args = p.parse_args(argv)
    try:
        if getattr(args, "fast_reverse", False) and getattr(args, "fast_rule", "local") == "original":
            raise ValueError("--fast-reverse plays a window without context backwards: use --fast-rule local or global")
        cli.check_writable(args.out_dir)
        model, cfg, diffusion = cli.build(args)
        if getattr(args, "fast_t_min", 0.0):  # generation never draws noise levels: only fast learning changes
            if not 0 < args.fast_t_min < 1:
                raise ValueError(f"--fast-t-min {args.fast_t_min}: a fraction of the noise levels in (0, 1)")
            diffusion = rules.FastNoise(cfg, next(model.parameters()).device, args.fast_t_min)
        return command(args, model, cfg, diffusion)
    except ValueError as e:
        sys.exit(f"error: {e}")


def timed(model, diffusion, cfg, first, actions, fast, seed, memory=None, window=sfvgen.local_window):
    """sfvgen.generate_long, and its seconds per generated frame."""
    t0 = time.time()
    res = sfvgen.generate_long(model, diffusion, cfg, first, actions, fast_learning=fast, seed=seed, memory=memory, window=window)
    res["seconds_per_frame"] = (time.time() - t0) / (len(actions) * cfg.chunk)
    return res


def start_frame(memory, autoencoder=None):
    """The start frame of a sfvgen.Memory.start as generate_long would return it: (1, H, W, 3) uint8."""
    return sfvgen.to_frames(memory.history[0], autoencoder)[0]


def keep_rows(arms, flag, always=None):
    """--arms: only the rows it names (comma-separated), plus `always`; each row is deterministic, so rows
    of separate runs line up. arms: tuples whose first item is the row's name."""
    if not flag:
        return arms
    keep = set(flag.split(",")) | {always}
    unknown = keep - {a[0] for a in arms} - {None}
    if unknown:
        raise ValueError(f"--arms: unknown rows {sorted(unknown)}; rows are {[a[0] for a in arms]}")
    return [a for a in arms if a[0] in keep]


def peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def write_table(path, rows):
    """A markdown table (a list of its lines) to path, all or nothing (video.atomic_write)."""
    with video.atomic_write(path) as tmp, open(tmp, "w") as f:
        f.write("\n".join(rows) + "\n")


def pyplot(what):
    """matplotlib.pyplot on the Agg backend, or None after one line saying that `what` is not drawn."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: no {what} (pip install \".[plots]\")")
        return None
    return plt


def save_figure(plt, fig, path):
    """fig as a PNG at path, all or nothing (video.atomic_write), then closed."""
    fig.tight_layout()
    with video.atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
