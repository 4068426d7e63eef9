"""The graders' checks: exercises/checks/hwN.py holds assignment N's checks as plain functions `check_*(sf)`, where
`sf` is the graded project's sfvgen module. A check passes when it returns; an exception (an assert, or the stub's
NotImplementedError) fails it. CHECKS lists them in order; each is worth one point."""
