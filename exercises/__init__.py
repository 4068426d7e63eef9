"""Six assignments that grade themselves, generated from the reference code (see exercises/README.md).

    python -m exercises.make_handout OUT_DIR [--hw N ...]   # the student copy, solution regions stubbed
    python -m exercises.grade N [--root DIR]                # assignment N's checks against the project at DIR
"""
