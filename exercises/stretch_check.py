"""The number check of the stretch assignment ("is it memory?", exercises/stretch.md).

    python -m exercises.stretch_check ANSWER.json

ANSWER.json (the student's) names the table lab.eval wrote and states three paired gains of the return-leg PSNR,
each a mean over worlds and a 95% percentile-bootstrap interval (lab/stats.py's bootstrap_ci, its defaults):

    {"eval": "out/stretch/eval_out-and-back.json",
     "memory_gain":  {"mean": 0.21, "ci": [-0.03, 0.45]},   # TEMP-LoRA minus no fast learning
     "control_gain": {"mean": 0.01, "ci": [-0.34, 0.38]},   # control: wrong memory minus no fast learning
     "beyond_control": {"mean": 0.20, "ci": [-0.1, 0.5]},   # TEMP-LoRA minus control: wrong memory
     "verdict": "memory" or "not shown"}                    # "memory" only when beyond_control's interval is above 0

The checker recomputes every number from the per-world values in the eval table (return_psnr_per_world) and
prints a score per check and a total; the exit code is 0 only for full marks. The written report is graded by hand.
"""
import argparse
import json
import os
import sys

import numpy as np

ROWS = {"base": "no fast learning", "memory": "TEMP-LoRA", "control": "control: wrong memory"}
TOL = 0.01  # dB: the numbers are read to two decimals


def bootstrap_ci(values, n_boot=1000, alpha=0.05, seed=0):
    """lab/stats.py's percentile bootstrap of the mean (the same function, so the checker needs no lab/)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    low, high = np.percentile(means, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(values.mean()), float(low), float(high)


def recompute(table):
    """The three paired gains of the table: name -> (per-world differences, (mean, low, high))."""
    rows = {r["arm"]: r for r in table["rows"]}
    missing = [name for name in ROWS.values() if name not in rows]
    if missing:
        raise ValueError(f"the eval table has no row {missing} (run lab.eval with --ablate --arms "
                         f"\"TEMP-LoRA,control: wrong memory\")")
    per = {k: np.asarray(rows[name]["return_psnr_per_world"], dtype=np.float64) for k, name in ROWS.items()}
    diffs = {"memory_gain": per["memory"] - per["base"], "control_gain": per["control"] - per["base"],
             "beyond_control": per["memory"] - per["control"]}
    return {k: (v, bootstrap_ci(v)) for k, v in diffs.items()}, rows


def check(answer_path):
    """[(name, passed, why)] for the student's answer file."""
    with open(answer_path) as f:
        answer = json.load(f)
    eval_path = answer.get("eval", "")
    if not os.path.isfile(eval_path):  # relative to the current folder, else to the answer file
        eval_path = os.path.join(os.path.dirname(os.path.abspath(answer_path)), eval_path)
    with open(eval_path) as f:
        table = json.load(f)
    gains, rows = recompute(table)
    results = []
    n = len(gains["memory_gain"][0])
    results.append(("the table covers at least 10 worlds", n >= 10, f"{n} worlds"))
    # the table's own gains (lab.eval wrote them) agree with its per-world values: nothing was edited by hand
    ok = all(abs(rows[ROWS[k]]["return_gain"] - gains[g][1][0]) <= 1e-6 and
             np.allclose(rows[ROWS[k]]["return_gain_ci"], gains[g][1][1:], atol=1e-6)
             for k, g in (("memory", "memory_gain"), ("control", "control_gain")))
    results.append(("the table is consistent with its per-world values", ok, "return_gain(_ci) do not match"))
    for key in ("memory_gain", "control_gain", "beyond_control"):
        mean, low, high = gains[key][1]
        got = answer.get(key, {})
        try:
            ok = abs(got["mean"] - mean) <= TOL and abs(got["ci"][0] - low) <= TOL and abs(got["ci"][1] - high) <= TOL
        except (KeyError, TypeError, IndexError):
            ok = False
        results.append((f"{key}: mean and interval", ok, f"expected {mean:+.2f} [{low:+.2f}, {high:+.2f}], got {got}"))
    want = "memory" if gains["beyond_control"][1][1] > 0 else "not shown"
    results.append(("the verdict follows the interval", answer.get("verdict") == want,
                    f"beyond_control's interval gives {want!r}, got {answer.get('verdict')!r}"))
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description="Check the numbers of the stretch assignment's answer file.")
    p.add_argument("answer", help="the student's JSON (see exercises/stretch.md)")
    args = p.parse_args(argv)
    try:
        results = check(args.answer)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        print(f"stretch: 0 (cannot read the answer or its eval table: {type(e).__name__}: {e})")
        return 1
    for name, ok, why in results:
        print(f"  {int(ok)}/1  {name}" + ("" if ok else f"\n        {why}"))
    score = sum(ok for _, ok, _ in results)
    print(f"stretch: {score}/{len(results)} (the report is graded by hand)")
    return 0 if score == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
