"""The action world: a procedural 2D world that renders action-driven videos with exact ground truth.

SlowFast-VGen trains on 200k (input chunk, action text, output chunk) items from game engines and robot
sets. We replace that data by a world that needs no download and whose simulator also renders the
*ground truth* for any action sequence, so generated videos can be scored frame by frame and we know
which frames show the same place (that is where episodic memory matters).

The world: a toroidal canvas (default 256x256) of randomly placed shapes in distinct colours over a
large-scale background texture; a camera view (default 32x32) that text actions move a few pixels per
frame; an agent marker at the view centre. The canvas wraps around, so every path can be retraced exactly.

    frames, positions = render_episode(world_seed, ["go right", "go right", "go left", "go left"])
    frames: (N, H, W, 3) uint8, N = 1 + chunks * K      positions: (N, 2) int (y, x) of the view corner

Run `python video.py --preview out/world.gif` to look at a few episodes of every kind,
`python data.py --bench` to time the renderer.
"""
import argparse
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------- actions and the tokenizer
# actions are free text, as in the paper; a tiny word vocabulary stands in for a text encoder's tokenizer
VOCAB = ["<pad>", "<null>", "go", "left", "right", "up", "down", "stay", "back"]
MAX_WORDS = 3  # L, the token length of one action text
ACTIONS = ("go left", "go right", "go up", "go down", "stay", "go back")
MOVES = {"go left": (0, -1), "go right": (0, 1), "go up": (-1, 0), "go down": (1, 0), "stay": (0, 0)}
OPPOSITE = {"go left": "go right", "go right": "go left", "go up": "go down", "go down": "go up",
            "stay": "stay"}
NULL_ACTION = "<null>"  # the "no action" text: classifier-free guidance and fast learning use it


def tokenize(text):
    """Action text -> list of MAX_WORDS word ids (padded). Unknown words raise an error naming VOCAB."""
    words = text.lower().split() if text != NULL_ACTION else [NULL_ACTION]
    unknown = [w for w in words if w not in VOCAB]
    if unknown or not words or len(words) > MAX_WORDS:
        what = f"unknown word(s) {unknown}" if unknown else f"{len(words)} words (1..{MAX_WORDS} allowed)"
        raise ValueError(f"action {text!r}: {what}; the vocabulary is {VOCAB[1:]}, actions are "
                         f"{list(ACTIONS)}")
    return [VOCAB.index(w) for w in words] + [0] * (MAX_WORDS - len(words))


def check_action(text):
    """Returns the normalised action text, or raises an error that lists the actions the world knows."""
    tokenize(text)  # names the vocabulary on an unknown word
    a = " ".join(text.lower().split())
    if a not in ACTIONS:
        raise ValueError(f"action {text!r} is not one of {list(ACTIONS)}")
    return a


def parse_actions(spec):
    """'go right*4,go left*4' -> ['go right'] * 4 + ['go left'] * 4 (one entry per chunk)."""
    out = []
    for part in spec.split(","):
        text, _, count = part.strip().partition("*")
        if count and not count.strip().isdigit():
            raise ValueError(f"malformed --actions part {part!r}: the repeat count after '*' must be a "
                             f"positive integer, as in 'go right*4,go left*4'")
        n = int(count) if count else 1
        if n < 1:
            raise ValueError(f"malformed --actions part {part!r}: the repeat count must be at least 1")
        out += [check_action(text)] * n
    return out


# ----------------------------------------------------------------------------- the world
@dataclass(frozen=True)
class WorldSpec:
    size: int = 32          # H = W of the camera view, pixels
    canvas: int = 256       # side of the toroidal canvas, pixels
    speed: int = 4          # camera pixels per frame; one chunk of K frames moves K * speed pixels
    chunk: int = 4          # K, frames per chunk (one action per chunk)
    n_shapes: int = 160     # shapes placed on the canvas
    dynamics: bool = False  # add a bouncing ball and a blinking light (things that move without actions)
    marker: bool = True     # draw the agent marker at the view centre


