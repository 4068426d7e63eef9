"""The autograder: runs assignment N's checks (exercises/checks/hwN.py) against a project folder.

    python -m exercises.grade N [--root DIR]

DIR (default: the current folder) is the project to grade: the reference, or a student's copy made by
`python -m exercises.make_handout`. The checks run in a fresh interpreter with DIR first on sys.path, on one CPU
thread; the checks themselves always come from this file's folder, never from DIR. Prints one line per check
(1/1 or 0/1, with the reason) and a total such as `hw4: 6/6`; the exit code is 0 only for full marks.
"""
import argparse
import importlib
import importlib.util
import itertools
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TITLES = {1: "the forward process and the prediction targets", 2: "the masked conditional loss",
          3: "the sampler that puts the context back", 4: "LoRA", 5: "Algorithm 1a: fast learning in generation",
          6: "Algorithm 1b: the slow-fast loop"}
_loaded = itertools.count()


def load_checks(n):
    """exercises/checks/hwN.py of this grader, as the module `sfvgen_grader_checks.hwN` (never DIR's copy)."""
    pkg = "sfvgen_grader_checks"
    if pkg not in sys.modules:
        spec = importlib.util.spec_from_file_location(pkg, os.path.join(HERE, "checks", "__init__.py"),
                                                      submodule_search_locations=[os.path.join(HERE, "checks")])
        module = importlib.util.module_from_spec(spec)
        sys.modules[pkg] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{pkg}.hw{n}")


def load_project(root):
    """root/sfvgen.py as a module of its own name (its `import data` finds root/data.py first)."""
    path = os.path.join(os.path.abspath(root), "sfvgen.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{root}: no sfvgen.py here")
    name = f"sfvgen_graded_{next(_loaded)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    sys.path.insert(0, os.path.abspath(root))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(os.path.abspath(root))
    return module


def reason(e):
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}"[:160]


def run(n, root=".", out=print):
    """Assignment n's checks against the project at root, in this interpreter. Returns (score, total, rows);
    rows: (name, passed, seconds, reason)."""
    import torch
    torch.set_num_threads(1)
    checks = load_checks(n).CHECKS
    out(f"hw{n} ({TITLES[n]}) against {os.path.abspath(root)}")
    try:
        sf = load_project(root)
    except Exception as e:  # a syntax error in the student's file: every check fails, with the reason
        rows = [(c.__name__[6:], False, 0.0, reason(e)) for c in checks]
    else:
        rows = []
        for check in checks:
            torch.manual_seed(0)
            t0 = time.time()
            try:
                check(sf)
                rows.append((check.__name__[6:], True, time.time() - t0, ""))
            except Exception as e:
                rows.append((check.__name__[6:], False, time.time() - t0, reason(e)))
    for name, ok, secs, why in rows:
        out(f"  {int(ok)}/1  {name}  ({secs:.2f} s)" + ("" if ok else f"\n        {why}"))
    score = sum(ok for _, ok, _, _ in rows)
    out(f"hw{n}: {score}/{len(rows)}")
    return score, len(rows), rows


def main(argv=None):
    p = argparse.ArgumentParser(description="Grade one assignment against a project folder (the reference or a student's copy).")
    p.add_argument("hw", type=int, choices=sorted(TITLES), help="the assignment number")
    p.add_argument("--root", default=".", help="the project folder to grade (default: the current folder)")
    p.add_argument("--timeout", type=float, default=600, help="seconds before the grading run is stopped (0/total)")
    p.add_argument("--here", action="store_true", help=argparse.SUPPRESS)  # the fresh interpreter's side
    args = p.parse_args(argv)
    if not os.path.isdir(args.root):
        p.error(f"--root {args.root!r}: no such folder")
    if args.here:
        sys.path[:] = [os.path.abspath(args.root)] + [p for p in sys.path if os.path.abspath(p or ".") != HERE]
        score, total, _ = run(args.hw, args.root)
        return 0 if score == total else 1
    # a fresh interpreter: nothing the student's code does (globals, monkeypatching) outlives this assignment.
    # The script runs by path, so its sys.path[0] is this folder, which holds no sfvgen.py
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, os.path.join(HERE, "grade.py"), str(args.hw), "--root", os.path.abspath(args.root), "--here"]
    try:
        return subprocess.run(cmd, env=env, timeout=args.timeout or None).returncode
    except subprocess.TimeoutExpired:
        print(f"hw{args.hw}: 0/{len(load_checks(args.hw).CHECKS)} (stopped after {args.timeout:.0f} s)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
