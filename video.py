"""Frames to and from files: videos you bring (a folder with annotations.jsonl), the videos and panels the
project writes, and the one way every file here is written (atomic_write: all or nothing).

    frames = video.read_video("pan.mp4")                   # (N, h, w, 3) uint8; .mp4 / .gif / .npy
    episodes = video.load_folder("my_videos", cfg.world())  # [Episode(name, actions, frames, split)]
    video.write_video("out/video.mp4", video.panels(a, b, truth, truth=truth, labels=["a", "b", "truth"]))

    python video.py --preview out/world.gif                 # the built-in world, every trajectory kind
    python video.py --example-folder out/my_videos          # a folder of videos to try train.py --data on

Frames are uint8 (N, H, W, 3) here, as everywhere outside the model.
"""
import argparse
import json
import math
import os
import sys
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

import data

VIDEO_TYPES = (".mp4", ".gif", ".npy")


# ----------------------------------------------------------------------------- writing: all or nothing
@contextmanager
def atomic_write(path):
    """`with atomic_write(path) as tmp:` write to the temp path `tmp` (same folder, same extension); when
    the block ends it is flushed to disk and renamed over `path`. An error inside the block leaves `path`
    as it was and no temp file behind: a reader never sees a half-written file."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(folder, f".{stem}.{os.getpid()}.tmp{ext}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, obj):
    """Strict JSON: a measure with nothing to measure (NaN, e.g. SRC of a video without a revisit) is null."""
    def finite(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: finite(v) for k, v in x.items()}
        return [finite(v) for v in x] if isinstance(x, (list, tuple)) else x
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        json.dump(finite(obj), f, indent=1, allow_nan=False)


def save_npy(path, array):
    with atomic_write(path) as tmp:
        np.save(tmp, array)


def write_video(path, frames, fps=8):
    """(N, H, W, 3) uint8 -> an animated GIF (looping) or an .mp4 (imageio's ffmpeg plugin, in the
    requirements)."""
    import imageio.v3 as iio
    if not path.endswith((".gif", ".mp4")):
        raise ValueError(f"{path}: write a .gif or an .mp4")
    with atomic_write(path) as tmp:
        if path.endswith(".mp4"):  # H.264 wants even sides; the panels are scaled by 4
            iio.imwrite(tmp, frames, fps=fps, codec="libx264", macro_block_size=1)
        else:
            iio.imwrite(tmp, frames, duration=1000 / fps, loop=0)


# ----------------------------------------------------------------------------- panels
FONT = {  # 3x5 pixel glyphs, one row of three bits a digit: enough for the panels' labels
    "A": "010101111101101", "B": "110101110101110", "C": "011100100100011", "D": "110101101101110",
    "E": "111100110100111", "F": "111100110100100", "G": "011100101101011", "H": "101101111101101",
    "I": "111010010010111", "K": "101101110101101", "L": "100100100100111", "M": "101111111101101",
    "N": "110101101101101", "O": "010101101101010", "P": "110101110100100", "R": "110101110101101",
    "S": "011100010001110", "T": "111010010010010", "U": "101101101101111", "W": "101101111111101",
    "Y": "101101010010010", "-": "000000111000000", " ": "000000000000000", "/": "001001010100100",
}


def label(text, width, size=2, colour=(40, 40, 40)):
    """A (7 size, width, 3) uint8 strip with `text` (letters, '-', '/', ' ') in the 3x5 font at `size` on
    white."""
    strip = np.full((7, width // size, 3), 255, np.uint8)
    x = 1
    for ch in text.upper():
        if x + 3 > strip.shape[1]:
            break
        glyph = np.array([int(b) for b in FONT.get(ch, FONT[" "])], bool).reshape(5, 3)
        strip[1:6, x:x + 3][glyph] = colour
        x += 4
    strip = strip.repeat(size, 0).repeat(size, 1)
    return np.pad(strip, ((0, 0), (0, width - strip.shape[1]), (0, 0)), constant_values=255)


def panels(*videos, truth=None, revisit=None, labels=None, scale=4):
    """Videos side by side, scaled up: (N, scale (H + 4) [+ 14], n scale (W + 2), 3). Under each panel a
    bar whose length is the frame's PSNR against `truth` (10 dB: none, 25 dB: full width); on frames that
    revisit a place (`revisit`, (N,) bool: metrics.revisit_mask, the frames SRC scores) the bar ends in
    yellow. `labels`: a name over each panel."""
    import metrics
    N, H, W, _ = videos[0].shape
    cols = []
    for v in videos:
        bar = np.full((N, 4, W, 3), 255, np.uint8)
        if truth is not None and v is not truth:
            p = metrics.psnr_per_frame(v, truth)
            for n in range(N):
                bar[n, 1:3, :int(np.clip((p[n] - 10) / 15, 0, 1) * W)] = (60, 60, 60)
        if revisit is not None:
            bar[revisit, :, -3:] = (240, 200, 0)
        col = np.pad(np.concatenate([v, bar], axis=1), ((0, 0), (0, 0), (0, 2), (0, 0)), constant_values=255)
        cols.append(col.repeat(scale, 1).repeat(scale, 2))
    if labels is not None:
        cols = [np.concatenate([np.broadcast_to(label(t, c.shape[2]), (N, 14, c.shape[2], 3)), c], axis=1)
                for t, c in zip(labels, cols)]
    return np.concatenate(cols, axis=2)


# ----------------------------------------------------------------------------- reading
def read_video(path):
    """A video file (.mp4, .gif) or an .npy array of frames -> (N, h, w, 3) uint8. Errors are one line
    naming the file; RGBA loses its alpha, grayscale is refused (the model sees colour)."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    if not path.lower().endswith(VIDEO_TYPES):
        raise ValueError(f"{path}: not a video this project reads ({', '.join(VIDEO_TYPES)})")
    try:
        if path.lower().endswith(".npy"):
            frames = np.load(path, allow_pickle=False)
        else:
            import imageio.v3 as iio
            frames = np.asarray(iio.imread(path, index=None))
    except Exception as e:  # imageio and ffmpeg raise many kinds: say which file and why, in one line
        lines = [s.strip() for s in str(e).strip().splitlines() if s.strip()]
        why = (lines[-1] if lines else "")[:200]  # the last line says why (ffmpeg prints a banner before it)
        raise ValueError(f"{path}: cannot read video ({type(e).__name__}: {why})") from None
    if frames.dtype != np.uint8:
        raise ValueError(f"{path}: frames must be uint8 (0..255), got {frames.dtype}")
    if frames.ndim == 3 and frames.shape[-1] not in (3, 4):
        raise ValueError(f"{path}: grayscale frames {frames.shape} (N, H, W); the model needs colour "
                         f"(N, H, W, 3)")
    if frames.ndim == 3:  # one colour frame
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        raise ValueError(f"{path}: expected frames (N, H, W, 3), got shape {frames.shape}")
    return frames[..., :3]


