"""What the student's `python -m exercises.check N` and the teacher's `python -m exercises.grade N` share: load a
project folder's sfvgen.py, run a list of checks against it, print one line per check, and do it in a fresh
interpreter so nothing one assignment's code does (globals, monkeypatching, a hang) outlives it.

A check is a plain function `check_*(sf)`, where `sf` is the graded project's sfvgen module: it passes when it
returns; an exception (an assert, or a stub's NotImplementedError) fails it, and the exception's first line is the
reason shown. Each check is worth one point. Checks come from the grader's own folder (this file's), loaded as a
package of its own name, so the checks inside the folder being graded are never the ones that run.

    python exercises/runner.py N --root DIR --here [--hidden] [--json OUT]   # the fresh interpreter's side
"""
import argparse
import importlib
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TITLES = {1: "the forward process and the prediction targets", 2: "the masked conditional loss",
          3: "the sampler that puts the context back", 4: "LoRA", 5: "Algorithm 1a: fast learning in generation",
          6: "Algorithm 1b: the slow-fast loop", 7: "the video UNet and classifier-free guidance"}
PACKAGE = "sfvgen_grader"  # this folder, imported by path under a name no student folder can shadow
_loaded = itertools.count()


def package():
    """This folder (exercises/) as the package `sfvgen_grader`."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, os.path.join(HERE, "__init__.py"),
                                                      submodule_search_locations=[HERE])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


def has_hidden():
    """True in the teacher's folder (exercises/grading/ is there); a student's copy has only the visible checks."""
    return os.path.isfile(os.path.join(HERE, "grading", f"hw{min(TITLES)}.py"))


def load_checks(n, hidden=False):
    """[(check function, 'visible' or 'hidden')] of assignment n: the visible checks first (quick sanity checks, in
    the student's copy too), then, with hidden=True, the grading checks (the teacher's folder only)."""
    package()
    checks = [(c, "visible") for c in importlib.import_module(f"{PACKAGE}.visible.hw{n}").CHECKS]
    if hidden:
        if not has_hidden():
            raise FileNotFoundError(f"{HERE}: no grading checks here (a student copy holds the visible ones only)")
        checks += [(c, "hidden") for c in importlib.import_module(f"{PACKAGE}.grading.hw{n}").CHECKS]
    return checks


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
    return f"{type(e).__name__}: {msg}"[:240]


def run(n, root=".", hidden=False, out=print, first_failure=False, sf=None):
    """Assignment n's checks against the project at root (or the module `sf`), in this interpreter.
    Returns (score, total, rows); rows: (name, visibility, passed, seconds, reason). first_failure: stop at the
    first failing check (the mutation test: one failure is enough to catch a mutant)."""
    import torch
    torch.set_num_threads(1)
    checks = load_checks(n, hidden)
    out(f"hw{n} ({TITLES[n]}) against {os.path.abspath(root)}")
    rows = []
    try:
        sf = load_project(root) if sf is None else sf
    except Exception as e:  # a syntax error in the student's file: every check fails, with the reason
        rows = [(c.__name__[6:], vis, False, 0.0, reason(e)) for c, vis in checks]
    else:
        for check, vis in checks:
            torch.manual_seed(0)
            t0 = time.time()
            try:
                check(sf)
                rows.append((check.__name__[6:], vis, True, time.time() - t0, ""))
            except Exception as e:
                rows.append((check.__name__[6:], vis, False, time.time() - t0, reason(e)))
                if first_failure:
                    break
    for name, vis, ok, secs, why in rows:
        out(f"  {int(ok)}/1  {name}  [{vis}, {secs:.2f} s]" + ("" if ok else f"\n        {why}"))
    score = sum(r[2] for r in rows)
    out(f"hw{n}: {score}/{len(rows)}")
    return score, len(rows), rows


def run_fresh(n, root, hidden=False, timeout=600, quiet=False):
    """run() in a fresh interpreter with root first on sys.path, one CPU thread. Returns (score, total, rows)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    fd, result = tempfile.mkstemp(suffix=f"-hw{n}.json")
    os.close(fd)
    cmd = [sys.executable, os.path.join(HERE, "runner.py"), str(n), "--root", os.path.abspath(root), "--here",
           "--json", result] + (["--hidden"] if hidden else [])
    try:
        done = subprocess.run(cmd, env=env, timeout=timeout or None, capture_output=quiet, text=True)
        with open(result) as f:
            rows = [tuple(r) for r in json.load(f)["rows"]]
    except subprocess.TimeoutExpired:
        rows = [(c.__name__[6:], vis, False, 0.0, f"stopped after {timeout:.0f} s") for c, vis in load_checks(n, hidden)]
        print(f"hw{n}: 0/{len(rows)} (stopped after {timeout:.0f} s)")
    except (OSError, ValueError, KeyError):  # the interpreter died before writing its result (e.g. sys.exit in the code)
        why = (done.stderr or "").strip().splitlines()[-1:] if quiet else []
        rows = [(c.__name__[6:], vis, False, 0.0, f"the grading process ended early {why}")
                for c, vis in load_checks(n, hidden)]
    finally:
        if os.path.exists(result):
            os.remove(result)
    return sum(r[2] for r in rows), len(rows), rows


def main(argv=None):
    p = argparse.ArgumentParser(description="Run an assignment's checks in this interpreter (see check.py, grade.py).")
    p.add_argument("hw", type=int, choices=sorted(TITLES))
    p.add_argument("--root", default=".")
    p.add_argument("--hidden", action="store_true", help="also the grading checks (the teacher's folder only)")
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("--here", action="store_true", help="required: run in this interpreter")
    args = p.parse_args(argv)
    # this script runs by path, so sys.path[0] is this folder: the graded folder goes first instead
    sys.path[:] = [os.path.abspath(args.root)] + [q for q in sys.path if os.path.abspath(q or ".") != HERE]
    score, total, rows = run(args.hw, args.root, args.hidden)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(hw=args.hw, score=score, total=total, rows=rows), f)
    return 0 if score == total else 1


if __name__ == "__main__":
    sys.exit(main())
