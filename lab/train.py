"""Slow learning (train.py) with the lab's seams: the memory matrix's contexts, or another fast rule in the loop.

    python -m lab.train --memory-mix 0.7 --init checkpoints/tiny.pt --out runs/tiny-mem [any train.py flag]
    python -m lab.train --loop --fast-reverse --init checkpoints/tiny.pt --lr 1e-4 --warmup 0 --out runs/tiny-loop-rev

--memory-mix p (ours, for the memory matrix, lab/matrix.py): a fraction p of the batches have the contexts of the
matrix's arms (long windows, the episode so far, retrieved frames; matrix.sample_memory_batch) and train a
MemoryUNet, whose retrieved frames take the "from memory" frame position; the rest are train.py's batches. The
checkpoint loads into a plain VideoUNet as well (the same weights).
--fast-rule / --fast-reverse with --loop: the inner loop of Algorithm 1b (the paper's section 3.3) learns with that
fast rule (lab/rules.py) instead of the paper's local one.
Everything else is train.py: the same flags, checkpoints, --resume and logs.
"""
import os
import sys

import cli
import sfvgen
import train

from . import rules
from .matrix import MemoryUNet, sample_memory_batch


def memory_batches(cfg, network, mix):
    """train.main's batches: with probability `mix` a batch of the matrix's contexts (setting network().n_mem to
    its retrieved frames), else train.py's batch (n_mem 0). Validation batches (n_ctx given) are train.py's."""
    plain = train.sources(cfg)[0]

    def batches(rng, seeds, n_ctx=None):
        if n_ctx is None and rng.random() < mix:  # contexts of the memory matrix's arms
            ctx, tok, tgt, network().n_mem = sample_memory_batch(rng, seeds, cfg.batch, cfg.world())
            return ctx, tok, tgt
        network().n_mem = 0
        return plain(rng, seeds, n_ctx)
    return batches


def extra_flags(p):
    p.add_argument("--memory-mix", type=float, default=0.0,
                   help="fraction of batches with the memory matrix's contexts (long windows, the episode so far, retrieved frames)")
    p.add_argument("--fast-rule", default="local", choices=("local", "original"),
                   help="with --loop: the inner loop's fast rule, local (the paper) or original (text Temp-LoRA)")
    p.add_argument("--fast-reverse", action="store_true", help="with --loop: also learn each window played backwards (ours)")


def main(argv=None):
    parser = cli.config_parser(__doc__.split("\n")[0], extra_flags)
    parser.prog = "python -m lab.train"
    args = parser.parse_args(argv)
    try:
        cfg = cli.config_from_args(args)
        if cfg.resume:  # resume keeps the stored config; only the flags given change it
            stored = sfvgen.load_checkpoint(os.path.join(cfg.out, "ckpt.pt"))["config"]
            cfg = cli.config_from_args(args, base=sfvgen.Config(**stored))
        if not 0 <= args.memory_mix <= 1:
            raise ValueError(f"--memory-mix {args.memory_mix}: a fraction in [0, 1]")
        if args.memory_mix and cfg.loop:
            raise ValueError("--memory-mix mixes slow learning's batches; the loop (--loop) draws whole episodes")
        if (args.fast_rule != "local" or args.fast_reverse) and not cfg.loop:
            raise ValueError("--fast-rule and --fast-reverse change the loop's fast learning: give --loop")
        if cfg.data and args.memory_mix:
            raise ValueError("--memory-mix draws its clips from the built-in world; leave out --data")
        window = rules.make_window(args.fast_rule, args.fast_reverse)
    except ValueError as e:
        parser.error(str(e))
    built, network, batches = [], sfvgen.VideoUNet, None
    if args.memory_mix:  # train.main builds the network after seeding; the batches set its n_mem
        network = lambda c: built.append(MemoryUNet(c)) or built[0]  # noqa: E731
        batches = memory_batches(cfg, lambda: built[0], args.memory_mix)
    try:
        return train.main(cfg, batches=batches, network=network, window=window)
    except ValueError as e:  # a bad checkpoint or --init file: one line that names it
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
