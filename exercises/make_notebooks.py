"""The assignments and the walkthrough as Jupyter notebooks, generated (never written by hand) from their one source:

    python -m exercises.make_notebooks [OUT_DIR]          # default out/notebooks: hw1.ipynb .. hw7.ipynb, walkthrough.ipynb
    make notebooks                                        # the same

hwN.ipynb = exercises/hwN.md (its sections as markdown cells, the picture embedded) + a cell that runs the visible
checks + a cell for the written answers + the "you should see" run exercises/runs/hwN.py (a `# %%` cell file) + the
optional "if you are stuck" section last. walkthrough.ipynb = docs/walkthrough.py (`# %%` cells) as it is. Every
notebook finds the project folder from where it is opened (the folder itself or any folder below it), so it runs from
out/notebooks/, from the handout copy, on a laptop or on a CPU-only Colab (upload the copy and open the notebook in
it). Needs the teachers' extra: pip install ".[teach]" (jupytext, nbformat). Regenerating gives byte-identical files.
"""
import argparse
import base64
import os
import re
import sys

import video

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HWS = tuple(range(1, 8))

SETUP = '''# the project folder: this one or the first folder above it with sfvgen.py (on Colab: upload the handout copy
# and open this notebook inside it, or %cd into it first)
import os
import subprocess
import sys

here = os.path.abspath(os.getcwd())
while not os.path.isfile(os.path.join(here, "sfvgen.py")) and os.path.dirname(here) != here:
    here = os.path.dirname(here)
assert os.path.isfile(os.path.join(here, "sfvgen.py")), "open this notebook inside the project folder"
os.chdir(here)
sys.path.insert(0, here)
print("project folder:", here)'''

CHECK = '''# the visible checks, in a fresh interpreter (so your latest sfvgen.py is the one checked): seconds
result = subprocess.run([sys.executable, "-m", "exercises.check", "{n}"], capture_output=True, text=True)
print(result.stdout + result.stderr)'''

ANSWERS = """## Your answers

Write your answers to the questions above here (a few lines each).

"""


def sections(text):
    """A handout's markdown split at its '## ' headings: [(title, text)], the part before the first heading titled ''."""
    parts, title, buf = [], "", []
    for line in text.splitlines():
        if line.startswith("## "):
            parts.append((title, "\n".join(buf).strip()))
            title, buf = line[3:].strip(), []
        buf.append(line)
    parts.append((title, "\n".join(buf).strip()))
    return [(t, s) for t, s in parts if s]


def with_picture(nbformat, text, folder):
    """A markdown cell; a ![..](img/hwN.png) picture becomes an attachment, so the notebook carries it."""
    cell = nbformat.v4.new_markdown_cell(text)
    attachments = {}

    def embed(m):
        path = os.path.join(folder, m.group(2))
        if not os.path.isfile(path):
            return m.group(0)
        name = os.path.basename(path)
        with open(path, "rb") as f:
            attachments[name] = {"image/png": base64.b64encode(f.read()).decode("ascii")}
        return f"![{m.group(1)}](attachment:{name})"

    cell.source = re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", embed, text)
    if attachments:
        cell.attachments = attachments
    return cell


def numbered(nb):
    """Stable cell ids (nbformat's are random): regenerating gives the same bytes."""
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    return nb


def assignment(n, root=ROOT):
    import jupytext
    import nbformat
    with open(os.path.join(root, "exercises", f"hw{n}.md")) as f:
        parts = sections(f.read())
    run = jupytext.read(os.path.join(root, "exercises", "runs", f"hw{n}.py"))
    cells, stuck = [nbformat.v4.new_code_cell(SETUP)], None
    for title, text in parts:
        if title.startswith("If you are stuck"):
            stuck = text
            continue
        cells.append(with_picture(nbformat, text, os.path.join(root, "exercises")))
        if title == "The interface":
            cells.append(nbformat.v4.new_markdown_cell("Write the functions in `sfvgen.py`, then run the visible checks:"))
            cells.append(nbformat.v4.new_code_cell(CHECK.format(n=n)))
        if title.startswith("Questions"):
            numbers = re.findall(r"^(\d+)\. ", text, re.M)
            cells.append(nbformat.v4.new_markdown_cell(ANSWERS + "\n".join(f"{k}." for k in numbers)))
        if title == "You should see":
            for c in run.cells:
                cells.append(nbformat.v4.new_code_cell(c.source) if c.cell_type == "code"
                             else nbformat.v4.new_markdown_cell(c.source))
    if stuck:
        cells.append(nbformat.v4.new_markdown_cell(stuck))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata.update(kernelspec=dict(name="python3", display_name="Python 3", language="python"),
                       language_info=dict(name="python"))
    return numbered(nb)


def walkthrough(root=ROOT):
    import jupytext
    nb = jupytext.read(os.path.join(root, "docs", "walkthrough.py"))
    nb.metadata.pop("jupytext", None)
    nb.metadata.update(kernelspec=dict(name="python3", display_name="Python 3", language="python"),
                       language_info=dict(name="python"))
    return numbered(nb)


def write(nb, path):
    import nbformat
    text = nbformat.writes(nb) + "\n"
    if os.path.isfile(path):
        with open(path) as f:
            if f.read() == text:
                return path
    with video.atomic_write(path) as tmp, open(tmp, "w") as f:
        f.write(text)
    return path


def make_notebooks(out_dir, hws=HWS, walk=True, root=ROOT):
    """Writes the notebooks into out_dir; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [write(assignment(n, root), os.path.join(out_dir, f"hw{n}.ipynb")) for n in hws]
    if walk:
        paths.append(write(walkthrough(root), os.path.join(out_dir, "walkthrough.ipynb")))
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out_dir", nargs="?", default=os.path.join("out", "notebooks"), help="where to write (default out/notebooks)")
    p.add_argument("--hw", type=int, nargs="+", choices=HWS, default=list(HWS))
    p.add_argument("--no-walkthrough", action="store_true")
    args = p.parse_args(argv)
    try:
        import jupytext  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError:
        sys.exit('error: the notebooks need the teachers\' tools: pip install ".[teach]" (jupytext, nbformat)')
    paths = make_notebooks(args.out_dir, args.hw, not args.no_walkthrough)
    print(f"wrote {len(paths)} notebooks to {args.out_dir}: {', '.join(os.path.basename(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
