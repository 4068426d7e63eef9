"""The commands in README.md and docs/ name only flags their entry point has (the docs do not rot)."""
import glob
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


def help_text(entry):
    cmd = entry.split()[1:]
    argv = [sys.executable, *cmd] if cmd[0] == "-m" else [sys.executable, cmd[0]]
    res = subprocess.run(argv + ["--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    return res.stdout + res.stderr


def test_every_flag_in_the_docs_exists_in_its_entry_point():
    commands = doc_commands()
    assert len(commands) > 30  # the docs do show their commands
    helps, unknown = {}, []
    for entry, flags, where in commands:
        if entry not in helps:
            helps[entry] = help_text(entry)
        text = helps[entry]
        for f in flags:
            base = f[5:] if f.startswith("--no-") else f[2:]
            if not re.search(rf"--(no-)?{re.escape(base)}\b", text):
                unknown.append(f"{where}: {entry} {f}")
    if unknown:
        pytest.fail("flags the entry point does not have:\n" + "\n".join(sorted(set(unknown))))


def test_pip_install_dot_installs_the_dependencies_and_no_modules(tmp_path):
    """pyproject.toml describes a project used from its folder: the wheel `pip install .` builds carries only
    metadata (its dependencies and extras), never modules named data, cli or video in site-packages."""
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    import zipfile
    (wheel,) = glob.glob(str(tmp_path / "*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert names and all(".dist-info/" in n for n in names), names
    meta = zipfile.ZipFile(wheel).read([n for n in names if n.endswith("METADATA")][0]).decode()
    assert "Requires-Dist: torch>=2.3" in meta and "MIT" in meta
