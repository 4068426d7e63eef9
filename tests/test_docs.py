"""The commands in README.md and docs/ name only flags their entry point has (the docs do not rot)."""
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY = re.compile(r"(python (?:-m (?:lab\.\w+|companion\.hyperzzw|exercises\.\w+)|(?:train|generate|data|video|play)\.py))\b")


def doc_commands():
    """(entry point, flags, where) of every command line in the docs; continuation lines ('\\') are joined."""
    out = []
    for path in [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))):
        text = re.sub(r"\\\n\s*", " ", open(path).read())
        for lineno, line in enumerate(text.splitlines(), 1):
            for m in ENTRY.finditer(line):
                rest = re.split(r"`|\||#|;|&&|\)", line[m.end():])[0]  # up to the end of the command
                try:
                    words = shlex.split(rest)
                except ValueError:  # an unbalanced quote in prose
                    words = rest.split()
                flags = {w.split("=")[0] for w in words if w.startswith("--") and len(w) > 2}
                out.append((m.group(1), flags, f"{os.path.basename(path)}:{lineno}"))
    return out


HELP_ALL = r"""
import contextlib, io, json, runpy, sys
out = {}
for entry in sys.argv[1:]:
    words = entry.split()[1:]
    sys.argv, buf = [words[-1], "--help"], io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            if words[0] == "-m":
                runpy.run_module(words[1], run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(words[0], run_name="__main__")
        except SystemExit:
            pass
    out[entry] = buf.getvalue()
print(json.dumps(out))
"""


def help_texts(entries):
    """Every entry point's --help, run as a script would be (__main__), in one fresh interpreter: torch is
    imported once, not once per entry point."""
    res = subprocess.run([sys.executable, "-c", HELP_ALL, *entries], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.splitlines()[-1])


def test_every_flag_in_the_docs_exists_in_its_entry_point():
    commands = doc_commands()
    assert len(commands) > 30  # the docs do show their commands
    helps, unknown = help_texts(sorted({entry for entry, _, _ in commands})), []
    for entry, flags, where in commands:
        text = helps[entry]
        assert "usage:" in text, (entry, text[-500:])
        for f in flags:
            base = f[5:] if f.startswith("--no-") else f[2:]
            if not re.search(rf"--(no-)?{re.escape(base)}\b", text):
                unknown.append(f"{where}: {entry} {f}")
    if unknown:
        pytest.fail("flags the entry point does not have:\n" + "\n".join(sorted(set(unknown))))


def test_pip_install_dot_installs_the_dependencies_and_no_modules(tmp_path):
    """pyproject.toml describes a project used from its folder: the wheel `pip install .` builds carries only
    metadata (its dependencies and extras), never modules named data, cli or video in site-packages."""
    import shutil
    import zipfile
    src = tmp_path / "src"  # a copy, so the build leaves no egg-info or build/ folder in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", *glob.glob("*.py", root_dir=ROOT)):
        shutil.copy(os.path.join(ROOT, name), src / name)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path)], cwd=src, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = glob.glob(str(tmp_path / "*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert names and all(".dist-info/" in n for n in names), names
    meta = zipfile.ZipFile(wheel).read([n for n in names if n.endswith("METADATA")][0]).decode()
    assert "Requires-Dist: torch>=2.3" in meta and "MIT" in meta
