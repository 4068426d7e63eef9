"""The command line of train.py and generate.py: one --flag per field of sfvgen.Config, the checks that refuse
a config before any work starts, and the device.

    p = cli.config_parser("what the script does")   # --lora-rank 16, --fast off, --mults 1,2,3; --help lists them
    cfg = cli.config_from_args(p.parse_args())       # the preset, then the flags given; validated

Each field's --help text is its trailing comment in the Config source (sfvgen.py).
"""
import argparse
import inspect
import re
from dataclasses import asdict, fields

import torch

import data
import sfvgen

# the fields a checkpoint's weights were trained with: generation and --init may not change them
WEIGHT_FIELDS = ("channels", "mults", "attn_levels", "temporal_attn_levels", "heads", "text_dim", "cond_last_frame",
                 "size", "chunk", "timesteps", "prediction")


def check_weight_fields(path, stored, cfg):
    """Refuse a config that differs from the checkpoint `path` (config `stored`) in a field its weights fix."""
    differ = [f"--{f.replace('_', '-')} {getattr(stored, f)}" for f in WEIGHT_FIELDS if getattr(cfg, f) != getattr(stored, f)]
    if differ:
        raise ValueError(f"{path}: its weights were trained with {', '.join(differ)}; leave those flags out or give the same")


def _field_help():
    """Each field's trailing comment in the Config source is its --help text."""
    src = inspect.getsource(sfvgen.Config)
    return dict(re.findall(r"^\s+(\w+): [^#\n]+#\s*(.+)$", src, flags=re.M))


def _parse_value(kind, default):
    def parse(s):
        if isinstance(default, bool):
            if s.lower() in ("1", "true", "on", "yes"):
                return True
            if s.lower() in ("0", "false", "off", "no"):
                return False
            raise argparse.ArgumentTypeError(f"expected on/off, got {s!r}")
        if isinstance(default, tuple):
            return tuple(int(v) for v in s.split(",") if v.strip())
        return type(default)(s)
    parse.__name__ = kind
    return parse


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default, except for Config fields (default None: "not given"), whose help says it."""
    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def config_parser(description, extra=None, skip=()):
    """An argparse parser with one --flag per Config field (defaults shown) except those in `skip`;
    `extra(p)` adds the script's own flags."""
    p = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    helps = _field_help()
    for f in fields(sfvgen.Config):
        if f.name in skip:
            continue
        d = f.default
        shown = ",".join(map(str, d)) if isinstance(d, tuple) else d
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None, metavar=type(d).__name__.upper(),
                       type=_parse_value(type(d).__name__, d), help=f"{helps.get(f.name, '')} (tiny: {shown})")
    if extra is not None:
        extra(p)
    return p


def config_from_args(args, base=None):
    """Config from parsed flags: the preset (or `base`, e.g. a checkpoint's config), then the flags given."""
    given = {f.name: getattr(args, f.name) for f in fields(sfvgen.Config) if getattr(args, f.name, None) is not None}
    cfg = sfvgen.preset(given.get("preset", "tiny")) if base is None else base
    cfg = sfvgen.Config(**{**asdict(cfg), **given})
    validate(cfg)
    return cfg


def validate(cfg):
    """Refuse a config that cannot work, before any work starts, saying what is accepted."""
    checks = [
        (cfg.prediction in ("v", "eps", "x0"), f"--prediction {cfg.prediction!r}: use v, eps or x0"),
        (all(k in data.KINDS for k in cfg.loop_kinds.split(",")),
         f"--loop-kinds {cfg.loop_kinds!r}: comma-separated kinds from {list(data.KINDS)}"),
        (all(k in data.KINDS for k in cfg.train_kinds.split(",")),
         f"--train-kinds {cfg.train_kinds!r}: comma-separated kinds from {list(data.KINDS)}"),
        (cfg.lora_targets in sfvgen.LORA_TARGETS, f"--lora-targets {cfg.lora_targets!r}: use one of {list(sfvgen.LORA_TARGETS)}"),
        (cfg.fast_rule in ("local", "original", "global"), f"--fast-rule {cfg.fast_rule!r}: use local, original or global"),
        (not (cfg.fast_reverse and cfg.fast_rule == "original"),
         "--fast-reverse needs the local or global rule (the original rule's action has no general reverse)"),
        (not cfg.loop or cfg.fast_rule == "local",
         "--loop on: the inner loop of Algorithm 1b learns with the paper's local rule; use --fast-rule local"),
        (cfg.device in ("auto", "cpu", "cuda", "mps") or cfg.device.startswith("cuda:"),
         f"--device {cfg.device!r}: use auto, cpu, cuda or mps"),
    ]
    for name in ("channels", "size", "canvas", "chunk", "batch", "max_steps", "timesteps", "sample_steps",
                 "lora_rank", "heads", "text_dim", "log_every", "eval_every", "ckpt_every", "loop_episodes", "loop_out_chunks"):
        checks.append((getattr(cfg, name) > 0, f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}"))
    checks += [
        (cfg.speed >= 0 and cfg.fast_steps >= 0, "--speed and --fast-steps must be >= 0"),
        (len(cfg.mults) > 0 and all(m > 0 for m in cfg.mults), f"--mults {cfg.mults}: positive integers, e.g. 1,2,3"),
        (cfg.size % 2 ** (len(cfg.mults) - 1) == 0,
         f"--size {cfg.size} cannot be halved {len(cfg.mults) - 1} times evenly for --mults {cfg.mults}; "
         f"use a multiple of {2 ** (len(cfg.mults) - 1)}"),
        (cfg.canvas >= 2 * cfg.size, f"--canvas {cfg.canvas} must be at least twice --size {cfg.size}"),
        (all(0 <= lv < len(cfg.mults) for lv in cfg.attn_levels + cfg.temporal_attn_levels),
         f"attention levels must lie in 0..{len(cfg.mults) - 1}"),
        (all(cfg.channels * m % 8 == 0 for m in cfg.mults), "--channels times every mult must be divisible by 8 (GroupNorm)"),
        (cfg.sample_steps <= cfg.timesteps, "--sample-steps must not exceed --timesteps"),
        (0 <= cfg.memory_mix <= 1, f"--memory-mix {cfg.memory_mix}: a fraction in 0..1"),
        (cfg.train_seeds[1] <= cfg.val_seeds[0] and cfg.val_seeds[1] <= cfg.test_seeds[0],
         "seed ranges must be ordered and disjoint: train < val < test"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)


def pick_device(name):
    """--device auto: cuda, then mps, then cpu; or the named device."""
    if name == "auto":
        mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        name = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        # cuDNN's fused attention failed in the bf16 backward of the gpu preset's temporal attention (B H W
        # sequences of T frames: 65,536 at 32x32, batch 64; torch 2.11, H100); flash / memory-efficient kernels do it
        torch.backends.cuda.enable_cudnn_sdp(False)
    return device
