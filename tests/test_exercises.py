"""The classroom keeps its promises: the reference gets full marks on every assignment (visible + hidden checks); a
copy with assignment N stubbed fails every check of N; a student's copy holds no grading check, no model answer and
no line of a stubbed solution, runs on its own, and names only files it has; the handouts quote the measured "you
should see" ranges; the graders' commands (one folder, a batch, Gradescope's JSON) work; the notebooks build and the
walkthrough notebook executes (quick mode)."""
import csv
import filecmp
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from exercises import grade, make_handout, runner, stretch_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HWS = make_handout.ALL
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def handouts(tmp_path_factory):
    """One student copy per assignment, with only that assignment stubbed."""
    base = tmp_path_factory.mktemp("handouts")
    for n in HWS:
        make_handout.make_handout(str(base / f"hw{n}"), hws=[n])
    return {n: str(base / f"hw{n}") for n in HWS}


@pytest.fixture(scope="module")
def full_copy(tmp_path_factory):
    """The student copy with every assignment stubbed."""
    out = tmp_path_factory.mktemp("full") / "copy"
    make_handout.make_handout(str(out))
    return str(out)


@pytest.mark.parametrize("n", HWS)
def test_the_reference_gets_full_marks(n):
    score, total, rows = grade.run(n, ROOT, out=quiet)
    assert score == total, [r for r in rows if not r[2]]
    assert {r[1] for r in rows} == {"visible", "hidden"}


@pytest.mark.parametrize("n", HWS)
def test_a_handout_with_the_assignment_stubbed_fails_every_one_of_its_checks(n, handouts):
    score, total, rows = grade.run(n, handouts[n], out=quiet)
    assert total >= 7 and score == 0, [r[0] for r in rows if r[2]]
    assert all(f"NotImplementedError: hw{n}:" in r[4] for r in rows), [r[4] for r in rows]


def test_every_assignment_has_marked_regions_and_the_stubs_keep_signatures_and_docstrings(handouts):
    with open(os.path.join(ROOT, "sfvgen.py")) as f:
        text = f.read()
    found = make_handout.regions(text)
    assert {hw for _, _, hw, _, _ in found} == set(HWS)
    assert all(hint for _, _, _, _, hint in found), "every region needs a hint"
    assert all(len(line) <= 110 for line in text.splitlines() if "SOLUTION" in line), "marker lines fit in 110 characters"
    with open(os.path.join(handouts[4], "sfvgen.py")) as f:
        stubbed = f.read()
    assert "SOLUTION" not in stubbed and stubbed.count('raise NotImplementedError("hw4: ') == 6
    assert '        """(alpha / r) B A, shaped like the base weight."""\n        raise NotImplementedError("hw4: ' in stubbed
    compile(stubbed, "sfvgen.py", "exec")
    with open(os.path.join(handouts[7], "sfvgen.py")) as f:
        assert f.read().count('raise NotImplementedError("hw7: ') == 3
    # an assignment not selected keeps its code, minus the marker lines
    with open(os.path.join(handouts[4], "data.py")) as f, open(os.path.join(ROOT, "data.py")) as g:
        assert f.read() == g.read()
    assert make_handout.stub(text, set()) == "\n".join(line for line in text.split("\n") if "SOLUTION" not in line)


def solution_lines(text):
    """Characteristic code lines of every solution region: a line of 20 characters or more (comments cut) that occurs
    nowhere outside the regions, in sfvgen.py or the other files of the copy."""
    lines = text.split("\n")
    inside, outside = set(), []
    spans = [(a, b) for a, b, _, _, _ in make_handout.regions(text)]
    for i, line in enumerate(lines):
        code = line.split("  #")[0].strip()
        if any(a < i < b for a, b in spans):
            if len(code) >= 20 and not code.startswith("#"):
                inside.add(code)
        else:
            outside.append(line)
    rest = "\n".join(outside)
    for rel in make_handout.CODE:
        if rel != "sfvgen.py":
            with open(os.path.join(ROOT, rel)) as f:
                rest += f.read()
    return {c for c in inside if c not in rest}


