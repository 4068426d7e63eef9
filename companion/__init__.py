"""Companions: small programs to read beside SlowFast-VGen, not part of it.

    python -m companion.hyperzzw     fast weights computed in the forward pass (HyperZ·Z·W), against the
                                     fast weights written by gradient steps (TEMP-LoRA)
"""