def read_picture(path):
    """A picture (.png, .jpg, ... anything imageio reads), or the first frame of a video: (h, w, 3) uint8."""
    if path.lower().endswith(VIDEO_TYPES):
        return read_video(path)[0]
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    try:
        import imageio.v3 as iio
        frame = np.asarray(iio.imread(path))
    except Exception as e:  # imageio raises many kinds: one line that names the file
        raise ValueError(f"{path}: cannot read a picture ({type(e).__name__})") from None
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] not in (3, 4):
        raise ValueError(f"{path}: expected a colour picture (H, W, 3) of uint8, got {frame.dtype} "
                         f"{frame.shape}")
    return frame[..., :3]


def resize(frames, size):
    """(N, h, w, 3) uint8 -> (N, size, size, 3) uint8 by area averaging over a nearest-index grid."""
    n, h, w, _ = frames.shape
    ys = (np.arange(size * 4) * h // (size * 4)).reshape(size, 4)
    xs = (np.arange(size * 4) * w // (size * 4)).reshape(size, 4)
    sub = frames[:, ys][:, :, :, xs].astype(np.float32)  # (N, size, 4, size, 4, 3)
    return np.round(sub.mean(axis=(2, 4))).astype(np.uint8)


# ----------------------------------------------------------------------------- your own videos
class Episode(NamedTuple):
    """One annotated video of an own-data folder, at the model's frame size."""
    name: str       # the file, as annotations.jsonl names it
    actions: list   # I action texts, one per chunk
    # (1 + I K, H, W, 3) uint8: the frame before chunk 0, then each chunk resampled to K frames
    frames: object
    split: str      # "train" or "val" (held out: the validation loss and lab.eval --data read only these)


def _warn(message):
    print(f"warning: {message}", file=sys.stderr)


def _check_line(item, where):
    """The structure of one annotation line, before any video is read: the first problem as one line."""
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected a JSON object like {EXAMPLE}")
    missing = [k for k in ("video", "chunks") if k not in item]
    if missing:
        raise ValueError(f"{where}: no {' and no '.join(repr(k) for k in missing)} (expected {EXAMPLE})")
    if not isinstance(item["video"], str) or not item["video"]:
        raise ValueError(f"{where}: 'video' must be a file name in the folder, got {item['video']!r}")
    if item.get("split", "train") not in ("train", "val"):
        raise ValueError(f"{where}: 'split' must be \"train\" or \"val\", got {item['split']!r}")
    chunks = item["chunks"]
    if not isinstance(chunks, list) or not chunks:
        raise ValueError(f"{where}: 'chunks' must be a non-empty list of "
                         f"{{\"action\", \"start\", \"end\"}} objects")
    for k, c in enumerate(chunks):
        if not isinstance(c, dict) or any(key not in c for key in ("action", "start", "end")):
            have = sorted(c) if isinstance(c, dict) else type(c).__name__
            raise ValueError(f"{where}: chunk {k} needs \"action\", \"start\" and \"end\" (has {have})")
        for key in ("start", "end"):
            v = c[key]
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"{where}: chunk {k}: {key!r} must be an integer frame index, got {v!r} "
                                 f"({type(v).__name__})")
        if not 0 <= c["start"] < c["end"]:
            raise ValueError(f"{where}: chunk {k}: frames [{c['start']}, {c['end']}) must satisfy "
                             f"0 <= start < end")
        if not isinstance(c["action"], str):
            raise ValueError(f"{where}: chunk {k}: 'action' must be text, one of {list(data.ACTIONS)}")
        try:
            data.check_action(c["action"])
        except ValueError as e:
            raise ValueError(f"{where}: chunk {k}: {e}") from None


EXAMPLE = '{"video": "a.mp4", "chunks": [{"action": "go left", "start": 1, "end": 9}]}'


def read_annotations(folder, annotations="annotations.jsonl"):
    """The annotation lines of `folder`, each checked: [(where, item)] with where = "file:line". Nothing is
    read but the JSONL file and the names of the videos (which must exist)."""
    ann = os.path.join(folder, annotations)
    if not os.path.isfile(ann):
        raise ValueError(f"{ann}: annotation file not found (one JSON object per line, e.g. {EXAMPLE})")
    lines, names = [], {}
    with open(ann) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{ann}:{lineno}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not JSON ({e.msg} at column {e.colno})") from None
            _check_line(item, where)
            path = os.path.join(folder, item["video"])
            if not os.path.isfile(path):
                raise ValueError(f"{where}: {item['video']}: no such file in {folder}")
            if not path.lower().endswith(VIDEO_TYPES):
                raise ValueError(f"{where}: {item['video']}: not a video this project reads "
                                 f"({', '.join(VIDEO_TYPES)})")
            if item["video"] in names:
                raise ValueError(f"{where}: {item['video']} is annotated twice (first at line "
                                 f"{names[item['video']]})")
            names[item["video"]] = lineno
            lines.append((where, item))
    if not lines:
        raise ValueError(f"{ann}: no annotated videos (one JSON object per line, e.g. {EXAMPLE})")
    return lines


def load_folder(folder, spec=data.WorldSpec(), annotations="annotations.jsonl", warn=_warn, only=None):
    """Own data: `folder` holds videos (.mp4, .gif, .npy) and annotations.jsonl, one video per line:
        {"video": "a.mp4", "chunks": [{"action": "go left", "start": 1, "end": 9}, ...], "split": "val"}
    A chunk is the frames [start, end) of its video, resampled to K frames at the model's size; the episode
    starts at the frame before its first chunk. "split" is optional: without it in any line, the last fifth
    of the videos (at least one, when there are two or more) is held out as "val". Every line and video is
    checked before the first is returned; a problem is one line naming the file and line. Odd but usable
    clips give a warning. only: load just the video of that name. Returns [Episode]."""
    lines = read_annotations(folder, annotations)
    if not any("split" in item for _, item in lines):
        n_val = -(-len(lines) // 5) if len(lines) >= 2 else 0  # ceil(n / 5)
        for k, (_, item) in enumerate(lines):
            item["split"] = "val" if k >= len(lines) - n_val else "train"
    if only is not None:
        lines = [(w, item) for w, item in lines if item["video"] == only]
        if not lines:
            names = [item["video"] for _, item in read_annotations(folder, annotations)]
            raise ValueError(f"{folder}: no video named {only!r} in annotations (videos: "
                             f"{', '.join(names[:8])})")
    episodes = []
    for where, item in lines:
        name, chunks = item["video"], item["chunks"]
        path = os.path.join(folder, name)
        try:
            raw = read_video(path)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if len(raw) < 2:
            raise ValueError(f"{where}: {name} has {len(raw)} frame; a chunk needs frames to move through")
        for k, c in enumerate(chunks):
            if c["end"] > len(raw):
                hint = " (a GIF writer may merge identical frames: write .npy or .mp4, or count the GIF's " \
                       "frames)" if name.lower().endswith(".gif") else ""
                raise ValueError(f"{where}: chunk {k}: frames [{c['start']}, {c['end']}) but {name} has "
                                 f"{len(raw)} frames (0..{len(raw) - 1}){hint}")
        out, actions = [raw[max(chunks[0]["start"] - 1, 0)]], []
        for k, c in enumerate(chunks):
            s, e, a = c["start"], c["end"], data.check_action(c["action"])
            if e - s < spec.chunk:
                warn(f"{where}: chunk {k} spans {e - s} frame(s); resampled to {spec.chunk} by repeating")
            if a != "stay" and (raw[s:e] == raw[s]).all():
                warn(f"{where}: chunk {k} is labelled {a!r} but its frames do not change")
            actions.append(a)
            out += list(raw[np.linspace(s, e - 1, spec.chunk).round().astype(int)])
        episodes.append(Episode(name, actions, resize(np.stack(out), spec.size), item.get("split", "train")))
    return episodes


def sample_folder_batch(rng, episodes, batch, spec=data.WorldSpec(), n_ctx=None):
    """data.sample_batch for your own videos: items cut from load_folder's episodes in the same shapes and
    with the same rules (f_p drawn in 0..K; f_p = 0 gives two whole chunks with the null action)."""
    K = spec.chunk
    f_p = int(rng.integers(0, K + 1)) if n_ctx is None else n_ctx
    f_g = K if f_p > 0 else 2 * K
    ctx, tok, tgt = [], [], []
    for _ in range(batch):
        ep = episodes[int(rng.integers(len(episodes)))]
        i = int(rng.integers(0, len(ep.actions)))  # predict chunk i from the end of chunk i - 1
        end = (i + 1) * K + 1
        clip = ep.frames[max(end - f_p - f_g, 0):end]
        # the first frame repeated (as data.py)
        clip = np.concatenate([clip[:1]] * (f_p + f_g - len(clip)) + [clip])
        ctx.append(clip[:f_p])
        tgt.append(clip[f_p:])
        tok.append(data.tokenize(ep.actions[i] if f_p > 0 else data.NULL_ACTION))
    return np.stack(ctx), np.array(tok, dtype=np.int64), np.stack(tgt)


def sample_folder_episodes(rng, episodes, n, spec=data.WorldSpec(), max_chunks=8):
    """data.sample_episodes for your own videos (the slow-fast loop): n runs of at most max_chunks
    consecutive chunks cut from load_folder's episodes: [(frames (1 + I K, H, W, 3), I actions)]."""
    K, out = spec.chunk, []
    for _ in range(n):
        ep = episodes[int(rng.integers(len(episodes)))]
        m = min(max_chunks, len(ep.actions))
        i = int(rng.integers(0, len(ep.actions) - m + 1))
        out.append((ep.frames[i * K:(i + m) * K + 1], ep.actions[i:i + m]))
    return out


def landscape(seed, size=512):
    """A made-up aerial photograph, (size, size, 3) uint8, that wraps around: a fractal height map (value
    noise over six octaves) coloured as water, sand, grass, forest, rock and snow, lit from the north-west."""
    rng, h = np.random.default_rng([seed, 31]), np.zeros((size, size))
    for octave in range(6):  # each octave twice as fine and half as strong
        g = 4 * 2 ** octave
        grid = rng.random((g, g))
        u = np.arange(size) * g / size
        i0, w = np.floor(u).astype(int), (u - np.floor(u))[:, None]
        rows = grid[i0 % g] * (1 - w) + grid[(i0 + 1) % g] * w  # (size, g): bilinear, wrapping around
        h += (rows[:, i0 % g] * (1 - w.T) + rows[:, (i0 + 1) % g] * w.T) / 2 ** octave
    h = (h - h.min()) / (h.max() - h.min())
    levels = [0.38, 0.42, 0.46, 0.62, 0.74, 0.86, 1.01]  # the top of each band
    colours = np.array([[30, 60, 120], [60, 110, 170], [200, 190, 140], [90, 150, 60], [40, 95, 45],
                        [120, 110, 100], [240, 240, 245]], float)
    img = colours[np.digitize(h, levels).clip(0, len(colours) - 1)]
    shade = 1 + 4 * ((np.roll(h, 1, 0) - h) + (np.roll(h, 1, 1) - h))  # light from the north-west
    img *= np.where(h[..., None] < levels[1], 1.0, shade[..., None].clip(0.6, 1.4))
    img += rng.normal(0, 6, img.shape)  # film grain
    return img.clip(0, 255).round().astype(np.uint8)


def write_example_folder(folder, n_videos=6, seed=0, view=64, step=8, chunk=4):
    """A small own-data folder to try `train.py --data` on: camera pans over made-up aerial photographs
    (`landscape`), view x view pixels moving `step` pixels a frame, `chunk` frames an action, saved as .mp4
    (the first half) and .npy, with an annotations.jsonl whose chunks say where each action starts and
    ends. The loader resizes them to the model's size (64 -> 32: 4 pixels a frame, as in the built-in
    world)."""
    os.makedirs(folder, exist_ok=True)
    rng, lines = np.random.default_rng(seed), []
    moves = {a: m for a, m in data.MOVES.items() if a != "stay"}
    for v in range(n_videos):
        picture = landscape(seed * 1000 + v)
        S = len(picture)
        padded = np.pad(picture, ((0, view), (0, view), (0, 0)), mode="wrap")
        actions = [str(a) for a in rng.choice(list(moves), size=8)]
        pos = rng.integers(0, S, 2)
        frames = [padded[pos[0]:pos[0] + view, pos[1]:pos[1] + view]]
        for a in actions:
            for _ in range(chunk):
                pos = (pos + np.array(moves[a]) * step) % S
                frames.append(padded[pos[0]:pos[0] + view, pos[1]:pos[1] + view])
        name = f"pan{v}.mp4" if v < n_videos // 2 else f"pan{v}.npy"
        (write_video if name.endswith(".mp4") else save_npy)(os.path.join(folder, name), np.stack(frames))
        lines.append(dict(video=name, chunks=[dict(action=a, start=1 + i * chunk, end=1 + (i + 1) * chunk)
                                              for i, a in enumerate(actions)]))
    with atomic_write(os.path.join(folder, "annotations.jsonl")) as tmp, open(tmp, "w") as f:
        f.write("".join(json.dumps(line) + "\n" for line in lines))
    return folder


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="Frames to files: a GIF of the built-in world, or a folder of "
                                            "your own videos to try train.py --data on.")
    p.add_argument("--preview", metavar="GIF",
                   help="write a GIF of two episodes of every trajectory kind of the world")
    p.add_argument("--example-folder", metavar="DIR",
                   help="write made-up aerial pans (.mp4, .npy) with annotations.jsonl, for train.py --data")
    p.add_argument("--dynamics", action="store_true", help="with --preview: the world's ball and light")
    args = p.parse_args()
    if args.preview:
        write_video(args.preview, data.preview(data.WorldSpec(dynamics=args.dynamics)))
        print(f"wrote {args.preview}: two episodes of each of {', '.join(data.KINDS)}")
    if args.example_folder:
        write_example_folder(args.example_folder)
        print(f"wrote {args.example_folder}: pans over made-up aerial pictures and annotations.jsonl; train "
              f"on it with python train.py --data {args.example_folder}")
    if not (args.preview or args.example_folder):
        p.print_help()
