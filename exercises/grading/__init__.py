"""The hidden grading checks (the teacher's; `make handout` never copies this folder): exercises/grading/hwN.py holds
assignment N's checks as plain functions `check_*(sf)`, CHECKS in order (cheap first), each worth one point.
`python -m exercises.grade N` runs the visible checks and these. Each check states a property a wrong idea fails, and
its message names the idea, not the line to write. exercises/mutants.py proves they catch plausible mistakes."""