def _hsv_to_rgb(h, s, v):
    """h, s, v in [0, 1] (arrays) -> rgb in [0, 1], the standard hexcone formula."""
    i = np.floor(h * 6) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    return np.stack([np.choose(i.astype(int), [row[c] for row in table]) for c in range(3)], -1)


class World:
    """One procedural world: a (canvas, canvas, 3) uint8 image drawn from an integer seed."""

    def __init__(self, seed, spec=WorldSpec()):
        self.seed, self.spec = seed, spec
        rng = np.random.default_rng([seed, 7919])
        S = spec.canvas
        # background: a 16x16 grid of muted colours, bilinearly upsampled with wrap-around (large scale)
        g = 16
        hue, sat, val = rng.random((g, g)), 0.3 + 0.3 * rng.random((g, g)), 0.25 + 0.35 * rng.random((g, g))
        grid = _hsv_to_rgb(hue, sat, val)
        u = (np.arange(S) + 0.5) * g / S - 0.5
        i0 = np.floor(u).astype(int)
        w = (u - i0)[:, None]
        rows = grid[i0 % g] * (1 - w[..., None]) + grid[(i0 + 1) % g] * w[..., None]  # (S, g, 3)
        # (S, S, 3): each row bilinearly between two grid columns
        self.background = rows[:, i0 % g] * (1 - w.T[..., None]) + rows[:, (i0 + 1) % g] * w.T[..., None]
        # shapes: bright, distinct hues (evenly spaced hues, shuffled), sizes 5-14 px, drawn on the torus
        hues = (np.arange(spec.n_shapes) / spec.n_shapes + rng.random()) % 1.0
        rng.shuffle(hues)
        # (centre y, centre x, radius, pixel rows, pixel columns, rgb in [0, 1]) of each, in drawing order
        self.shapes = []
        for k in range(spec.n_shapes):
            r = int(rng.integers(3, 8))
            cy, cx = rng.integers(0, S, size=2)
            yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
            kind = k % 3
            if kind == 0:
                mask = yy ** 2 + xx ** 2 <= r * r  # disc
            elif kind == 1:
                mask = np.ones_like(yy, dtype=bool)  # square
            else:
                mask = (yy + r) >= 2 * np.abs(xx)  # triangle pointing up
            colour = _hsv_to_rgb(np.array(hues[k]), np.array(0.85), np.array(0.95))
            self.shapes.append((int(cy), int(cx), r, (cy + yy[mask]) % S, (cx + xx[mask]) % S, colour))
        self.paint(self.shapes)
        self._ball = (rng.integers(0, S, 2), rng.choice([-3, -2, 2, 3], 2))  # start, velocity (px per frame)
        self._light = rng.integers(0, S, 2)

    def paint(self, shapes):
        """canvas (S, S, 3) uint8 = the background with `shapes` drawn over it in order."""
        img = self.background.copy()
        for *_, ys, xs, colour in shapes:
            img[ys, xs] = colour
        self.canvas = np.round(img * 255).astype(np.uint8)
        # padded by one view on each far edge, so any (y, x) corner in [0, S) is one contiguous slice
        self._padded = np.pad(self.canvas, ((0, self.spec.size), (0, self.spec.size), (0, 0)), mode="wrap")

    def view(self, y, x, n=0):
        """The camera image with its top-left corner at canvas (y, x), at frame time n: (H, W, 3) uint8."""
        V, S = self.spec.size, self.spec.canvas
        y, x = y % S, x % S
        frame = self._padded[y:y + V, x:x + V].copy()
        if self.spec.dynamics:
            # a blinking light (on for 4 frames, off for 4) and a ball moving on the torus (world coordinates)
            if (n // 4) % 2 == 0:
                self._stamp(frame, y, x, self._light, 2, (255, 255, 255))
            p0, vel = self._ball
            self._stamp(frame, y, x, p0 + vel * n, 2, (255, 40, 40))
        if self.spec.marker:
            frame[marker_mask(V)] = (0, 0, 0)  # the agent: a small black cross at the view centre
        return frame

    def _stamp(self, frame, y, x, pos, r, colour):
        """Draws a (2r x 2r) square at world position pos into the view whose corner is (y, x)."""
        S, V = self.spec.canvas, self.spec.size
        py, px = (int(pos[0]) - y) % S, (int(pos[1]) - x) % S  # position relative to the view, on the torus
        if py < V + r and px < V + r:
            frame[max(py - r, 0):max(py + r, 0), max(px - r, 0):max(px + r, 0)] = colour


def marker_mask(size):
    """(size, size) bool: the agent marker's pixels, a 4x4 cross at the view centre (in every frame)."""
    c, m = size // 2, np.zeros((size, size), bool)
    m[c - 2:c + 2, c - 1:c + 1] = m[c - 1:c + 1, c - 2:c + 2] = True
    return m


_WORLDS = OrderedDict()


def get_world(seed, spec=WorldSpec(), cache=512):
    """A least-recently-used cache of worlds: drawing a canvas costs ~10 ms, cutting a view ~us."""
    key = (seed, spec)
    if key in _WORLDS:
        _WORLDS.move_to_end(key)
    else:
        _WORLDS[key] = World(seed, spec)
        if len(_WORLDS) > cache:
            _WORLDS.popitem(last=False)
    return _WORLDS[key]


class WorldPool:
    """The worlds training draws from: `size` seeds from the range, `refresh` of them replaced by new
    seeds per batch, so training sees many worlds while drawing only a few canvases per step."""

    def __init__(self, seeds, rng, size=256, refresh=2):
        self.range, self.refresh = seeds, refresh
        self.seeds = [int(s) for s in rng.integers(seeds[0], seeds[1], size)]

    def step(self, rng):
        for _ in range(self.refresh):
            self.seeds[int(rng.integers(len(self.seeds)))] = int(rng.integers(*self.range))
        return self.seeds


def start_position(world_seed, spec=WorldSpec()):
    """The episode's first camera corner, drawn from the world seed (so the first frame is fixed)."""
    return tuple(int(v) for v in np.random.default_rng([world_seed, 17]).integers(0, spec.canvas, 2))


def resolve_go_back(actions):
    """Action texts (one per chunk) -> the move each chunk makes: 'go back' becomes the opposite of the most
    recent chunk not yet undone (a stack; 'stay' when nothing is left), every other action is its own move."""
    moves, stack = [], []
    for a in actions:
        a = check_action(a)
        if a == "go back":
            moves.append(OPPOSITE[stack.pop()] if stack else "stay")
        else:
            stack.append(a)
            moves.append(a)
    return moves


def trajectory(actions, start, spec=WorldSpec()):
    """Action texts (one per chunk) -> camera corners (N, 2) int64 for N = 1 + len(actions) * K frames.

    'go back' retraces the previous path (resolve_go_back), so n moves followed by n 'go back' chunks walk
    the same path back to the start.
    """
    pos = np.array(start, dtype=np.int64)
    out = [pos.copy()]
    for a in resolve_go_back(actions):
        for _ in range(spec.chunk):
            pos = pos + np.array(MOVES[a]) * spec.speed
            out.append(pos.copy())
    return np.stack(out) % spec.canvas


def torus_distance(a, b, spec=WorldSpec()):
    """Euclidean distance in pixels between camera corners a (..., 2) and b (..., 2) on the torus."""
    d = np.abs(np.asarray(a) - np.asarray(b)) % spec.canvas
    return np.hypot(*np.moveaxis(np.minimum(d, spec.canvas - d), -1, 0))


def render_episode(world_seed, actions, spec=WorldSpec(), start=None, frame_ids=None):
    """The ground truth for any action list: frames (N, H, W, 3) uint8 and positions (N, 2) int64 (y, x).

    frame_ids renders only those frames (positions are still returned for all N).
    """
    world = get_world(world_seed, spec)
    positions = trajectory(actions, start_position(world_seed, spec) if start is None else start, spec)
    ids = range(len(positions)) if frame_ids is None else frame_ids
    frames = np.stack([world.view(positions[n, 0], positions[n, 1], n) for n in ids])
    return frames, positions


# ----------------------------------------------------------------------------- episodes of every kind
KINDS = ("random", "out-and-back", "loop", "loop-twice", "go-back", "triangle", "L")
# the second half walks back over, or again along, the first
REVISIT_KINDS = ("out-and-back", "go-back", "L", "loop-twice")


def make_actions(kind, rng, n=4):
    """Action lists for one episode. n: chunks of the outward leg (random: the whole episode has 2n).

    out-and-back: n chunks away (a path that never crosses itself), then the same path reversed with explicit
    actions; the start is revisited 2n chunks after it was first seen (n >= 2 puts that at least two
    context windows of 2 chunks away). loop: a closed rectangle (e.g. right, down, left, up).
    loop-twice: the loop walked twice; the second lap repeats the first lap's moves in the same order and
    direction (the revisit an out-and-back return, which walks the path backwards, is not).
    go-back: n moves, then n 'go back' chunks (the planning task).
    triangle: A to B (n chunks along one axis), B to C (n along the other), then back to A on the diagonal
    as a staircase (4n chunks); its first chunk retraces the end of B-C, its last chunk the start of A-B.
    L: n chunks along one axis, n along the other, then the same L back (2 n chunks each way).
    """
    dirs = ["go left", "go right", "go up", "go down"]
    if kind == "random":
        p = [.2, .2, .2, .2, .1, .1]
        return [str(a) for a in rng.choice(dirs + ["stay", "go back"], size=2 * n, p=p)]
    # the outward leg is a monotone staircase (each chunk goes one of two fixed directions), so it never
    # crosses itself: everything it shows is new, and the return revisits only the outward leg
    pair = [str(rng.choice(["go left", "go right"])), str(rng.choice(["go up", "go down"]))]
    out = [pair[int(k)] for k in rng.integers(0, 2, size=n)]
    if kind == "out-and-back":
        return out + [OPPOSITE[a] for a in reversed(out)]
    if kind == "go-back":
        return out + ["go back"] * n
    if kind in ("triangle", "L"):
        h, v = str(rng.choice(["go left", "go right"])), str(rng.choice(["go up", "go down"]))
        if kind == "L":
            out = [h] * n + [v] * n
            return out + [OPPOSITE[a] for a in reversed(out)]
        return [h] * n + [v] * n + [OPPOSITE[v], OPPOSITE[h]] * n  # the diagonal back ends along A-B
    if kind in ("loop", "loop-twice"):
        h, v = rng.choice(["go left", "go right"]), rng.choice(["go up", "go down"])
        m = max(1, n // 2)
        legs = [h, v, OPPOSITE[h], OPPOSITE[v]] if rng.random() < 0.5 else [v, h, OPPOSITE[v], OPPOSITE[h]]
        lap = [str(a) for a in np.repeat(legs, m)]
        return lap * 2 if kind == "loop-twice" else lap
    raise ValueError(f"unknown trajectory kind {kind!r}; known kinds: {list(KINDS)}")


# ----------------------------------------------------------------------------- training items
def sample_batch(rng, seeds, batch, spec=WorldSpec(), n_ctx=None, kinds=("random",), history=4):
    """A batch of (context, action, target) items from short episodes in worlds drawn from `seeds`
    (a [lo, hi) range, or a list of seeds such as WorldPool.seeds).

    Every item of one batch has the same number of context frames f_p, drawn in 0..K unless given, as
    the paper trains with mixed lengths; f_g = K target frames. f_p = 0 (our choice) gives a clip of two
    whole chunks with the null action and no context: the shape of the TEMP-LoRA fast loss, so that loss
    stays in the slow model's training distribution.
    Returns context (B, f_p, H, W, 3) uint8, tokens (B, L) int64, target (B, f_g, H, W, 3) uint8.
    """
    K = spec.chunk
    f_p = int(rng.integers(0, K + 1)) if n_ctx is None else n_ctx
    f_g = K if f_p > 0 else 2 * K
    ctx, tok, tgt = [], [], []
    for _ in range(batch):
        seed = int(rng.choice(seeds)) if isinstance(seeds, list) else int(rng.integers(seeds[0], seeds[1]))
        actions = make_actions(str(rng.choice(kinds)), rng, n=history // 2)
        i = int(rng.integers(0, len(actions)))  # predict chunk i from the end of chunk i - 1
        start = tuple(int(v) for v in rng.integers(0, spec.canvas, 2))
        end = (i + 1) * K + 1  # one past chunk i's last frame
        ids = list(range(max(end - f_p - f_g, 0), end))
        frames, _ = render_episode(seed, actions[:i + 1], spec, start=start, frame_ids=ids)
        if len(ids) < f_p + f_g:  # before chunk 0 there is only the start frame: repeat it (our choice)
            frames = np.concatenate([frames[:1]] * (f_p + f_g - len(ids)) + [frames])
        ctx.append(frames[:f_p])
        tgt.append(frames[f_p:])
        tok.append(tokenize(actions[i] if f_p > 0 else NULL_ACTION))
    return np.stack(ctx), np.array(tok, dtype=np.int64), np.stack(tgt)


def sample_episodes(rng, seeds, n, spec=WorldSpec(), kinds=("out-and-back", "go-back"), out_chunks=4):
    """n whole episodes for the slow-fast loop (Algorithm 1b), of `kinds` in turn, in worlds drawn from
    `seeds` (a list): [(frames (1 + I K, H, W, 3) uint8, I actions)]. By default half out-and-back and half
    "go back" (our choice: the kinds where memory pays, so the slow weights learn to retrace a path they
    can only know from the fast weights)."""
    episodes = []
    for e in range(n):
        actions = make_actions(kinds[e % len(kinds)], rng, n=out_chunks)
        frames, _ = render_episode(int(seeds[rng.integers(len(seeds))]), actions, spec)
        episodes.append((frames, actions))
    return episodes


# ----------------------------------------------------------------------------- what one chunk keeps in view
def wrap_offset(d, spec=WorldSpec()):
    """Camera corner differences (..., 2) on the torus -> the short way round, in (-S / 2, S / 2]."""
    S = spec.canvas
    return (np.asarray(d) + S // 2 - 1) % S - S // 2 + 1


def known_region(offset, spec=WorldSpec()):
    """(H, W) bool: the pixels of a view whose place was already in the view `offset` = (dy, dx) pixels
    before it (the last context frame), the agent marker left out of both. A static world shows them as they
    were:
        view_new[y, x] = view_last[y + dy, x + dx]   wherever 0 <= y + dy < H and 0 <= x + dx < W."""
    V, (dy, dx) = spec.size, (int(v) for v in offset)
    y, x = np.mgrid[:V, :V]
    sy, sx = y + dy, x + dx
    inside = (sy >= 0) & (sy < V) & (sx >= 0) & (sx < V)
    marker = marker_mask(V)
    return inside & ~marker & ~marker[sy.clip(0, V - 1), sx.clip(0, V - 1)]


def shift_oracle(last, offset, spec=WorldSpec()):
    """The view `offset` pixels on from `last` (H, W, 3) uint8 by a model that keeps exactly what it has
    seen and knows nothing new: the known region shifted, the incoming strip (and the spots the marker hid)
    a flat colour, the last frame's mean; the marker where it always is."""
    V, (dy, dx) = spec.size, (int(v) for v in offset)
    out = np.empty_like(last)
    out[:] = last.reshape(-1, 3).mean(0).round().astype(np.uint8)
    known = known_region(offset, spec)
    y, x = np.nonzero(known)
    out[y, x] = last[y + dy, x + dx]
    out[marker_mask(V)] = last[marker_mask(V)]
    return out


def chunk_items(seeds, n, spec=WorldSpec(), seed=0):
    """n single-chunk test items on worlds of the [lo, hi) range `seeds`: the context is the previous chunk
    (K frames), then one action that moves the camera and its K frames. Fixed by `seed`. Returns
    dict(context (n, K, H, W, 3), tokens (n, L), target (n, K, H, W, 3), known (n, K, H, W) bool
    (known_region of each target frame from the last context frame), oracle (n, K, H, W, 3) (shift_oracle)).
    """
    rng, K = np.random.default_rng([seed, 4242]), spec.chunk
    moves = [a for a in MOVES if a != "stay"]
    items = dict(context=[], tokens=[], target=[], known=[], oracle=[])
    for _ in range(n):
        # any chunk before, a move to predict
        actions = [str(rng.choice(list(MOVES))), str(rng.choice(moves))]
        start = tuple(int(v) for v in rng.integers(0, spec.canvas, 2))
        frames, positions = render_episode(int(rng.integers(*seeds)), actions, spec, start=start)
        offsets = wrap_offset(positions[K + 1:] - positions[K], spec)  # (K, 2) from the last context frame
        items["context"].append(frames[1:K + 1])
        items["target"].append(frames[K + 1:])
        items["tokens"].append(tokenize(actions[1]))
        items["known"].append(np.stack([known_region(d, spec) for d in offsets]))
        items["oracle"].append(np.stack([shift_oracle(frames[K], d, spec) for d in offsets]))
    return {k: np.array(v) for k, v in items.items()}


# ----------------------------------------------------------------------------- preview and benchmark
def preview(spec=WorldSpec(), seed=0, scale=3):
    """Two episodes of every trajectory kind side by side, the views scaled up: (N, H', W', 3) uint8 frames
    (`python video.py --preview out/world.gif` writes them as a GIF)."""
    rng = np.random.default_rng(seed)
    cols = []
    for kind in KINDS:
        for j in range(2):
            frames, _ = render_episode(1000 + 10 * len(cols), make_actions(kind, rng), spec)
            cols.append(frames)
    n = max(len(c) for c in cols)
    cols = [np.concatenate([c, np.repeat(c[-1:], n - len(c), 0)]) for c in cols]  # pad by holding the end
    grid = np.concatenate([np.pad(c, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=255) for c in cols], 2)
    return grid.repeat(scale, 1).repeat(scale, 2)


def bench(spec=WorldSpec(), n_frames=20000):
    """Frames per second of render_episode on one core (worlds cached, as in training)."""
    rng = np.random.default_rng(0)
    for s in range(8):
        get_world(s, spec)
    t0, done = time.perf_counter(), 0
    while done < n_frames:
        frames, _ = render_episode(done % 8, make_actions("random", rng), spec)
        done += len(frames)
    fps = done / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for s in range(100, 120):
        World(s, spec)
    new_world_ms = (time.perf_counter() - t0) / 20 * 1e3
    print(f"render: {fps:,.0f} frames/s at {spec.size}x{spec.size}; new world: {new_world_ms:.1f} ms")
    return fps


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="The action world: time the renderer (python video.py --preview "
                                            "writes a GIF of it).")
    p.add_argument("--bench", action="store_true", help="measure rendering frames per second on one core")
    p.add_argument("--size", type=int, default=32, help="view size in pixels (default 32)")
    p.add_argument("--dynamics", action="store_true", help="add the bouncing ball and the blinking light")
    args = p.parse_args()
    if args.bench:
        bench(WorldSpec(size=args.size, canvas=8 * args.size, dynamics=args.dynamics))
    else:
        p.print_help()