def test_a_handout_copy_holds_no_grading_check_no_model_answer_and_no_solution(full_copy):
    files = [p for p in glob.glob(os.path.join(full_copy, "**", "*"), recursive=True) if os.path.isfile(p)]
    rel = [os.path.relpath(p, full_copy).replace(os.sep, "/") for p in files]
    for teacher in make_handout.TEACHER:
        assert not any(r == teacher or r.startswith(teacher) for r in rel), f"{teacher} is in the student copy"
    with open(os.path.join(ROOT, "sfvgen.py")) as f:
        lines = solution_lines(f.read())
    assert len(lines) > 80, len(lines)
    hidden = set()
    for n in HWS:
        with open(os.path.join(ROOT, "exercises", "grading", f"hw{n}.py")) as f:
            hidden |= set(re.findall(r"^def (check_\w+)", f.read(), re.M))
    texts = {}
    for path, r in zip(files, rel):
        if r.endswith((".py", ".md", ".txt", ".json")):
            with open(path) as f:
                texts[r] = f.read()
    assert "sfvgen.py" in texts and "exercises/hw5.md" in texts
    for r, text in texts.items():
        assert "BEGIN SOLUTION" not in text, r
        assert not [c for c in lines if c in text], f"{r} holds lines of a solution: {[c for c in lines if c in text][:3]}"
        assert not [h for h in hidden if h in text], f"{r} names hidden checks: {[h for h in hidden if h in text][:3]}"
        assert "Model answer" not in text and "Rubric" not in text, f"{r} holds instructor material"


def test_regenerating_the_handout_gives_byte_identical_files(tmp_path):
    a = make_handout.make_handout(str(tmp_path / "a"))
    b = make_handout.make_handout(str(tmp_path / "b"))
    make_handout.make_handout(str(tmp_path / "a"))  # again over the first copy
    assert a == b and make_handout.CHECKPOINT in a and "video.py" in a
    assert not any(p.startswith(("lab/", "tests/", "exercises/grading/")) for p in a), "the teacher's stay with the teacher"
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", a, shallow=False)
    assert not mismatch and not errors


