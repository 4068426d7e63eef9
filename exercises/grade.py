"""The teacher's grader (never in a student's copy): an assignment's visible checks and its hidden grading checks.

    python -m exercises.grade N                          # the project in this folder (the reference: full marks)
    python -m exercises.grade N --root path/to/student   # one student's copy
    python -m exercises.grade N --root DIR --json results.json   # Gradescope's results.json (hidden checks: after_due_date)
    python -m exercises.grade --batch submissions/ [--hw 5 6] [--csv grades.csv]   # a folder of submissions
    python -m exercises.grade --list [N]                 # every check with the property it states

--batch: every sub-folder of DIR that holds a sfvgen.py is one submission (its name is the student's); every chosen
assignment (default: all seven) is graded in its own fresh interpreter, and the CSV gets one row per submission,
assignment and check (student, hw, check, visibility, points, max_points, reason) plus a total row per submission
and assignment. One line per check is printed (1/1 or 0/1 with the reason, which names the idea that is off); the exit
code is 0 only for full marks. The checks always come from this folder's exercises/visible and exercises/grading, never
from the graded folder, and run on one CPU thread with the graded folder first on sys.path.
"""
import argparse
import csv
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runner  # noqa: E402

TITLES = runner.TITLES


def run(n, root=".", out=print):
    """Assignment n's visible and hidden checks against the project at root, in this interpreter.
    Returns (score, total, rows); rows: (name, visibility, passed, seconds, reason)."""
    return runner.run(n, root, hidden=True, out=out)


def gradescope(rows_by_hw):
    """Gradescope's results.json: one test per check; hidden checks become visible after the due date."""
    tests = []
    for n, rows in rows_by_hw.items():
        for name, vis, ok, secs, why in rows:
            tests.append(dict(name=f"hw{n}: {name.replace('_', ' ')}", score=float(ok), max_score=1.0,
                              output=why or "passed", visibility="visible" if vis == "visible" else "after_due_date"))
    return dict(score=sum(t["score"] for t in tests), tests=tests)


def submissions(folder):
    """(name, path) of every sub-folder of `folder` holding a sfvgen.py, sorted by name."""
    out = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(os.path.join(path, "sfvgen.py")):
            out.append((name, path))
    return out


def batch(folder, hws, csv_path, timeout=600, out=print):
    """Grades every submission in `folder` on the assignments `hws`; writes the CSV. Returns {student: {hw: (score,
    total)}}."""
    found = submissions(folder)
    if not found:
        raise ValueError(f"{folder}: no sub-folder with a sfvgen.py (one folder per submission)")
    scores, lines = {}, []
    for student, path in found:
        scores[student] = {}
        for n in hws:
            t0 = time.time()
            score, total, rows = runner.run_fresh(n, path, hidden=True, timeout=timeout, quiet=True)
            scores[student][n] = (score, total)
            out(f"{student}  hw{n}: {score}/{total}  ({time.time() - t0:.0f} s)")
            for name, vis, ok, secs, why in rows:
                lines.append([student, n, name, vis, int(ok), 1, why])
            lines.append([student, n, "TOTAL", "", score, total, ""])
    os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "hw", "check", "visibility", "points", "max_points", "reason"])
        w.writerows(lines)
    out(f"wrote {csv_path}: {len(found)} submissions x {len(hws)} assignments")
    return scores


def main(argv=None):
    p = argparse.ArgumentParser(description="Grade assignments with the visible and the hidden checks (the teacher's).")
    p.add_argument("hw", type=int, nargs="?", choices=sorted(TITLES), help="the assignment number (not with --batch)")
    p.add_argument("--root", default=".", help="the project folder to grade (default: the current folder)")
    p.add_argument("--batch", default=None, help="a folder of submissions, one sub-folder each")
    p.add_argument("--hw", dest="hws", type=int, nargs="+", choices=sorted(TITLES), default=None,
                   help="with --batch: the assignments to grade (default: all)")
    p.add_argument("--csv", default=None, help="with --batch: the CSV to write (default: DIR/grades.csv)")
    p.add_argument("--json", default=None, help="also write Gradescope's results.json here")
    p.add_argument("--timeout", type=float, default=600, help="seconds before one grading run is stopped (0 points)")
    p.add_argument("--list", action="store_true", help="list every check (visible and hidden) with its first doc line")
    args = p.parse_args(argv)
    if args.list:
        for n in [args.hw] if args.hw else sorted(TITLES):
            print(f"hw{n}: {TITLES[n]}")
            for check, vis in runner.load_checks(n, hidden=runner.has_hidden()):
                print(f"  [{vis}] {check.__name__[6:]}: {check.__doc__.strip().splitlines()[0]}")
        return 0
    if not runner.has_hidden():
        p.error("this folder has no exercises/grading/ (a student copy): use python -m exercises.check N")
    if args.batch:
        if not os.path.isdir(args.batch):
            p.error(f"--batch {args.batch!r}: no such folder")
        hws = args.hws or ([args.hw] if args.hw else sorted(TITLES))
        try:
            scores = batch(args.batch, hws, args.csv or os.path.join(args.batch, "grades.csv"), args.timeout)
        except ValueError as e:
            p.error(str(e))
        return 0 if all(s == t for per in scores.values() for s, t in per.values()) else 1
    if args.hw is None:
        p.error("give an assignment number, or --batch DIR")
    if not os.path.isdir(args.root):
        p.error(f"--root {args.root!r}: no such folder")
    score, total, rows = runner.run_fresh(args.hw, args.root, hidden=True, timeout=args.timeout)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(gradescope({args.hw: rows}), f, indent=1)
    return 0 if score == total else 1


if __name__ == "__main__":
    sys.exit(main())
