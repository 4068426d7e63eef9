"""The student copy of the project, generated from the reference: each selected solution region of sfvgen.py
becomes `raise NotImplementedError("hwN: <hint>")`, the solution is never written twice.

    python -m exercises.make_handout OUT_DIR [--hw N ...]     # default: all six assignments stubbed

A region is the body of one function, between the comment lines

    # BEGIN SOLUTION hwN hint: <one line the student sees>
    ...
    # END SOLUTION

(the signature and docstring stay outside). Regions of assignments not selected keep their code; all marker lines
are removed. The copy holds the core files, data.py, metrics.py, cli.py, the handouts, the graders and
checkpoints/tiny.pt (not the lab, not the tests, not this script). Regenerating gives byte-identical files.
"""
import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CODE = ["sfvgen.py", "train.py", "generate.py", "data.py", "metrics.py", "cli.py", "requirements.txt"]
HANDOUTS = [f"exercises/hw{n}.md" for n in range(1, 7)] + ["exercises/stretch.md"]
GRADERS = ["exercises/__init__.py", "exercises/grade.py", "exercises/stretch_check.py", "exercises/checks/__init__.py",
           "exercises/checks/common.py"] + [f"exercises/checks/hw{n}.py" for n in range(1, 7)]
BINARY = ["checkpoints/tiny.pt"]
ALL = tuple(range(1, 7))
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
    """Write bytes only when they differ (so regenerating leaves file times alone), through a temp name."""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            if f.read() == content:
                return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(content)
    os.replace(path + ".tmp", path)


def make_handout(out_dir, hws=ALL, root=ROOT):
    """Writes the student copy into out_dir (created; files of earlier runs are overwritten). Returns the paths."""
    if os.path.abspath(out_dir) == os.path.abspath(root):
        raise ValueError("the handout folder must not be the project itself")
    written = []
    for rel in CODE + HANDOUTS + GRADERS + BINARY:
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
          f"students grade with: python -m exercises.grade N")
    return 0


if __name__ == "__main__":
    sys.exit(main())