def test_a_student_copy_runs_on_its_own_and_names_only_files_it_has(tmp_path):
    """With nothing stubbed the copy checks itself (visible checks only: the grader is not there) and its run works."""
    copy = str(tmp_path / "copy")
    make_handout.make_handout(copy, hws=[])
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    ok = subprocess.run([sys.executable, "-m", "exercises.check", "4"], cwd=copy, env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "hw4: 2/2" in ok.stdout, ok.stdout + ok.stderr
    assert not os.path.exists(os.path.join(copy, "exercises", "grade.py"))
    run = subprocess.run([sys.executable, "exercises/runs/hw1.py", "--out", str(tmp_path / "pic")], cwd=copy, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "you should see: psnr_x0_at_half_T" in run.stdout, run.stdout + run.stderr
    assert os.path.isfile(tmp_path / "pic" / "hw1.png")
    for name in ["README.md"] + [f"hw{n}.md" for n in HWS]:
        with open(os.path.join(copy, "exercises", name)) as f:
            text = f.read()
        for link in re.findall(r"\]\(([^)#:]+)\)", text):  # markdown links and pictures, relative to exercises/
            assert os.path.exists(os.path.join(copy, "exercises", link)), f"{name} links {link}, not in the copy"
        for path in re.findall(r"(?<![\w/.])((?:exercises|checkpoints|docs|lab)/[\w./-]*\w)", text):
            path = path.replace("hwN", "hw1")  # a pattern such as exercises/runs/hwN.py
            assert os.path.exists(os.path.join(copy, path)), f"{name} names {path}, not in the copy"


def test_the_handouts_quote_the_measured_ranges():
    with open(os.path.join(ROOT, "exercises", "runs", "expected.json")) as f:
        expected = json.load(f)
    assert expected["checkpoint"] == make_handout.CHECKPOINT, "re-measure: python -m exercises.runs.measure"
    for n in HWS:
        with open(os.path.join(ROOT, "exercises", f"hw{n}.md")) as f:
            text = f.read()
        assert f"![hw{n}](img/hw{n}.png)" in text
        numbers = {k: v for k, v in expected[f"hw{n}"].items() if not k.startswith("_")}
        assert numbers
        for name, r in numbers.items():
            d = r["decimals"]
            quote = f"**{name} = {r['low']:.{d}f} .. {r['high']:.{d}f}{r['unit']}**"
            assert quote in text, f"hw{n}.md should quote {quote} (python -m exercises.runs.measure --update-handouts)"


def test_the_grade_command_runs_a_fresh_interpreter_and_exits_0_only_for_full_marks(handouts, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "exercises.grade", "1", "--json", str(tmp_path / "r.json")], cwd=ROOT,
                        env=ENV, capture_output=True, text=True)
    assert ok.returncode == 0 and "hw1: 8/8" in ok.stdout, ok.stdout + ok.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["score"] == 8 and {t["visibility"] for t in result["tests"]} == {"visible", "after_due_date"}
    bad = subprocess.run([sys.executable, "-m", "exercises.grade", "1", "--root", handouts[1]], cwd=ROOT, env=ENV,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "hw1: 0/8" in bad.stdout, bad.stdout + bad.stderr


def test_batch_grading_writes_one_csv_row_per_submission_and_check(handouts, tmp_path):
    subs = tmp_path / "submissions"
    make_handout.make_handout(str(subs / "ada"), hws=[])  # a complete submission
    make_handout.make_handout(str(subs / "bob"), hws=[1])  # hw1 not done
    (subs / "notes").mkdir()  # not a submission: no sfvgen.py
    out = []
    scores = grade.batch(str(subs), [1, 4], str(tmp_path / "grades.csv"), out=out.append)
    assert scores == {"ada": {1: (8, 8), 4: (9, 9)}, "bob": {1: (0, 8), 4: (9, 9)}}
    with open(tmp_path / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * (8 + 9 + 2)
    assert {r["student"] for r in rows} == {"ada", "bob"}
    bob = [r for r in rows if r["student"] == "bob" and r["hw"] == "1" and r["check"] != "TOTAL"]
    assert all(r["points"] == "0" and "NotImplementedError" in r["reason"] for r in bob)
    assert {r["visibility"] for r in bob} == {"visible", "hidden"}


def test_the_stretch_checker_recomputes_the_paired_gains(tmp_path):
    from lab.stats import bootstrap_ci
    rng = np.random.default_rng(0)
    base = rng.normal(12, 1, 12)
    worlds = {"no fast learning": base, "TEMP-LoRA": base + rng.normal(0.4, 0.2, 12),
              "control: wrong memory": base + rng.normal(0.0, 0.3, 12)}
    rows = []
    for arm, v in worlds.items():
        mean, lo, hi = bootstrap_ci(v - base)
        rows.append(dict(arm=arm, return_psnr_per_world=v.tolist(), return_gain=mean, return_gain_ci=[lo, hi]))
    (tmp_path / "eval.json").write_text(json.dumps(dict(rows=rows)))
    answer = {"eval": "eval.json", "verdict": "memory"}
    for key, (a, b) in dict(memory_gain=("TEMP-LoRA", "no fast learning"), control_gain=("control: wrong memory", "no fast learning"),
                            beyond_control=("TEMP-LoRA", "control: wrong memory")).items():
        mean, lo, hi = bootstrap_ci(worlds[a] - worlds[b])
        answer[key] = dict(mean=round(mean, 2), ci=[round(lo, 2), round(hi, 2)])
    assert answer["beyond_control"]["ci"][0] > 0
    (tmp_path / "answer.json").write_text(json.dumps(answer))
    assert all(ok for _, ok, _ in stretch_check.check(str(tmp_path / "answer.json")))
    assert stretch_check.bootstrap_ci(base) == bootstrap_ci(base)  # the checker's copy is lab/stats.py's function
    answer["control_gain"]["mean"] += 0.05  # a number copied wrong
    answer["verdict"] = "not shown"
    (tmp_path / "answer.json").write_text(json.dumps(answer))
    failed = [name for name, ok, _ in stretch_check.check(str(tmp_path / "answer.json")) if not ok]
    assert failed == ["control_gain: mean and interval", "the verdict follows the interval"]


def test_the_makefile_installs_the_teach_extra_of_pyproject():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        teach = re.search(r'^teach = \[(.*?)\]', f.read(), re.M).group(1)
    with open(os.path.join(ROOT, "Makefile")) as f:
        make = re.search(r"^TEACH = (.*)$", f.read(), re.M).group(1)
    assert sorted(re.findall(r'"([^"]+)"', teach)) == sorted(re.findall(r'"([^"]+)"', make))


WALKTHROUGH_PNGS = ["1_world.png", "2_train_step.png", "3_sample.png", "4_fast_update.png", "5_memory.png",
                    "6_wrong_memory.png"]


def notebook_tools():
    try:
        import jupyter_client.kernelspec
        import jupytext  # noqa: F401
        import nbclient  # noqa: F401
        return "python3" in jupyter_client.kernelspec.find_kernel_specs() or \
            bool(jupyter_client.kernelspec.KernelSpecManager().get_kernel_spec("python3"))
    except Exception:
        return False


def test_the_walkthrough_runs_in_quick_mode_as_a_notebook_and_writes_its_pngs(tmp_path):
    """make test installs the teach extra, so CI executes the notebook (nbclient, a python3 kernel); without those tools
    the same cells run as a script."""
    import imageio.v3 as iio
    env = dict(ENV, SFVGEN_QUICK="1", SFVGEN_WALKTHROUGH_OUT=str(tmp_path))
    if notebook_tools():
        from nbclient import NotebookClient

        from exercises import make_notebooks
        nb = make_notebooks.walkthrough()
        old = dict(os.environ)
        os.environ.update(env)  # the kernel inherits this environment
        try:
            NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
        finally:
            os.environ.clear()
            os.environ.update(old)
        printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        assert "done in" in printed, printed[-2000:]
    else:
        r = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "walkthrough.py")], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    for name in WALKTHROUGH_PNGS:
        img = iio.imread(tmp_path / name)
        assert img.ndim == 3 and img.shape[0] > 10 and img.shape[1] > 10 and img.std() > 0, name


def test_the_notebooks_build_from_their_sources_byte_for_byte(tmp_path):
    pytest.importorskip("jupytext", reason="make notebooks needs the teach extra: pip install \".[teach]\"")
    from exercises import make_notebooks
    a = make_notebooks.make_notebooks(str(tmp_path / "a"))
    b = make_notebooks.make_notebooks(str(tmp_path / "b"))
    assert [os.path.basename(p) for p in a] == [f"hw{n}.ipynb" for n in HWS] + ["walkthrough.ipynb"]
    for p, q in zip(a, b):
        assert filecmp.cmp(p, q, shallow=False), p
    nb = json.loads(open(a[4]).read())  # hw5
    sources = ["".join(c["source"]) for c in nb["cells"]]
    assert any('"exercises.check", "5"' in s for s in sources), "the notebook runs the visible checks"
    assert any("generate_long" in s and c["cell_type"] == "code" for s, c in zip(sources, nb["cells"])), "and the run"
    assert any(c.get("attachments") for c in nb["cells"]), "the picture travels with the notebook"
    assert "If you are stuck" in sources[-1]
    assert runner.TITLES[5] and len(nb["cells"]) > 8


def test_the_instructor_page_lists_every_hidden_check_and_the_mutation_counts():
    with open(os.path.join(ROOT, "exercises", "INSTRUCTOR.md")) as f:
        text = f.read()
    with open(os.path.join(ROOT, "exercises", "README.md")) as f:
        students = f.read()
    from exercises import mutants
    for n in HWS:
        hidden = [c.__name__[6:] for c, vis in runner.load_checks(n, hidden=True) if vis == "hidden"]
        visible = len(runner.load_checks(n))
        missing = [h for h in hidden if f"`{h}`" not in text]
        assert not missing, f"INSTRUCTOR.md does not list hw{n}'s hidden checks {missing}"
        k = len(mutants.MUTANTS[n])
        assert re.search(rf"^\| hw{n} .*\| {visible} \| {len(hidden)} \| .* \| {k}/{k} \|$", text, re.M), \
            f"INSTRUCTOR.md's table row of hw{n}: {visible} visible, {len(hidden)} hidden, {k}/{k} mutants"
        assert re.search(rf"^\| hw{n} .*\| {visible} \+ {len(hidden)} \|", students, re.M), f"README.md's row of hw{n}"
        with open(os.path.join(ROOT, "exercises", f"hw{n}.md")) as f:
            head = f.read()[:800]
        assert f"({visible} visible checks" in head and f"and {len(hidden)} hidden ones" in head, f"hw{n}.md's counts"
