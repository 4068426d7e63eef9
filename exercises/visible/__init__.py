"""The visible checks: exercises/visible/hwN.py holds assignment N's sanity checks as plain functions `check_*(sf)`
(`sf`: the graded project's sfvgen module); CHECKS lists them in order. They ship with the student's copy:
`python -m exercises.check N` runs them. They test shapes, dtypes, determinism and invariants, never the algorithm
written out."""
