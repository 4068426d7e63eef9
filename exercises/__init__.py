"""The classroom: seven assignments generated from the reference code (see exercises/README.md).

    python -m exercises.check N                          # a student: the visible checks of assignment N
    python exercises/runs/hwN.py                         # a student: the "you should see" run of assignment N
    python -m exercises.grade N [--root DIR]             # the teacher: visible + hidden checks (not in a student copy)
    python -m exercises.make_handout OUT_DIR [--hw N ...]   # the teacher: the student copy
"""
