"""The command line of train.py, generate.py and the lab: one --flag per field of sfvgen.Config, the checks
that refuse a config before any work starts, and the device.

    p = cli.config_parser("what the script does")   # --lora-rank 16, --no-fast-learning, --mults 1,2,3
    cfg = cli.config_from_args(p.parse_args())       # the preset, then the flags given; validated

Each field's --help text is its trailing comment in the Config source (sfvgen.py). A boolean field takes a
bare `--loop` / `--no-loop` or an explicit `--loop on|off`.
"""
import argparse
import inspect
import os
import re
import shutil
from dataclasses import asdict, fields

import torch

import data
import sfvgen

# the fields a checkpoint's weights were trained with: generation and --init may not change them
WEIGHT_FIELDS = ("channels", "mults", "attn_levels", "temporal_attn_levels", "heads", "text_dim",
                 "cond_last_frame", "warp_output", "size", "chunk", "timesteps", "prediction",
                 "latent_channels", "ae_width")


# the fields that change a generation from a trained checkpoint (generate.py and the lab take only these)
GENERATION_FIELDS = ("guidance", "sample_steps", "eta", "fast_learning", "lora_rank", "lora_alpha",
                     "lora_targets", "fast_steps", "fast_lr", "fast_draws", "speed", "canvas", "dynamics",
                     "seed", "device", "threads")


def check_weight_fields(path, stored, cfg):
    """Refuse a config that differs from checkpoint `path` (config `stored`) in a field its weights fix."""
    differ = [f"--{f.replace('_', '-')} {getattr(stored, f)}" for f in WEIGHT_FIELDS
              if getattr(cfg, f) != getattr(stored, f)]
    if differ:
        raise ValueError(f"{path}: its weights were trained with {', '.join(differ)}; leave those flags "
                         f"out or give the same")


def _field_help():
    """Each field's trailing comment in the Config source is its --help text (with the comment lines right
    under it that continue it; a "# ---" line starts the next section)."""
    src = inspect.getsource(sfvgen.Config)
    found = re.findall(r"^\s+(\w+): [^#\n]+#\s*(.+)$((?:\n\s+#(?!\s*---)\s*.+$)*)", src, flags=re.M)
    return {name: " ".join([first] + re.findall(r"#\s*(.+)", more)) for name, first, more in found}


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


def config_parser(description, extra=None, only=None, script="this script", skip=()):
    """An argparse parser with one --flag per Config field (defaults shown), or only the fields in `only`
    (the others are refused with a one-line error naming `script`); fields in `skip` get no flag (the
    script uses the name for its own); `extra(p)` adds the script's own flags."""
    p = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    helps = {k: v.replace("%", "%%") for k, v in _field_help().items()}
    for f in fields(sfvgen.Config):
        flag, d = "--" + f.name.replace("_", "-"), f.default
        if f.name in skip:
            continue
        if only is not None and f.name not in only:
            p.add_argument(flag, dest=f"refused_{f.name}", nargs="?", help=argparse.SUPPRESS,
                           action=_refuse(f"{flag} is a training setting ({script} changes only "
                                          f"{', '.join('--' + n.replace('_', '-') for n in only)})"))
            continue
        shown = ",".join(map(str, d)) if isinstance(d, tuple) else d
        kind = _parse_value(type(d).__name__, d)
        if isinstance(d, bool):  # --loop, --loop on|off, --no-loop
            p.add_argument(flag, dest=f.name, default=None, nargs="?", const=True, metavar="on|off",
                           type=kind,
                           help=f"{helps.get(f.name, '')} (tiny: {'on' if d else 'off'}; "
                                f"--no-{flag[2:]} turns it off)")
            p.add_argument(f"--no-{flag[2:]}", dest=f.name, action="store_const", const=False,
                           help=argparse.SUPPRESS)
        else:
            p.add_argument(flag, dest=f.name, default=None, metavar=type(d).__name__.upper(), type=kind,
                           help=f"{helps.get(f.name, '')} (tiny: {shown})")
    if extra is not None:
        extra(p)
    return p


