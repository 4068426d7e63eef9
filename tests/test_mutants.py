"""The mutation test of the classroom (exercises/mutants.py): plausible wrong implementations of every assignment,
each a patch of the reference's solution region, must fail the grading checks.

`make test` checks that every mutant still applies inside its region (seconds). The run itself, every mutant against
the grading checks, takes about 2.5 CPU-minutes on two processes, so it has its own target: `make mutants` (CI), or
SFVGEN_MUTANTS=1 python -m pytest tests/test_mutants.py."""
import os

import pytest

from exercises import make_handout, mutants

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_mutant_applies_inside_a_solution_region_of_its_assignment():
    text = mutants.reference_text()
    assert set(mutants.MUTANTS) == set(make_handout.ALL)
    for hw, listed in mutants.MUTANTS.items():
        assert len(listed) >= 6, f"hw{hw}: {len(listed)} mutants"
        assert len({name for name, _, _ in listed}) == len(listed), f"hw{hw}: two mutants share a name"
        for name, why, patches in listed:
            changed = mutants.apply(text, hw, patches)
            assert changed != text, name
            compile(changed, f"hw{hw} {name}", "exec")


@pytest.mark.skipif(not os.environ.get("SFVGEN_MUTANTS"), reason="the full mutation run has its own target: make mutants")
def test_the_grading_checks_catch_every_listed_mutant():
    table = mutants.run(jobs=2)
    missed = [(hw, row[0]) for hw, rows in table.items() for row in rows if not row[1]]
    for hw, rows in table.items():
        print(f"hw{hw}: {sum(r[1] for r in rows)}/{len(rows)} mutants caught")
    assert not missed, missed
