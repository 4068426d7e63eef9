"""The student copy of the project, generated from the reference: each selected solution region of sfvgen.py
becomes `raise NotImplementedError("hwN: <hint>")`, the solution is never written twice.

    python -m exercises.make_handout OUT_DIR [--hw N ...]     # default: all seven assignments stubbed

A region is the body of one function, between the comment lines

    # BEGIN SOLUTION hwN hint: <one line the student sees>
    ...
    # END SOLUTION

(the signature and docstring stay outside). Regions of assignments not selected keep their code; all marker lines
are removed. The copy holds the code (sfvgen, train, generate, data, video, metrics, cli), the handouts and their
pictures, the visible checks (`python -m exercises.check N`), the "you should see" runs (exercises/runs/) and the
checkpoint they use. Never the teacher's material: the hidden grading checks (exercises/grading/), the grader, the
mutants, the model answers (exercises/INSTRUCTOR.md), the lab, the tests or this script (TEACHER lists them, and
tests/test_exercises.py greps a copy for them). Regenerating gives byte-identical files.
"""
import argparse
import importlib.util
import os
import re
import sys

import video

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _checkpoint():
    """exercises/runs/common.py's CHECKPOINT: the checkpoint of the "you should see" runs, one constant."""
    spec = importlib.util.spec_from_file_location("sfvgen_runs_common", os.path.join(HERE, "runs", "common.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DEFAULT_CHECKPOINT


CHECKPOINT = _checkpoint()

ALL = tuple(range(1, 8))
CODE = ["sfvgen.py", "train.py", "generate.py", "data.py", "video.py", "metrics.py", "cli.py", "requirements.txt"]
HANDOUTS = ["exercises/README.md"] + [f"exercises/hw{n}.md" for n in ALL] + ["exercises/stretch.md"]
STUDENT_TOOLS = (["exercises/__init__.py", "exercises/runner.py", "exercises/check.py", "exercises/stretch_check.py",
                  "exercises/visible/__init__.py", "exercises/visible/common.py", "exercises/runs/__init__.py",
                  "exercises/runs/common.py", "exercises/runs/expected.json"]
                 + [f"exercises/visible/hw{n}.py" for n in ALL] + [f"exercises/runs/hw{n}.py" for n in ALL])
BINARY = [CHECKPOINT] + [f"exercises/img/hw{n}.png" for n in ALL]
# the teacher's, never copied (a test greps every copy for them)
TEACHER = ["exercises/grading/", "exercises/grade.py", "exercises/mutants.py", "exercises/make_handout.py",
           "exercises/make_notebooks.py", "exercises/INSTRUCTOR.md", "lab/", "tests/"]
BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION hw(?P<hw>\d+)(?: hint: (?P<hint>.*))?$")
END = re.compile(r"^[ \t]*# END SOLUTION$")


def regions(text):
    """[(first line index, last line index, hw, indent, hint)] of the marked regions; refuses nesting or a
    missing END."""
    lines, found, open_ = text.split("\n"), [], None
    for i, line in enumerate(lines):
        m = BEGIN.match(line)
        if m:
            if open_ is not None:
                raise ValueError(f"line {i + 1}: BEGIN SOLUTION inside the region opened on line {open_[0] + 1}")
            open_ = (i, int(m["hw"]), m["indent"], (m["hint"] or "").strip())
        elif END.match(line):
            if open_ is None:
                raise ValueError(f"line {i + 1}: END SOLUTION without a BEGIN")
            found.append((open_[0], i, *open_[1:]))
            open_ = None
    if open_ is not None:
        raise ValueError(f"line {open_[0] + 1}: BEGIN SOLUTION hw{open_[1]} is never closed")
    return found


def stub(text, hws):
    """text with the regions of assignments `hws` replaced by a raise and every marker line removed."""
    lines = text.split("\n")
    out, pos = [], 0
    for first, last, hw, indent, hint in regions(text):
        out += lines[pos:first]
        if hw in hws:
            if '"' in hint or "\\" in hint:
                raise ValueError(f"line {first + 1}: a hint may not hold a double quote or a backslash")
            out.append(f'{indent}raise NotImplementedError("hw{hw}: {hint or "implement this"}")')
        else:
            out += lines[first + 1:last]
        pos = last + 1
    return "\n".join(out + lines[pos:])


def write(path, content):
    """Write bytes only when they differ (so regenerating leaves file times alone), all or nothing."""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            if f.read() == content:
                return
    with video.atomic_write(path) as tmp, open(tmp, "wb") as f:
        f.write(content)


def make_handout(out_dir, hws=ALL, root=ROOT):
    """Writes the student copy into out_dir (created; files of earlier runs are overwritten). Returns the paths."""
    if os.path.abspath(out_dir) == os.path.abspath(root):
        raise ValueError("the handout folder must not be the project itself")
    written = []
    for rel in CODE + HANDOUTS + STUDENT_TOOLS + BINARY:
        with open(os.path.join(root, rel), "rb") as f:
            content = f.read()
        if rel.endswith(".py"):
            content = stub(content.decode("utf-8"), set(hws)).encode("utf-8")
        write(os.path.join(out_dir, rel), content)
        written.append(rel)
    return written


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out_dir", help="folder of the student copy (created)")
    p.add_argument("--hw", type=int, nargs="+", choices=ALL, default=list(ALL), help="assignments to stub (default: all)")
    args = p.parse_args(argv)
    try:
        files = make_handout(args.out_dir, sorted(set(args.hw)))
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {len(files)} files to {args.out_dir} (stubbed: {', '.join(f'hw{n}' for n in sorted(set(args.hw)))}); "
          f"students check with: python -m exercises.check N; grade with: python -m exercises.grade N --root {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
