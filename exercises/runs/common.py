"""What the "you should see" runs share (exercises/runs/hwN.py, one per assignment): the checkpoint they load, the
command line, pictures of frames, and the expected numbers with their measured ranges.

    python exercises/runs/hw5.py [--seed 0] [--ckpt PATH] [--out out/exercises]     # one run, as a script
    jupyter / VS Code: the runs are `# %%` cell files (make notebooks writes them as notebooks)

The checkpoint is ONE constant, DEFAULT_CHECKPOINT (or the SFVGEN_CKPT environment variable, or --ckpt). The
expected ranges live in exercises/runs/expected.json, measured by the maintainers' `python -m exercises.runs.measure`
(each run at seeds 0..4 on the default checkpoint); the handouts quote them (a test keeps the two in step).
"""
import argparse
import json
import os
import sys

DEFAULT_CHECKPOINT = "checkpoints/tiny-latent.pt"  # the checkpoint every "you should see" run loads (one place)
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EXPECTED = os.path.join(HERE, "expected.json")


def start(hw, description, argv=None):
    """The run's arguments (--seed, --ckpt, --out; a notebook kernel's own arguments are ignored), one torch thread,
    the project root on sys.path and as the current folder. Returns (args, sfvgen module)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--seed", type=int, default=0, help="the run's seed (the expected range covers seeds 0..4)")
    p.add_argument("--ckpt", default=os.environ.get("SFVGEN_CKPT", DEFAULT_CHECKPOINT), help="the checkpoint")
    p.add_argument("--out", default=os.path.join("out", "exercises"), help="folder of the picture")
    p.add_argument("--json", default=None, help=argparse.SUPPRESS)  # measure.py: write the number here
    args, _ = p.parse_known_args(argv)
    os.chdir(ROOT)
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    import importlib

    import torch
    torch.set_num_threads(1)
    import sfvgen
    sfvgen = importlib.reload(sfvgen)  # a notebook that ran before picks up the edited sfvgen.py
    args.hw = hw
    return args, sfvgen


def load(args, sfvgen):
    """(model, cfg, diffusion) of the run's checkpoint (the EMA weights), in eval mode on the CPU."""
    model, cfg, _ = sfvgen.load_model(args.ckpt)
    return model, cfg, sfvgen.Diffusion(cfg)


def strip(rows, scale=3, gap=2):
    """Rows of frames ((N, H, W, 3) uint8 each, N may differ) -> one uint8 image, the frames side by side."""
    import numpy as np
    H, W = rows[0].shape[1:3]
    n = max(len(r) for r in rows)
    img = np.full((len(rows) * (H + gap), n * (W + gap), 3), 255, np.uint8)
    for i, r in enumerate(rows):
        for j, f in enumerate(r):
            img[i * (H + gap):i * (H + gap) + H, j * (W + gap):j * (W + gap) + W] = f
    return img.repeat(scale, 0).repeat(scale, 1)


def save(args, img):
    import imageio.v3 as iio
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"hw{args.hw}.png")
    iio.imwrite(path, img)
    print(f"wrote {path} ({img.shape[1]}x{img.shape[0]})")
    return path


def expected(hw):
    """{name: {'low', 'high', 'unit', 'values'}} of assignment hw's measured numbers ({} before measuring)."""
    if not os.path.isfile(EXPECTED):
        return {}
    with open(EXPECTED) as f:
        return json.load(f).get(f"hw{hw}", {})


def report(args, numbers):
    """numbers: {name: (value, unit, decimals)}. Prints each beside its measured range (expected.json) and says whether
    it lies inside; measure.py collects the values with --json."""
    ranges = expected(args.hw)
    for name, (value, unit, dec) in numbers.items():
        r = ranges.get(name)
        where = ""
        if r is not None:
            inside = r["low"] - 0.5 * 10 ** -dec <= value <= r["high"] + 0.5 * 10 ** -dec
            where = f"   (the reference: {r['low']:.{dec}f} .. {r['high']:.{dec}f}{unit}: {'inside' if inside else 'OUTSIDE'})"
        print(f"you should see: {name} = {value:.{dec}f}{unit}{where}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(numbers={k: v for k, v in numbers.items()}, ckpt=args.ckpt), f)
