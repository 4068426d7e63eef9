"""Maintainers: measure the "you should see" numbers of every run at seeds 0..4 on the default checkpoint, write their
ranges to exercises/runs/expected.json and the seed-0 pictures to exercises/img/hwN.png (the handouts show them).

    python -m exercises.runs.measure [--hw 5 6] [--seeds 5]      # about 7 CPU-minutes for all seven, one thread

Run it again when the default checkpoint (common.DEFAULT_CHECKPOINT) changes, then update the ranges the handouts
quote (tests/test_exercises.py says which are out of step).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import DEFAULT_CHECKPOINT, EXPECTED, ROOT  # noqa: E402


def update_handouts():
    """Rewrites every quoted range **name = low .. high unit** in exercises/hwN.md from expected.json."""
    with open(EXPECTED) as f:
        table = json.load(f)
    for key, numbers in sorted(table.items()):
        if not key.startswith("hw"):
            continue
        path = os.path.join(ROOT, "exercises", f"{key}.md")
        with open(path) as f:
            text = f.read()
        for name, r in numbers.items():
            if name.startswith("_"):
                continue
            d = r["decimals"]
            quote = f"**{name} = {r['low']:.{d}f} .. {r['high']:.{d}f}{r['unit']}**"
            text, n = re.subn(r"\*\*" + re.escape(name) + r" = [^*]*\*\*", lambda m: quote, text)
            print(f"{key}.md: {quote}" + ("" if n else "  (NOT FOUND: add it to the handout)"))
        with open(path, "w") as f:
            f.write(text)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hw", type=int, nargs="+", default=list(range(1, 8)))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--update-handouts", action="store_true",
                   help="only rewrite the ranges the handouts quote (**name = low .. high unit**) from expected.json")
    args = p.parse_args(argv)
    if args.update_handouts:
        return update_handouts()
    table = {}
    if os.path.isfile(EXPECTED):
        with open(EXPECTED) as f:
            table = json.load(f)
    env = dict(os.environ, OMP_NUM_THREADS="1", SFVGEN_CKPT=DEFAULT_CHECKPOINT)
    for n in args.hw:
        values, t0 = {}, time.time()
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(ROOT, "exercises", "img") if seed == 0 else tmp
                js = os.path.join(tmp, "n.json")
                subprocess.run([sys.executable, os.path.join(HERE, f"hw{n}.py"), "--seed", str(seed), "--out", out,
                                "--json", js], cwd=ROOT, env=env, check=True, capture_output=True)
                with open(js) as f:
                    for name, (value, unit, dec) in json.load(f)["numbers"].items():
                        values.setdefault(name, []).append((value, unit, dec))
        table[f"hw{n}"] = {name: dict(low=round(min(v for v, _, _ in vs), vs[0][2]), high=round(max(v for v, _, _ in vs), vs[0][2]),
                                      unit=vs[0][1], decimals=vs[0][2], values=[v for v, _, _ in vs])
                           for name, vs in values.items()}
        table["checkpoint"] = DEFAULT_CHECKPOINT
        secs = (time.time() - t0) / args.seeds
        table[f"hw{n}"]["_seconds_per_run"] = round(secs, 1)
        print(f"hw{n}: " + ", ".join(f"{k} {r['low']}..{r['high']}{r['unit']}" for k, r in table[f"hw{n}"].items()
                                     if not k.startswith("_")) + f"  ({secs:.0f} s a run)")
        with open(EXPECTED, "w") as f:
            json.dump(table, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