def _refuse(message):
    class Refuse(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            parser.error(message)
    return Refuse


def config_from_args(args, base=None):
    """Config from parsed flags: the preset (or `base`, e.g. a checkpoint's config), then the flags given."""
    given = {f.name: getattr(args, f.name) for f in fields(sfvgen.Config)
             if getattr(args, f.name, None) is not None}
    cfg = sfvgen.preset(given.get("preset", "tiny")) if base is None else base
    cfg = sfvgen.Config(**{**asdict(cfg), **given})
    validate(cfg)
    return cfg


def validate(cfg):
    """Refuse a config that cannot work, before any work starts, saying what is accepted."""
    checks = [
        (cfg.prediction in ("v", "eps", "x0"), f"--prediction {cfg.prediction!r}: use v, eps or x0"),
        (not cfg.warp_output or cfg.prediction == "x0",
         "--warp-output carries frames forward: it needs --prediction x0"),
        (all(k in data.KINDS for k in cfg.loop_kinds.split(",")),
         f"--loop-kinds {cfg.loop_kinds!r}: comma-separated kinds from {list(data.KINDS)}"),
        (all(k in data.KINDS for k in cfg.train_kinds.split(",")),
         f"--train-kinds {cfg.train_kinds!r}: comma-separated kinds from {list(data.KINDS)}"),
        (cfg.lora_targets in sfvgen.LORA_TARGETS,
         f"--lora-targets {cfg.lora_targets!r}: use one of {list(sfvgen.LORA_TARGETS)}"),
        (not cfg.data or os.path.isfile(os.path.join(cfg.data, "annotations.jsonl")),
         f"--data {cfg.data!r}: expected a folder with videos and annotations.jsonl"),
        (cfg.device in ("auto", "cpu", "cuda", "mps") or cfg.device.startswith("cuda:"),
         f"--device {cfg.device!r}: use auto, cpu, cuda or mps"),
    ]
    for name in ("channels", "size", "canvas", "chunk", "batch", "max_steps", "timesteps", "sample_steps",
                 "fast_draws", "lora_rank", "heads", "text_dim", "log_every", "eval_every", "ckpt_every",
                 "loop_episodes", "loop_out_chunks"):
        value = getattr(cfg, name)
        checks.append((value > 0, f"--{name.replace('_', '-')} must be positive, got {value}"))
    checks += [
        (cfg.speed >= 0 and cfg.fast_steps >= 0, "--speed and --fast-steps must be >= 0"),
        (len(cfg.mults) > 0 and all(m > 0 for m in cfg.mults),
         f"--mults {cfg.mults}: positive integers, e.g. 1,2,3"),
        (cfg.size % 2 ** (len(cfg.mults) - 1) == 0,
         f"--size {cfg.size} cannot be halved {len(cfg.mults) - 1} times evenly for --mults {cfg.mults}; "
         f"use a multiple of {2 ** (len(cfg.mults) - 1)}"),
        (cfg.canvas >= 2 * cfg.size, f"--canvas {cfg.canvas} must be at least twice --size {cfg.size}"),
        (all(0 <= lv < len(cfg.mults) for lv in cfg.attn_levels + cfg.temporal_attn_levels),
         f"attention levels must lie in 0..{len(cfg.mults) - 1}"),
        (all(cfg.channels * m % 8 == 0 for m in cfg.mults),
         "--channels times every mult must be divisible by 8 (GroupNorm)"),
        (cfg.sample_steps <= cfg.timesteps, "--sample-steps must not exceed --timesteps"),
        (cfg.stage in ("diffusion", "autoencoder"), f"--stage {cfg.stage!r}: use diffusion or autoencoder"),
        (cfg.latent_channels >= 0 and cfg.ae_width > 0,
         "--latent-channels must be >= 0 and --ae-width positive"),
        (not cfg.latent_channels or cfg.size % (4 * 2 ** (len(cfg.mults) - 1)) == 0,
         f"--size {cfg.size}: a latent model's UNet works at size / 4 and halves it {len(cfg.mults) - 1} "
         f"times; use a multiple of {4 * 2 ** (len(cfg.mults) - 1)}"),
        (cfg.train_seeds[1] <= cfg.val_seeds[0] and cfg.val_seeds[1] <= cfg.test_seeds[0],
         "seed ranges must be ordered and disjoint: train < val < test"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)


def pick_device(name):
    """--device auto: cuda, then mps, then cpu; or the named device (a torch.device)."""
    if name == "auto":
        mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        name = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    return torch.device(name)


def build(args):
    """The model of a checkpoint, for generation and the lab: config = the checkpoint's config + the flags
    given (generation settings only: a field the weights fix is refused). Returns (model, cfg, diffusion)."""
    device = pick_device(getattr(args, "device", None) or "auto")
    model, stored, _ = sfvgen.load_model(args.ckpt, device)
    cfg = config_from_args(args, base=stored)
    check_weight_fields(args.ckpt, stored, cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return model, cfg, sfvgen.Diffusion(cfg, device)


def check_writable(folder, need_bytes=0):
    """Fail before any work when the output folder cannot be created or written, or the disk is full."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, ".write_test")
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.remove(probe)
    except OSError as e:
        raise SystemExit(f"error: cannot write to output folder {folder!r} ({e.strerror or e})") from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise SystemExit(f"error: only {free / 2**20:.0f} MiB free under {folder!r}; checkpoints need about "
                         f"{need_bytes / 2**20:.0f} MiB")
