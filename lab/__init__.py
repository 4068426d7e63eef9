"""The lab: everything that measures, probes or compares SlowFast-VGen, kept apart from the method itself.

The core (sfvgen.py, train.py, generate.py) implements the paper; the lab imports it and plugs in through a
few explicit seams, never the other way round:
  - `window=` of sfvgen.generate_long / fast_learn_chunk / slow_fast_iteration and train.main: the fast rule
    (lab/rules.py: the paper's ablated rules and our reversed windows);
  - `batches=` and `network=` of train.main: other training clips and a subclass of the network
    (lab/matrix.py: MemoryUNet and the memory matrix's contexts, trained by lab/train.py);
  - `memory=` of sfvgen.generate_long: a video continued from a state, or from the start with a LoRA held
    frozen (the controls of lab/eval.py and lab/probe.py);
  - VideoUNet.frame_positions, which MemoryUNet overrides for retrieved frames.

Entry points (each takes the checkpoint's generation settings as flags, e.g. --fast-steps 8; --out is the
output folder):
    python -m lab.eval   --ckpt C --worlds N [--ablate]    long videos with and without fast learning (Tables 1, 3)
    python -m lab.eval   --ckpt C --slow N                 the slow model alone: one chunk, and rollouts
    python -m lab.plan   --ckpt C --worlds N               long-horizon planning (section 4.3, Table 2)
    python -m lab.matrix --ckpt C --worlds N               the memory matrix: every way to remember (ours)
    python -m lab.probe  --ckpt C --recall N | --span N    what the fast weights keep, on ground-truth legs (ours)
    python -m lab.train  --memory-mix 0.7 [train.py flags] slow learning with the matrix's contexts (ours)
    python -m lab.bench                                    speed: training, sampling, fast learning (ours)
Shared pieces: lab/common.py (parser, timed generation, --arms), lab/stats.py (bootstrap intervals).
"""
