"""Your quick feedback while you work: the visible checks of assignment N against the project in this folder.

    python -m exercises.check N            # e.g. python -m exercises.check 5
    python -m exercises.check N --root DIR # another folder

They are sanity checks (shapes, dtypes, determinism, invariants such as "a fresh LoRA equals its base layer"): passing
them says your code runs and keeps its promises, not that it is right. Your grade comes from these and from hidden
checks your teacher runs after the deadline (as on Gradescope). Seconds on a CPU; the exit code is 0 when all pass.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runner  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description="Run the visible checks of one assignment (exercises/hwN.md).")
    p.add_argument("hw", type=int, choices=sorted(runner.TITLES), help="the assignment number")
    p.add_argument("--root", default=".", help="the project folder (default: the current folder)")
    p.add_argument("--timeout", type=float, default=600, help="seconds before the run is stopped")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.root, "sfvgen.py")):
        p.error(f"--root {args.root!r}: no sfvgen.py there")
    score, total, _ = runner.run_fresh(args.hw, args.root, hidden=False, timeout=args.timeout)
    print("(visible checks only: the grade adds hidden ones)" if score == total else
          f"see exercises/hw{args.hw}.md; each message names the idea that is off")
    return 0 if score == total else 1


if __name__ == "__main__":
    sys.exit(main())
