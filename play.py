"""Play in the world model: drive the camera with the arrow keys and watch every chunk dreamed twice, by the model
with no memory and by the model with memory (a TEMP-LoRA of fast weights that learns while you play), beside the truth.

    python play.py --ckpt checkpoints/laptop.pt [--sample-steps 10] [--port 8000] [--host 127.0.0.1]
    python play.py --ckpt runs/mine/ckpt.pt --data my_videos [--video pan3.mp4]     # start from your own video
        then open the address it prints; /?auto=go right,go right,go left plays those actions by itself
        (and &view=memory then opens the memory view)

Each action is one chunk: `sfvgen.generate_long` continues the session's two memories by one action, one with fast
learning off (the slow model alone: "no memory") and one with it on (a TEMP-LoRA copy of the model, `sfvgen.with_lora`:
"with memory"), both from seed cfg.seed, so the frames are exactly those of one generate_long call with all the
actions (continuing with memory= is exact). The two panels are computed side by side in two threads (main() gives
torch half the CPU cores for each; --panel-threads 1: one after the other, no memory first), and the page shows a panel
as soon as it is done (GET /api/progress hands its frames over while the other still works). The sampler takes the
checkpoint's steps unless --sample-steps says fewer (faster; the frames then differ from a 20-step generate.py run).

The truth: the simulator (data.render_episode) in a built-in world; with --data, your video's frames while the actions
follow its annotation (from the first action that differs on, the video has no frame of where the camera is: the
panel says so and nothing is scored; the camera poses follow from the actions, data.trajectory). Per chunk the page
shows each model panel's PSNR against the truth and, on a revisit, its consistency with the first visit: the mean
PSNR of the chunk's frames at a camera pose first seen more than two chunks earlier (metrics.revisit_pairs with
min_gap = 2 K, the project's one definition of a revisit) against the same panel's frames of that first visit
(SRC-PSNR, per chunk), with the two pictures side by side. Differences under SPREAD_DB are not coloured.

The memory view (GET /api/memory-view; a button on the page, so no action waits for it) shows what the fast weights
hold: a window the fast rule learned (the last two chunks, sfvgen.local_window: no context, the null action) is noised
to the middle noise level with fixed noise and denoised in one pass by Phi + Theta (with memory) and by Phi + a fresh
LoRA (which is Phi alone: a fresh LoRA's B is zero), from the same noise. The closer the first is to the window, the
more of it Theta holds; the same probe on older windows of the episode shows how quickly that fades.

Controls: reset; the world seed; the fast-learning setting (fast_steps, lora_targets; a change resets, after asking);
replay (the server sends the episode's frames, so it works after a reload); a GIF (video.panels, with labels); the
memory saved or loaded in generate.py's --memory-out / --memory-in format (result["memory"], with its world seed). A
loaded memory continues the with-memory panel; the no-memory panel continues from the same last chunk and noise state
with no fast weights (a paired control), and the truth from the file's world seed (the page's when it has none; your
video with --data). Frames from before the load are not in the file: its actions are listed without scores, and
revisits count only first visits generated since.

Sessions: a random id in a cookie, made by the first request that changes something (step, reset, memory load); a
request that only reads makes none and evicts none. At most max_sessions are kept: a new one takes the place of the
least recently used session idle for idle_seconds (5 minutes), never of one used since (503 instead). A request for
an episode that is gone says so (410) instead of silently starting a new one. Chunks are made one at a time over the
server (the slow model is shared); a client that goes away mid-chunk costs nothing but the chunk, which is kept.

The server is the standard library's http.server (nothing added to the dependencies), meant for one machine: it binds
127.0.0.1 unless told otherwise and refuses what it does not know with a one-line JSON error {"error": "..."}:
    400  an unknown action, setting or seed; a file that is not a memory of this model; the episode at max_chunks;
         JSON nested deeper than JSON_DEPTH; a download or memory view before any chunk (nothing is made for it);
         a malformed request line; a Host but 127.0.0.1 / localhost (on a loopback server: no DNS rebinding)
    404  unknown path     409  this session is busy with a chunk     410  the episode expired     501  not GET or POST
    411  POST without Content-Length        413  body over the limit (4 KiB; 8 MiB for a memory file)
    415  POST body of the wrong Content-Type (application/json; application/octet-stream for a memory file)
    503  every session place taken by a player active in the last idle_seconds
    and http.server's own: 414 a request line over 64 KiB, 431 too many or too long headers, 505 HTTP/2 or later

API (JSON but the downloads): GET /api/state, /api/progress, /api/frames, /api/memory-view; POST /api/step
{"action": "go right"}; POST /api/reset {"seed": 200000, "fast_steps": 2, "lora_targets": "temporal"} (each optional);
GET /api/gif; GET /api/memory; POST /api/memory (the .pt file as the body).
"""
import argparse
import base64
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace
from http import cookies
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import imageio.v3 as iio
import numpy as np
import torch

import cli
import data
import metrics
import sfvgen
import video

FAST_STEPS = (1, 2, 4, 8, 16)          # the fast-learning steps per chunk a player may pick
MAX_SEED = 2 ** 31 - 1                 # world seeds: any integer in 0 .. MAX_SEED
JSON_LIMIT = 4 * 1024                  # bytes of a JSON request body
JSON_DEPTH = 4                         # nesting levels of a JSON body (ours are flat objects: one level)
MEMORY_LIMIT = 8 * 2 ** 20             # bytes of an uploaded memory file (tiny: 0.7 MB; 3.3 MB with LoRA on all layers)
IDLE_SECONDS = 300                     # a session unused this long may give its place to a new player
SPREAD_DB = 0.5                        # PSNR differences below this are within the run-to-run spread: not coloured
PROBE_AGES = (0, 1, 2, 4, 8, 16, 32)   # the memory view's windows: learned this many chunks before the last
COOKIE = "play_session"
PANELS = ("plain", "lora", "truth")    # no memory (fast learning off), with memory (TEMP-LoRA), the truth
GIF_LABELS = ("no memory", "with memory", "truth")  # video.panels' font: capitals, '-' and '/'
EXPIRED = ("your episode expired: it was idle for a while and its place went to another player, or the server "
           "restarted; a new episode starts from here")


class Refused(Exception):
    """A request the server does not accept: an HTTP status and a one-line reason."""
    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def png64(frame):
    """(H, W, 3) uint8 -> base64 PNG text for a data: URL."""
    return base64.b64encode(iio.imwrite("<bytes>", frame, extension=".png")).decode()


def strip64(frames):
    """Frames (N, H, W, 3) side by side, a white line between them, as base64 PNG (the memory view's rows)."""
    sep = np.full_like(frames[0][:, :1], 255)
    return png64(np.concatenate([x for f in frames for x in (f, sep)][:-1], axis=1))


def nan_to_none(x):
    return None if x is None or not np.isfinite(x) else round(float(x), 2)


def json_depth(blob):
    """How deeply [ and { nest in JSON bytes (brackets inside strings do not count). Checked before parsing:
    json.loads recurses once per level and fails with RecursionError, not a plain message, at about a thousand."""
    depth = deepest = 0
    in_string = escaped = False
    for b in blob:
        if in_string:  # inside a string only an unescaped quote matters
            if escaped:
                escaped = False
            elif b == ord("\\"):
                escaped = True
            elif b == ord('"'):
                in_string = False
        elif b == ord('"'):
            in_string = True
        elif b in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif b in b"]}":
            depth -= 1
    return deepest


# ----------------------------------------------------------------------------- one player's episode
class Session:
    """The episode of one player: world seed (None: your video), fast-learning setting, the two memories, the frames.

    frames[p] holds panel p's frames of global indices base .. base + len - 1 (base = 0 from a reset: the start frame
    first; after a loaded memory, the last frame the file holds). Made by App.create (stored) or for a read-only
    request without a session (App.state of a fresh episode, stored nowhere)."""

    def __init__(self, app, sid=None):
        self.sid, self.lock = sid, threading.Lock()  # the lock: one request at a time changes the episode (else 409)
        self.last_used = time.time()
        self.stage, self.started, self.last_seconds, self.partial = "idle", None, None, {}
        self.lora_model, self.lora_targets = None, None  # built at the first chunk (a read-only request needs none)
        self.reset(app, app.default_seed, app.cfg.fast_steps, app.cfg.lora_targets)

    def reset(self, app, seed, fast_steps, targets):
        self.seed, self.cfg = seed, replace(app.cfg, fast_steps=fast_steps, lora_targets=targets)
        self.actions, self.base, self.rows, self.loaded = [], 0, [], None
        first = app.truth(self, [], [0])[0]
        # both memories start as generate_long starts one (Memory.start): continuing them is one call with all actions
        start = sfvgen.Memory.start(first[0], self.cfg.seed, app.device, app.model.autoencoder)
        self.memory = {"plain": start, "lora": start}
        self.frames = {"plain": first, "lora": first}

    def lora(self, app):
        """This session's copy of the slow model with a TEMP-LoRA of its targets (the fast weights live in the memory)."""
        if self.lora_targets != self.cfg.lora_targets:
            self.lora_model, self.lora_targets = sfvgen.with_lora(app.model, self.cfg), self.cfg.lora_targets
        return self.lora_model

    def settings(self):
        return dict(seed=self.seed, fast_steps=self.cfg.fast_steps, lora_targets=self.cfg.lora_targets)


class App:
    """The shared model, the sessions, and what every request does."""

    def __init__(self, model, cfg, max_chunks=64, max_sessions=8, idle_seconds=IDLE_SECONDS, episode=None, panel_threads=2):
        self.model, self.cfg, self.episode = model, cfg, episode  # episode: your video (video.Episode) or None
        self.device = next(model.parameters()).device
        self.diffusion = sfvgen.Diffusion(cfg, self.device)
        self.max_chunks, self.max_sessions, self.idle_seconds = max_chunks, max_sessions, idle_seconds
        self.default_seed = cfg.test_seeds[0] if episode is None else None
        self.sessions, self.sessions_lock = {}, threading.Lock()
        # one chunk at a time over the server: the slow model is shared, and chunks side by side only slow each other;
        # within a chunk the two panels run side by side (they share no tensors), or one after the other (panel_threads=1)
        self.compute = threading.Lock()
        self.panels = ThreadPoolExecutor(panel_threads, thread_name_prefix="panel")
        self.lora_keys = {}  # LoRA targets -> the state-dict keys of their fast weights (to read a memory file's)

    # ------------------------------------------------------------------ sessions
    def find(self, sid):
        """The stored session with id `sid` (its last use now), or None."""
        with self.sessions_lock:
            s = self.sessions.get(sid)
            if s is not None:
                s.last_used = time.time()
            return s

    def create(self):
        """A new stored session. At max_sessions it takes the place of the least recently used session idle for
        idle_seconds; a session used since keeps its place (503 for the newcomer)."""
        with self.sessions_lock:
            if len(self.sessions) >= self.max_sessions:
                now = time.time()
                idle = [s for s in self.sessions.values() if now - s.last_used > self.idle_seconds and not s.lock.locked()]
                if not idle:
                    minutes = max(1, round(self.idle_seconds / 60))
                    raise Refused(503, f"all {self.max_sessions} places are taken by players active in the last {minutes} "
                                       f"minute{'s' * (minutes > 1)}; try again in a few minutes")
                del self.sessions[min(idle, key=lambda s: s.last_used).sid]
            s = Session(self, secrets.token_hex(16))
            self.sessions[s.sid] = s
            return s

    # ------------------------------------------------------------------ the truth
    def truth(self, s, actions, ids):
        """The truth of frames `ids` (global indices) of an episode with `actions`: (frames (n, H, W, 3) uint8, grey
        where there is none; has (n,) bool; camera poses (N, 2) of all N = 1 + len(actions) K frames)."""
        ids, spec = list(ids), s.cfg.world()
        if s.seed is not None:  # the simulator renders any actions
            frames, positions = data.render_episode(s.seed, actions, spec, frame_ids=ids)
            return frames, np.ones(len(ids), bool), positions
        have = self.video_frames(actions)
        has = np.array([i < have for i in ids], bool)
        grey = np.full((spec.size, spec.size, 3), 128, np.uint8)
        frames = np.stack([self.episode.frames[i] if ok else grey for i, ok in zip(ids, has)])
        return frames, has, data.trajectory(actions, (0, 0), spec)

    def video_frames(self, actions):
        """How many of your video's frames are the truth of `actions`: those of the chunks before the first action
        that differs from its annotation (after it, the camera is where the video never went)."""
        n = 0
        while n < min(len(actions), len(self.episode.actions)) and actions[n] == self.episode.actions[n]:
            n += 1
        return 1 + n * self.cfg.chunk

    def next_annotated(self, s):
        """Your video's action for the next chunk while the episode still follows it, else None."""
        n = len(s.actions)
        if s.seed is not None or n >= len(self.episode.actions) or self.video_frames(s.actions) < 1 + n * s.cfg.chunk:
            return None
        return self.episode.actions[n]

    # ------------------------------------------------------------------ checks made before any session is touched
    def check(self, method, path, body):
        """The request's own refusals, made before a session is made or touched: a refused request changes nothing.
        Returns what the request carries, checked: an action, the settings to change, or a memory file's content."""
        if path == "/api/step":
            if not isinstance(body, dict) or set(body) != {"action"}:
                raise Refused(400, 'expected {"action": ...} and nothing else; actions: ' + ", ".join(data.ACTIONS))
            if body["action"] not in data.ACTIONS:
                raise Refused(400, f"unknown action {body['action']!r}; accepted: {', '.join(data.ACTIONS)}")
            return body["action"]
        if path == "/api/reset":
            return self.check_settings(body)
        if path == "/api/memory" and method == "POST":
            return self.read_memory(body)
        return None

    def check_settings(self, body):
        known = ("seed", "fast_steps", "lora_targets")
        unknown = [k for k in body if k not in known]
        if unknown:
            raise Refused(400, f"unknown setting {unknown[0]!r}; accepted: {', '.join(known)}")
        if "seed" in body:
            seed = body["seed"]
            if self.episode is not None:
                raise Refused(400, f"this server plays your video {self.episode.name}: there is no world seed to choose")
            if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
                raise Refused(400, f"seed {seed!r}: an integer in 0..{MAX_SEED} (test worlds: "
                                   f"{self.cfg.test_seeds[0]}..{self.cfg.test_seeds[1] - 1})")
        steps = body.get("fast_steps", FAST_STEPS[0])
        if not isinstance(steps, int) or isinstance(steps, bool) or steps not in FAST_STEPS:
            raise Refused(400, f"fast_steps {steps!r}: one of {list(FAST_STEPS)}")
        targets = body.get("lora_targets", sfvgen.LORA_TARGETS[0])
        if not isinstance(targets, str) or targets not in sfvgen.LORA_TARGETS:
            raise Refused(400, f"lora_targets {targets!r}: one of {list(sfvgen.LORA_TARGETS)}")
        return body

    def read_memory(self, blob):
        """A memory file (generate.py --memory-out, or this page's save) checked against this model before anything
        changes: (Memory, its LoRA targets, a TEMP-LoRA model holding its fast weights). It is read with
        torch.load(weights_only=True) (sfvgen.load_checkpoint): a file cannot run code."""
        refuse = lambda why: Refused(400, "memory file: " + why)  # noqa: E731
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "memory.pt")
            with open(path, "wb") as f:
                f.write(blob)
            try:  # sfvgen says what is wrong with the file in plain words (and never runs what is in it)
                mem = sfvgen.Memory.load(path)
            except ValueError as e:
                raise refuse(str(e).replace(path + ": ", "")) from None
        cfg = self.cfg
        if any(a not in data.ACTIONS for a in mem.actions):
            raise refuse(f"'actions' must be actions from {list(data.ACTIONS)}")
        if not 0 < mem.chunk < self.max_chunks:
            raise refuse(f"it holds {mem.chunk} chunks; episodes here are 1..{self.max_chunks - 1} chunks before the next")
        shape = (1, cfg.latent_channels or 3, *(2 * [cfg.size // 4 if cfg.latent_channels else cfg.size]))
        if any(not h.is_floating_point() or (h.shape[0], *h.shape[2:]) != shape for h in mem.history):
            theirs = tuple(mem.history[-1].shape[2:])
            raise refuse(f"saved with another model: its frames are (C, H, W) = {theirs}, this model's {shape[1:]}")
        if mem.world_seed is not None and not 0 <= mem.world_seed <= MAX_SEED:
            raise refuse(f"world_seed {mem.world_seed!r} is not in 0..{MAX_SEED}")
        for targets in sfvgen.LORA_TARGETS:  # the LoRA targets follow from the file's keys
            if targets not in self.lora_keys:
                self.lora_keys[targets] = set(sfvgen.lora_state(sfvgen.with_lora(self.model, replace(cfg, lora_targets=targets))))
            if set(mem.lora) == self.lora_keys[targets]:
                break
        else:
            raise refuse(f"its LoRA layers are not those of any of {list(sfvgen.LORA_TARGETS)} on this model")
        model = sfvgen.with_lora(self.model, replace(cfg, lora_targets=targets))
        try:  # the checks generate_long makes at the next chunk, made now, before the episode is replaced
            sfvgen.load_lora_state(model, mem.lora)
            torch.optim.Adam(sfvgen.lora_parameters(model), lr=cfg.fast_lr).load_state_dict(mem.copy().opt)
            torch.Generator().set_state(mem.gen)
            torch.Generator().set_state(mem.fast_gen)
        except (ValueError, TypeError, KeyError, RuntimeError, IndexError):
            raise refuse("its fast weights or optimizer do not fit this model (saved from another checkpoint?)") from None
        return mem, targets, model

    # ------------------------------------------------------------------ requests
    def state(self, s, expired=False):
        """Everything the page shows, with the current frame of each panel (no chunk frames)."""
        n = 1 + len(s.actions) * s.cfg.chunk
        truth, has, _ = self.truth(s, s.actions, [n - 1])
        last = s.rows[-1] if s.rows else None
        return dict(settings=s.settings(), chunk=s.cfg.chunk, chunks=len(s.actions), max_chunks=self.max_chunks,
                    rows=s.rows, loaded=s.loaded, summary=self.summary(s), expired=expired, spread_db=SPREAD_DB,
                    source=self.source(s), next_annotated=self.next_annotated(s),
                    revisit=self.revisit_view(s, last) if last and last.get("revisit_frames") else None,
                    current={"plain": png64(s.frames["plain"][-1]), "lora": png64(s.frames["lora"][-1]),
                             "truth": png64(truth[0]) if has[0] else None},
                    sample_steps=s.cfg.sample_steps, max_seed=MAX_SEED,
                    accepted=dict(actions=list(data.ACTIONS), fast_steps=list(FAST_STEPS),
                                  lora_targets=list(sfvgen.LORA_TARGETS), seed=[0, MAX_SEED]))

    def source(self, s):
        if s.seed is not None:
            return dict(kind="world", seed=s.seed, test_seeds=list(self.cfg.test_seeds))
        return dict(kind="video", name=self.episode.name, actions=list(self.episode.actions))

    def reset(self, s, settings, expired=False):
        current = s.settings()
        s.reset(self, settings.get("seed", current["seed"]), settings.get("fast_steps", current["fast_steps"]),
                settings.get("lora_targets", current["lora_targets"]))
        return self.state(s, expired)

    def step(self, s, a):
        """One action: one chunk in both model panels, the truth, and the chunk's scores."""
        if len(s.actions) >= self.max_chunks:
            raise Refused(400, f"the episode is at its limit of {self.max_chunks} chunks; reset to play on")
        K = s.cfg.chunk
        actions = s.actions + [a]
        n = 1 + len(actions) * K  # global frames after this chunk: the new ones are n - K .. n - 1
        truth, has, positions = self.truth(s, actions, range(n - K, n))
        s.partial = {"truth": [png64(f) if ok else None for f, ok in zip(truth, has)]}
        s.stage = "waiting for another player's chunk"
        t0 = time.perf_counter()
        with self.compute:
            s.stage = "dreaming the chunk in both panels"
            out = self.both_panels(s, a)
        seconds = time.perf_counter() - t0
        # commit only when both panels are done: a failed chunk leaves the session as it was
        for p in ("plain", "lora"):
            s.frames[p] = np.concatenate([s.frames[p], out[p]["frames"]])
            s.memory[p] = out[p]["memory"]
        s.actions = actions
        losses = out["lora"]["fast_losses"]
        row = dict(index=len(actions), action=a, move=data.resolve_go_back(actions)[-1], truth=bool(has.all()),
                   seconds=dict(plain=round(out["plain"]["seconds"], 2), lora=round(out["lora"]["seconds"], 2),
                                both=round(seconds, 2)),
                   fast_loss=nan_to_none(losses[-1]) if losses else None,
                   psnr={p: nan_to_none(metrics.psnr(s.frames[p][-K:], truth)) if has.all() else None
                         for p in ("plain", "lora")},
                   **self.revisits(s, positions, n - K, n))
        s.rows.append(row)
        return dict(row=row, summary=self.summary(s), chunks=len(actions), next_annotated=self.next_annotated(s),
                    revisit=self.revisit_view(s, row) if row["revisit_frames"] else None,
                    frames={"plain": [png64(f) for f in out["plain"]["frames"]],
                            "lora": [png64(f) for f in out["lora"]["frames"]], "truth": s.partial["truth"]})

    def both_panels(self, s, a):
        """The chunk of action `a` in both model panels, side by side in two threads (or one after the other, no
        memory first); each panel's frames go to s.partial as soon as it is done (the page shows them while the other
        still works)."""
        models = {"plain": self.model, "lora": s.lora(self)}  # the copy for the fast weights made here, not beside a chunk

        def one(p):
            t0 = time.perf_counter()
            out = sfvgen.generate_long(models[p], self.diffusion, s.cfg, None, [a], fast_learning=p == "lora",
                                       seed=s.cfg.seed, memory=s.memory[p])
            out["seconds"] = time.perf_counter() - t0
            s.partial[p] = [png64(f) for f in out["frames"]]
            if p == "plain" and "lora" not in s.partial:
                s.stage = "with memory: sampling, then fast learning (no memory is done)"
            return out
        jobs = {p: self.panels.submit(one, p) for p in ("plain", "lora")}
        wait(jobs.values())  # both, even when one fails: the next chunk must not start beside a running one
        return {p: job.result() for p, job in jobs.items()}

    def revisits(self, s, positions, start, end):
        """Consistency of chunk start .. end - 1 with the first visits: its frames j of metrics.revisit_pairs (the
        revisits SRC scores, more than two chunks after the first visit i), PSNR(generated j, generated i) per panel,
        averaged (SRC-PSNR restricted to this chunk). Only first visits this session generated count."""
        pairs = [(i, j) for i, j in metrics.revisit_pairs(positions[:end], min_gap=2 * s.cfg.chunk)
                 if j >= start and i >= s.base]
        if not pairs:
            return dict(revisit_frames=0, consistency={"plain": None, "lora": None})
        first = np.array([i for i, _ in pairs]) - s.base
        later = np.array([j for _, j in pairs]) - s.base
        return dict(revisit_frames=len(pairs), pairs=[[int(i), int(j)] for i, j in pairs],
                    consistency={p: nan_to_none(np.mean(metrics.psnr_per_frame(s.frames[p][later], s.frames[p][first])))
                                 for p in ("plain", "lora")})

    def revisit_view(self, s, row):
        """The picture behind a chunk's consistency: its last revisit frame j and the first visit i of that place,
        in every panel ({panel: [frame i, frame j]}, base64 PNG; the truth's None where there is none)."""
        i, j = row["pairs"][-1]
        truth, has, _ = self.truth(s, s.actions[:row["index"]], [i, j])
        view = {p: [png64(s.frames[p][i - s.base]), png64(s.frames[p][j - s.base])] for p in ("plain", "lora")}
        view["truth"] = [png64(f) if ok else None for f, ok in zip(truth, has)]
        return dict(first=i, now=j, index=row["index"], frames=view)

    def summary(self, s):
        """Episode means: PSNR over all chunks, consistency over all revisit frames (each chunk weighted by them)."""
        out = {}
        for p in ("plain", "lora"):
            ps = [r["psnr"][p] for r in s.rows if r["psnr"][p] is not None]
            cs = [(r["consistency"][p], r["revisit_frames"]) for r in s.rows if r["consistency"][p] is not None]
            out[p] = dict(psnr=nan_to_none(np.mean(ps)) if ps else None,
                          consistency=nan_to_none(sum(c * w for c, w in cs) / sum(w for _, w in cs)) if cs else None)
        return out

    def progress(self, s):
        """The chunk in flight: its stage, elapsed and expected seconds, and the frames of the panels already done."""
        if s is None:  # no episode yet: nothing in flight (and nothing made: a poll is only a read)
            return dict(busy=False, stage="idle", chunks=0, elapsed=0.0, expected=None, partial={})
        busy = s.lock.locked()
        return dict(busy=busy, stage=s.stage if busy else "idle", chunks=len(s.actions),
                    elapsed=round(time.time() - s.started, 1) if busy and s.started else 0.0,
                    expected=s.last_seconds, partial=dict(s.partial) if busy else {})

    def all_frames(self, s):
        """Every frame of the episode in every panel (base64 PNG; the truth's None where there is none): the replay."""
        truth, has, _ = self.truth(s, s.actions, range(s.base, 1 + len(s.actions) * s.cfg.chunk))
        return dict(first=s.base, chunk=s.cfg.chunk,
                    frames={"plain": [png64(f) for f in s.frames["plain"]], "lora": [png64(f) for f in s.frames["lora"]],
                            "truth": [png64(f) if ok else None for f, ok in zip(truth, has)]})

    def gif(self, s):
        """The episode so far, no memory | with memory | truth with their labels (video.panels), as GIF bytes: PSNR
        bars where every frame has its truth, the revisit frames marked yellow."""
        truth, has, _ = self.truth(s, s.actions, range(s.base, 1 + len(s.actions) * s.cfg.chunk))
        revisit = np.zeros(len(truth), bool)
        revisit[[j - s.base for r in s.rows for _, j in r.get("pairs", [])]] = True
        frames = video.panels(s.frames["plain"], s.frames["lora"], truth, truth=truth if has.all() else None,
                              revisit=revisit, labels=GIF_LABELS)
        return iio.imwrite("<bytes>", frames, extension=".gif", duration=125, loop=0)

    @torch.no_grad()
    def memory_view(self, s):
        """What the fast weights hold (see the module docstring): for the last window the fast rule learned and for
        older ones (PROBE_AGES chunks before it), the window, its noised copy, and one denoising pass with memory
        (Phi + Theta) and with a fresh LoRA (Phi alone), from the same noise; PSNR of each against the window."""
        mem, K, ae = s.memory["lora"], s.cfg.chunk, self.model.autoencoder
        if mem.chunk == 0:
            raise Refused(400, "no fast weights yet: play at least one chunk first")
        n, t = len(s.actions), self.diffusion.T // 2  # the middle noise level
        windows = []  # (age, chunks, the clean window (1, N, C, h, w))
        for age in sorted(set(PROBE_AGES) | {n - 1}):  # and the first window of the episode
            c = n - age  # the window learned after chunk c: chunks c - 1 and c (chunk 0 is the start frame)
            lo, hi = (0 if c == 1 else 1 + (c - 2) * K), 1 + c * K
            if age == 0:  # exactly what the fast rule learned last
                windows.append((age, [c - 1, c], sfvgen.local_window([h.to(self.device) for h in mem.history], None)[1]))
            elif c >= 1 and lo >= s.base:  # older windows from the panel's frames (a latent model re-encodes them)
                windows.append((age, [c - 1, c], sfvgen.to_model(s.frames["lora"][None, lo - s.base:hi - s.base], self.device, ae)))
        noised = [self.diffusion.q_sample(x, torch.tensor(t, device=self.device),
                                          torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(self.device))
                  for _, _, x in windows]

        models = {"plain": self.model, "lora": s.lora(self)}
        sfvgen.load_lora_state(models["lora"], mem.lora)  # Theta as the memory holds it (generate_long loads it too)

        def denoise(p):  # the fast loss's view: all frames at noise level t, no context, the null action
            model = models[p].eval()
            out = []
            with torch.no_grad():  # grad mode is per thread: this runs in a panel thread
                for x_t in noised:
                    pred = model(x_t, torch.full(x_t.shape[:2], t, device=self.device), sfvgen.null_tokens(1, self.device), 0)
                    x0 = self.diffusion.x0_eps(x_t, torch.tensor(t, device=self.device), pred.float())[0]
                    out.append(sfvgen.to_frames(x0, ae)[0])
            return out
        s.stage = "looking into the fast weights"
        with self.compute:
            jobs = {p: self.panels.submit(denoise, p) for p in ("plain", "lora")}
            wait(jobs.values())
            made = {p: job.result() for p, job in jobs.items()}
        rows = []
        for k, ((age, chunks, x), x_t) in enumerate(zip(windows, noised)):
            clean = sfvgen.to_frames(x, ae)[0]
            psnr = {p: nan_to_none(metrics.psnr(made[p][k], clean)) for p in ("plain", "lora")}
            row = dict(age=age, chunks=chunks, psnr=psnr, gain=nan_to_none(psnr["lora"] - psnr["plain"]))
            if k in (0, len(windows) - 1):  # pictures of the last window and the oldest probed
                row["pictures"] = dict(window=strip64(clean), noised=strip64(sfvgen.to_frames(x_t, ae)[0]),
                                       lora=strip64(made["lora"][k]), plain=strip64(made["plain"][k]))
            rows.append(row)
        return dict(after_chunk=n, t=t, T=self.diffusion.T, fast_steps=s.cfg.fast_steps, spread_db=SPREAD_DB, windows=rows)

    def save_memory(self, s):
        """The with-memory panel's memory as generate.py --memory-out writes it (with the world seed), as bytes."""
        if not s.actions:
            raise Refused(400, "no memory yet: play at least one chunk first")
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "memory.pt")
            replace(s.memory["lora"], world_seed=s.seed).save(path)
            with open(path, "rb") as f:
                return f.read()

    def load_memory(self, s, checked, expired=False):
        """Continue the with-memory panel from a memory file (read_memory checked it); see the module docstring."""
        mem, targets, model = checked
        seed = None if self.episode is not None else s.seed if mem.world_seed is None else mem.world_seed
        s.reset(self, seed, s.cfg.fast_steps, targets)
        s.lora_model, s.lora_targets = model, targets
        K = s.cfg.chunk
        last = sfvgen.to_frames(mem.history[-1][:, -1:], self.model.autoencoder)[0]  # (1, H, W, 3): where it continues
        s.memory = {"lora": mem, "plain": replace(mem, lora={}, opt={})}  # the same context and noise, no fast weights
        s.actions, s.base = list(mem.actions), mem.chunk * K
        s.frames = {"plain": last, "lora": last}
        moves = data.resolve_go_back(s.actions)
        s.rows = [dict(index=k + 1, action=a, move=moves[k], loaded=True, truth=None, seconds=None, fast_loss=None,
                       psnr={"plain": None, "lora": None}, revisit_frames=0, consistency={"plain": None, "lora": None})
                  for k, a in enumerate(s.actions)]
        where = f"world {seed}" if seed is not None else f"your video {self.episode.name}"
        s.loaded = dict(chunks=mem.chunk, text=f"continuing a saved memory of {mem.chunk} chunk{'s' * (mem.chunk > 1)} ({where})")
        return self.state(s, expired)


# ----------------------------------------------------------------------------- HTTP
class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a listen backlog of 64: the default, 5, resets the connections of a burst."""
    request_queue_size = 64
    daemon_threads = True


class Handler(BaseHTTPRequestHandler):
    server_version = "sfvgen-play"
    # http.server assumes HTTP/0.9 until the request line says otherwise, and answers HTTP/0.9 without a status line:
    # a garbled request line would get a bare body. Nobody speaks HTTP/0.9 any more; every reply has a status line.
    default_request_version = "HTTP/1.0"
    timeout = 60   # seconds a client may take to send its request
    cookie = None  # the session a reply's cookie names ("" clears the cookie)
    # (method, path) -> the body it takes: None (a GET), "json" or "bytes"
    ROUTES = {("GET", "/"): None, ("GET", "/favicon.ico"): None, ("GET", "/api/state"): None,
              ("GET", "/api/progress"): None, ("GET", "/api/frames"): None, ("GET", "/api/memory-view"): None,
              ("GET", "/api/gif"): None, ("GET", "/api/memory"): None, ("POST", "/api/step"): "json",
              ("POST", "/api/reset"): "json", ("POST", "/api/memory"): "bytes"}

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (a malformed request line: 400, another method: 501, ...) as one-line JSON too."""
        self.close_connection = True
        if code == 501:
            message = f"method {str(self.command)[:20]!r} is not served; this server takes GET and POST"
        elif code == 400:
            message = "not an HTTP request this server understands (a request line is METHOD /path HTTP/1.1)"
        elif code == 505:
            message = "this server speaks HTTP/1.0 and HTTP/1.1"
        else:
            message = (message or self.responses.get(code, ("error",))[0])[:200]
        self.send(code, {"error": message})

    def log_request(self, code="-", size="-"):
        if str(code) == "200" and urlsplit(getattr(self, "path", "")).path == "/api/progress":
            return  # the page polls progress a few times a second: its answers would drown the log
        super().log_request(code, size)

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            super().log_message(fmt, *args)

    def do_GET(self):
        self.handle_request("GET")

    def do_POST(self):
        self.handle_request("POST")

    def handle_request(self, method):
        app, path = self.server.app, urlsplit(self.path).path
        self.cookie = None
        try:
            if (method, path) not in self.ROUTES:
                known = [f"{m} {p}" for m, p in self.ROUTES]
                raise Refused(404, f"unknown {method} {path}; the paths are: {', '.join(known)}")
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            if self.server.loopback and host not in ("127.0.0.1", "localhost", "[::1]"):
                raise Refused(400, f"Host {host!r}: this server answers only to 127.0.0.1 or localhost")  # no DNS rebinding
            if path == "/":
                return self.send(200, PAGE.encode(), "text/html; charset=utf-8")
            if path == "/favicon.ico":
                return self.send(204, b"", "image/x-icon")  # the page brings its own (none): no 404 in the log
            kind = self.ROUTES[(method, path)]
            body = self.read_body(kind) if kind else None
            checked = app.check(method, path, body)  # before any session: a refused request makes and changes nothing
            sid = self.cookie_session()
            s = app.find(sid) if sid else None
            expired = sid is not None and s is None
            if path == "/api/progress":
                return self.send(200, app.progress(s))
            if s is None:
                if path == "/api/state":  # a fresh episode's state, stored nowhere
                    self.cookie = "" if expired else None
                    return self.send(200, app.state(Session(app), expired))
                if method == "GET" or (expired and path == "/api/step"):  # an episode there is none of, or one gone
                    self.cookie = "" if expired else None
                    raise Refused(410, EXPIRED) if expired else Refused(400, "no episode yet: play at least one chunk first")
                s = app.create()  # the first request that changes something (a POST) makes the session
            self.cookie = s.sid
            if not s.lock.acquire(blocking=False):
                raise Refused(409, "this session is busy with a chunk; wait for it (GET /api/progress)")
            try:  # the answer is made under the lock and sent after it: the client's next request finds it free
                s.started = time.time()
                reply = self.answer(app, s, method, path, checked, expired)
                if path == "/api/step":
                    s.last_seconds = round(time.time() - s.started, 2)
            finally:
                s.stage, s.partial = "idle", {}
                s.lock.release()
            self.send(*reply)
        except Refused as e:
            self.send(e.status, {"error": e.message})
        except Exception as e:  # the server keeps serving; the one line says what went wrong
            print(f"error on {method} {path}: {type(e).__name__}: {e}", file=sys.stderr)
            self.send(500, {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"})

    def answer(self, app, s, method, path, checked, expired):
        """(status, payload[, content type, attachment]) of a request that holds the session's lock."""
        if path == "/api/state":
            return 200, app.state(s)
        if path == "/api/reset":
            return 200, app.reset(s, checked, expired)
        if path == "/api/step":
            return 200, app.step(s, checked)
        if path == "/api/frames":
            return 200, app.all_frames(s)
        if path == "/api/memory-view":
            return 200, app.memory_view(s)
        if path == "/api/gif":
            return 200, app.gif(s), "image/gif", "episode.gif"
        if method == "GET":  # /api/memory
            return 200, app.save_memory(s), "application/octet-stream", "memory.pt"
        return 200, app.load_memory(s, checked, expired)

    def cookie_session(self):
        jar = cookies.SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except cookies.CookieError:
            return None
        return jar[COOKIE].value if COOKIE in jar and jar[COOKIE].value else None

    def read_body(self, kind):
        """The request body, refused (411, 413, 415) before it is read when it is not what the path takes, and a JSON
        body (400) when it is not a flat enough JSON object."""
        ctype, limit = ("application/json", JSON_LIMIT) if kind == "json" else ("application/octet-stream", MEMORY_LIMIT)
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            self.close_connection = True
            raise Refused(411, "a POST needs a Content-Length header")
        if int(length) > limit:
            self.close_connection = True  # the body is left unread
            raise Refused(413, f"body of {int(length)} bytes; at most {limit} bytes here")
        if self.headers.get("Content-Type", "").split(";")[0].strip() != ctype:
            self.close_connection = True
            raise Refused(415, f"Content-Type must be {ctype}")
        blob = self.rfile.read(int(length))
        if kind == "bytes":
            return blob
        if json_depth(blob) > JSON_DEPTH:
            raise Refused(400, f"the JSON is nested {json_depth(blob)} levels deep; the bodies here are flat objects "
                               f"(at most {JSON_DEPTH} levels)")
        try:
            body = json.loads(blob or b"{}")
        except ValueError:
            raise Refused(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise Refused(400, "the body must be a JSON object")
        return body

    def send(self, status, payload, ctype=None, attachment=None):
        if ctype is None:  # a dict: JSON
            payload, ctype = (json.dumps(payload) + "\n").encode(), "application/json"
        if self.request_version == "HTTP/0.9":  # "GET / HTTP/0.9" asked for it: a status line all the same
            self.request_version = "HTTP/1.0"
        try:  # a client gone mid-chunk: its chunk stays in the session, the server keeps serving
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            if attachment:
                self.send_header("Content-Disposition", f'attachment; filename="{attachment}"')
            if self.cookie is not None:  # "" clears the cookie of an expired episode
                age = "; Max-Age=0" if self.cookie == "" else ""
                self.send_header("Set-Cookie", f"{COOKIE}={self.cookie}; Path=/; HttpOnly; SameSite=Strict{age}")
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def own_video(folder, name, cfg):
    """Your video to play from: the one named `name` in the folder's annotations.jsonl (None: the first), its chunks
    resampled to the model's frames (video.load_folder)."""
    name = name or video.read_annotations(folder)[0][1]["video"]
    return video.load_folder(folder, cfg.world(), only=name)[0]


def make_server(model, cfg, host="127.0.0.1", port=8000, max_chunks=64, max_sessions=8, quiet=False,
                idle_seconds=IDLE_SECONDS, episode=None, panel_threads=2):
    """The HTTP server (not yet serving): server.serve_forever() in any thread, server.shutdown() to stop.
    episode: your video (a video.Episode) as the truth, instead of the built-in world. panel_threads: 2 computes the
    two panels side by side, 1 one after the other."""
    server = Server((host, port), Handler)
    server.app, server.quiet = App(model, cfg, max_chunks, max_sessions, idle_seconds, episode, panel_threads), quiet
    server.loopback = host in ("127.0.0.1", "localhost", "::1")  # then a page elsewhere cannot reach it by DNS tricks
    return server


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py (or its --export)")
    p.add_argument("--sample-steps", type=int, default=0,
                   help="denoising steps per chunk (0 = the checkpoint's; fewer is faster and a little blurrier)")
    p.add_argument("--data", default=None, help="play from your own video: a folder with annotations.jsonl (the truth is your frames)")
    p.add_argument("--video", default=None, help="with --data: the video to play from (its name in annotations.jsonl; default the first)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0: any free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; anything but 127.0.0.1 opens it to the network")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cuda, mps or cpu")
    p.add_argument("--panel-threads", type=int, default=2, choices=(1, 2),
                   help="2: the two panels side by side, each on half the torch threads; 1: one after the other "
                        "(no slower where other jobs keep the cores busy, and the first panel shows sooner)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = the cores divided by --panel-threads)")
    p.add_argument("--max-chunks", type=int, default=64, help="chunks per episode")
    p.add_argument("--max-sessions", type=int, default=8, help="episodes kept at once (an idle one gives its place to a new player)")
    args = p.parse_args(argv)
    if args.max_chunks < 1 or args.max_sessions < 1:
        p.error("--max-chunks and --max-sessions must be at least 1")
    if args.video and not args.data:
        p.error("--video needs --data DIR: the folder with annotations.jsonl")
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2) // args.panel_threads))
    device = cli.pick_device(args.device)
    try:
        model, cfg, ckpt = sfvgen.load_model(args.ckpt, device)
        if not 0 <= args.sample_steps <= cfg.timesteps:
            raise ValueError(f"--sample-steps {args.sample_steps}: 1..{cfg.timesteps} (0 = the checkpoint's {cfg.sample_steps})")
        cfg = replace(cfg, sample_steps=args.sample_steps or cfg.sample_steps)
        episode = None
        if args.data:
            episode = own_video(args.data, args.video, cfg)
        elif ckpt["config"].get("data"):
            print(f"warning: {args.ckpt} was trained on your videos (--data); this plays in the built-in world", file=sys.stderr)
        server = make_server(model, cfg, args.host, args.port, args.max_chunks, args.max_sessions, episode=episode,
                             panel_threads=args.panel_threads)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    host, port = server.server_address[:2]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can use the server")
    start = f"your video {episode.name} ({len(episode.actions)} annotated chunks)" if episode else "the built-in world"
    print(f"play: http://{host}:{port}/  ({args.ckpt} on {device}, {cfg.sample_steps} sampling steps, {start}; "
          f"Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# ----------------------------------------------------------------------------- the page
PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sfvgen: play in the world model</title>
<link rel="icon" href="data:,">
<style>
 body { font: 14px/1.4 system-ui, sans-serif; background: #16181d; color: #e4e6eb; margin: 16px; }
 h1 { font-size: 18px; margin: 0 0 4px; } h3 { font-size: 13px; margin: 10px 0 4px; font-weight: normal; }
 .dim { color: #9aa0aa; } [title] { cursor: help; } button[title], select[title], input[title] { cursor: pointer; }
 .panels { display: flex; gap: 18px; margin-top: 10px; }
 .panel { text-align: center; width: 258px; } .panel h2 { font-size: 14px; margin: 0 0 6px; }
 .frame { position: relative; }
 .frame img { width: 256px; height: 256px; image-rendering: pixelated; image-rendering: crisp-edges;
              background: #000; border: 1px solid #444; display: block; }
 .over { position: absolute; left: 0; right: 0; top: 45%; font-size: 15px; color: #fff; text-shadow: 0 0 4px #000; }
 .num { margin-top: 6px; min-height: 4.2em; font-size: 13px; }
 table.cap { width: 100%; font: 12px system-ui, sans-serif; } table.cap td { white-space: normal; text-align: left; padding: 1px 2px; }
 table.cap td.v { text-align: right; white-space: nowrap; font: 12px ui-monospace, monospace; }
 .good { color: #7fd37f; } .bad { color: #f08a7e; }
 .revisit { display: flex; gap: 6px; justify-content: center; font-size: 11px; color: #9aa0aa; min-height: 4px; }
 .revisit figure { margin: 0; } .revisit img { width: 96px; height: 96px; image-rendering: pixelated; border: 1px solid #555; }
 .controls { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; margin: 14px 0; }
 .pad { display: grid; grid-template-columns: repeat(3, 44px); gap: 4px; }
 button, select, input { font: inherit; background: #2a2e37; color: #e4e6eb; border: 1px solid #555;
                         border-radius: 4px; padding: 4px 8px; }
 button:hover { background: #3a3f4b; } button:disabled, select:disabled, input:disabled { opacity: .45; }
 .pad button { height: 36px; padding: 0; } fieldset { border: 1px solid #444; border-radius: 6px; }
 #bar { width: 260px; height: 8px; background: #333; border-radius: 4px; overflow: hidden; display: inline-block; }
 #fill { height: 100%; width: 0; background: #5b9cf0; transition: width .25s linear; }
 .busy #fill { background: repeating-linear-gradient(45deg, #5b9cf0 0 8px, #7fb2f5 8px 16px); }
 table { border-collapse: collapse; font: 13px ui-monospace, monospace; } td, th { padding: 2px 8px; text-align: right; }
 th { color: #9aa0aa; font-weight: normal; border-bottom: 1px solid #444; text-align: center; }
 td { white-space: nowrap; } td.l { text-align: left; } tr.loaded td { color: #7d838d; }
 #err { color: #f08a7e; } #queue { color: #e8c46a; }
 #view .strip { display: flex; align-items: center; gap: 8px; margin: 2px 0; font-size: 12px; }
 #view .strip span.k { width: 230px; text-align: right; color: #9aa0aa; } #view .strip span.v { font: 12px ui-monospace, monospace; }
 #view .strip img { height: 64px; image-rendering: pixelated; image-rendering: crisp-edges; border: 1px solid #444; }
 #view table { margin-top: 8px; }
</style></head><body>
<h1>Play in the world model <span class="dim">(arrow keys move the camera; s = stay, b = go back)</span></h1>
<div class="dim" id="source">&nbsp;</div>
<div class="panels">
 <div class="panel"><h2 title="The slow weights alone (Phi), fast learning off: the model sees only the previous chunk,
   so it keeps nothing older.">no memory</h2>
  <div class="frame"><img id="img-plain" alt="no memory"><div class="over" id="over-plain"></div></div>
  <div class="num" id="num-plain"></div><div class="revisit" id="rev-plain"></div></div>
 <div class="panel"><h2 title="The same model plus a TEMP-LoRA of fast weights (Theta), trained on the last two chunks
   after every chunk: an episodic memory of the episode so far.">with memory (TEMP-LoRA)</h2>
  <div class="frame"><img id="img-lora" alt="with memory"><div class="over" id="over-lora"></div></div>
  <div class="num" id="num-lora"></div><div class="revisit" id="rev-lora"></div></div>
 <div class="panel"><h2 id="truth-name" title="What the camera really sees for these actions.">truth</h2>
  <div class="frame"><img id="img-truth" alt="truth"><div class="over" id="over-truth"></div></div>
  <div class="num" id="num-truth"></div><div class="revisit" id="rev-truth"></div></div>
</div>
<div><span id="bar" title="this action's time so far against the last action's"><span id="fill" style="display:block"></span></span>
 <span id="status" class="dim">loading</span> <span id="queue" title="actions pressed while the model works wait here, in order"></span>
 <span id="err"></span> <span id="note" class="dim"></span></div>
<div class="controls">
 <fieldset><legend>move (one chunk each)</legend><div class="pad">
  <span></span><button data-a="go up" title="go up (&uarr;)">&uarr;</button><span></span>
  <button data-a="go left" title="go left (&larr;)">&larr;</button><button data-a="stay" title="stay (s)">&bull;</button>
  <button data-a="go right" title="go right (&rarr;)">&rarr;</button>
  <span></span><button data-a="go down" title="go down (&darr;)">&darr;</button><span></span>
 </div><button data-a="go back" style="margin-top:4px;width:140px"
  title="retrace the last move not yet retraced (b)">go back</button></fieldset>
 <fieldset><legend>episode</legend>
  <span id="seedbox">world seed <input id="seed" type="text" inputmode="numeric" autocomplete="off" spellcheck="false" style="width:100px"
   title="a world: a whole number 0..2147483647 (the test worlds, never trained on, are 200000..200099); Enter starts it"></span>
  <button id="reset" title="start a new episode (in this world)">reset</button><br>
  fast steps <select id="steps" title="fast_steps: Adam steps of fast learning after every chunk; more = the memory
   holds more, each chunk takes longer (a change starts a new episode)"></select>
  memory in <select id="targets" title="lora_targets: which layers carry the fast weights: temporal (temporal attention
   and convolutions, the paper's), attn (every attention), all (every layer) (a change starts a new episode)"></select><br>
  <button id="replay" title="play the whole episode again (works after a reload)">replay episode</button>
  <button id="gif" title="the episode as a GIF: no memory | with memory | truth, with their names">save GIF</button>
  <button id="save" title="the fast weights and where the episode is, as a .pt file (generate.py --memory-in reads it too)"
   >save memory</button>
  <button id="loadbtn" title="continue a saved memory (from this page or generate.py --memory-out)">load memory</button>
  <input id="load" type="file" accept=".pt" hidden>
  <div class="dim" id="info"></div></fieldset>
</div>
<fieldset><legend>memory view: what the fast weights hold</legend>
 <button id="viewbtn" title="computed now, once (one denoising pass per window), so it does not slow your actions"
  >look into the fast weights</button>
 <span class="dim">After every chunk the fast weights learn to clean up a noisy copy of the last two chunks. Here a window is
 noised halfway and cleaned up once with the fast weights and once without: the closer the "with memory" row is to the window, the more
 of it they hold; older windows show how quickly that fades.</span>
 <div id="view"></div></fieldset>
<h3>chunks, newest first</h3>
<table id="rows"><thead>
 <tr><th rowspan="2">chunk</th><th rowspan="2" class="l">action</th>
  <th colspan="2" title="PSNR of the chunk against the truth, in dB: higher is closer">close to the truth (dB)</th>
  <th rowspan="2" title="frames of the chunk at a place first seen more than two chunks earlier (metrics.revisit_pairs)"
   >revisit<br>frames</th>
  <th colspan="2" title="SRC-PSNR: the revisit frames against the same panel's frames of the first visit, in dB:
   higher = the place kept its look">consistency with the first visit (dB)</th>
  <th rowspan="2" title="the fast loss after this chunk's fast learning (L_fast on the last two chunks)">fast-learning<br>loss</th>
  <th rowspan="2" title="seconds for this action, both panels side by side">seconds</th></tr>
 <tr><th>no memory</th><th>with memory</th><th>no memory</th><th>with memory</th></tr></thead><tbody></tbody></table>
<p class="dim">Close to the truth: the chunk against the truth (PSNR, higher = closer). Consistency with the first visit: where you
walk back to a place seen more than two chunks before (beyond the previous chunk, the only one the model sees), its frames against the
same panel's frames of the first visit (SRC-PSNR) &mdash; where memory should pay. A panel is coloured better or worse only when the two
differ by {{SPREAD_DB}} dB or more: smaller differences are within the run-to-run spread.</p>
<script>
"use strict";
const $ = id => document.getElementById(id);
const KEYS = {ArrowLeft: "go left", ArrowRight: "go right", ArrowUp: "go up", ArrowDown: "go down",
              s: "stay", S: "stay", b: "go back", B: "go back"};
const QUEUE_LIMIT = 8, SPREAD = {{SPREAD_DB}};
const GREY = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNoaGgAAAMEAYFL09IQAAAAAElFTkSuQmCC";
const NAMES = {plain: "no memory", lora: "with memory"};
let state = null, busy = false, queue = [], shownEarly = {}, noteTimer = null;
const fmt = x => x === null || x === undefined ? "&ndash;" : x.toFixed(2);
const png = b64 => b64 ? "data:image/png;base64," + b64 : GREY;
const esc = t => String(t).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]);
const sleep = ms => new Promise(res => setTimeout(res, ms));

class HttpError extends Error { constructor(status, message) { super(message); this.status = status; } }
async function api(path, body, type) {
  const opt = body === undefined ? {} : {method: "POST", body: type ? body : JSON.stringify(body),
                                        headers: {"Content-Type": type || "application/json"}};
  const r = await fetch(path, opt);
  if (!r.ok) {
    let m = "the server answered " + r.status;
    try { m = (await r.json()).error; } catch (e) {}
    throw new HttpError(r.status, m);
  }
  return r;
}
function err(text) { $("err").textContent = text; }
function note(text) {  // a passing remark: gone after a few seconds
  $("note").textContent = text; clearTimeout(noteTimer); noteTimer = setTimeout(() => { $("note").textContent = ""; }, 6000);
}

// ---------------------------------------------------------------- the panels
function showFrame(p, b64) {
  $("img-" + p).src = png(b64);
  if (p === "truth") $("over-truth").textContent = b64 ? "" : "no truth for this action";
}
async function animate(frames, panels) {  // a chunk's frames as a short animation, then the last one stays
  const n = Math.max(...panels.map(p => frames[p].length));
  for (let i = 0; i < n; i++) { for (const p of panels) showFrame(p, frames[p][Math.min(i, frames[p].length - 1)]); await sleep(125); }
}
function better(row, p, key) {  // "good", "bad" or "" (a difference under SPREAD dB is run-to-run spread)
  const other = p === "plain" ? "lora" : "plain", a = row[key][p], b = row[key][other];
  if (a === null || b === null || Math.abs(a - b) < SPREAD) return "";
  return a > b ? "good" : "bad";
}
const SPREAD_NOTE = `coloured only when the two panels differ by ${SPREAD} dB or more; ` +
                    "smaller differences are within the run-to-run spread";
function numbers(row, summary) {  // each model panel's figures, a line each: name, value (and a hover text)
  const line = (name, value, cls, tip) => `<tr class="${cls}" title="${tip}"><td>${name}</td><td class="v">${value}</td></tr>`;
  for (const p of ["plain", "lora"]) {
    let h;
    if (!row) h = `<tr><td>${state && state.loaded ? "the last frame of the saved memory" : "start frame"}</td></tr>`;
    else if (row.loaded) h = `<tr><td>chunk ${row.index}: played before the memory was saved</td></tr>`;
    else {
      h = line(`chunk ${row.index} close to the truth`, fmt(row.psnr[p]) + " dB", better(row, p, "psnr"),
               `PSNR of the chunk against the truth (higher is closer; ${SPREAD_NOTE})`);
      if (row.revisit_frames) {
        h += line("consistency with the first visit", fmt(row.consistency[p]) + " dB", better(row, p, "consistency"),
                  `SRC-PSNR: the ${row.revisit_frames} frame(s) of this chunk at a place first seen more than two chunks ago, ` +
                  `against this panel's own frames of that first visit (pictures below; ${SPREAD_NOTE})`);
      }
    }
    h += line("episode: close / consistent", `${fmt(summary[p].psnr)} / ${fmt(summary[p].consistency)}`, "dim",
              "episode means: closeness to the truth over all chunks / consistency with the first visit over all revisit frames (dB)");
    $("num-" + p).innerHTML = `<table class="cap">${h}</table>`;
  }
  let t = row ? `chunk ${row.index}: ${esc(row.action)}${row.action !== row.move ? " (= " + esc(row.move) + ")" : ""}` : "start frame";
  if (row && row.truth === false) {
    t += '<br><span class="bad" title="your video has frames only while the actions follow its annotation">' +
         "no truth for this action: nothing scored</span>";
  }
  if (state && state.source.kind === "video") {
    t += state.next_annotated ? `<br><span class="dim">your video goes "${esc(state.next_annotated)}" next</span>`
                              : `<br><span class="dim">off your video's path: no truth from here</span>`;
  }
  $("num-truth").innerHTML = t;
}
function showRevisit(view) {  // the picture behind the consistency number: the first visit of the place and now
  for (const p of ["plain", "lora", "truth"]) {
    $("rev-" + p).innerHTML = !view ? "" : [0, 1].map(k =>
      `<figure title="the same place: its first visit (frame ${view.first}) and chunk ${view.index}'s return to it (frame ${view.now})">` +
      `<img src="${png(view.frames[p][k])}" alt=""><figcaption>${k ? "now, frame " + view.now : "first visit, frame " + view.first}` +
      "</figcaption></figure>").join("");
  }
}
function addRow(r) {
  const tr = document.createElement("tr");
  if (r.loaded) {
    tr.className = "loaded";
    tr.title = "played before the memory was saved: its frames are not in the file, so nothing is scored";
  }
  const cell = (x, cls, tip) => `<td class="${cls || ""}" title="${tip}">${fmt(x)}</td>`;
  const close = p => `${NAMES[p]}: PSNR of chunk ${r.index} against the truth ` +
                     `(${r.truth === false ? "no truth: not scored" : SPREAD_NOTE})`;
  const kept = p => `${NAMES[p]}: SRC-PSNR of the chunk's ${r.revisit_frames} revisit frame(s) against their first visit (${SPREAD_NOTE})`;
  const seconds = r.seconds ? `no memory ${r.seconds.plain.toFixed(1)} s, with memory ${r.seconds.lora.toFixed(1)} s; ` +
                              `${r.seconds.both.toFixed(1)} s for the action` : "";
  tr.innerHTML = `<td>${r.index}</td><td class="l" title="${r.action !== r.move ? "moves " + r.move : ""}">` +
    `${esc(r.action)}${r.loaded ? " (saved)" : ""}</td>` +
    cell(r.psnr.plain, better(r, "plain", "psnr"), close("plain")) + cell(r.psnr.lora, better(r, "lora", "psnr"), close("lora")) +
    `<td title="frames of this chunk at a place first seen more than two chunks earlier">${r.revisit_frames || ""}</td>` +
    cell(r.consistency.plain, better(r, "plain", "consistency"), kept("plain")) +
    cell(r.consistency.lora, better(r, "lora", "consistency"), kept("lora")) +
    `<td title="the fast loss after this chunk's fast learning">${r.fast_loss === null ? "&ndash;" : r.fast_loss.toFixed(4)}</td>` +
    `<td title="${seconds}">${r.seconds ? r.seconds.both.toFixed(1) : "&ndash;"}</td>`;
  $("rows").tBodies[0].prepend(tr);
}
function info(chunks) {
  $("info").textContent = (state.loaded ? state.loaded.text + "; " : "") + `${chunks} / ${state.max_chunks} chunks; ` +
    `${state.sample_steps} sampling steps`;
}
function setState(s) {
  state = s;
  const video = s.source.kind === "video";
  $("seedbox").style.display = video ? "none" : "";
  $("seed").value = video ? "" : s.settings.seed;
  const test = !video && s.settings.seed >= s.source.test_seeds[0] && s.settings.seed < s.source.test_seeds[1];
  $("source").textContent = video ? `your video ${s.source.name}: its ${s.source.actions.length} chunks go ${s.source.actions.join(", ")}`
                                  : `world ${s.settings.seed}` + (test ? " (a test world: never trained on)" : "");
  $("truth-name").textContent = video ? "truth (your video)" : "truth (simulator)";
  for (const [id, key] of [["steps", "fast_steps"], ["targets", "lora_targets"]]) {
    $(id).innerHTML = s.accepted[key].map(v => `<option${v === s.settings[key] ? " selected" : ""}>${v}</option>`).join("");
  }
  $("rows").tBodies[0].innerHTML = ""; s.rows.forEach(addRow);
  for (const p of ["plain", "lora", "truth"]) showFrame(p, s.current[p]);
  const last = s.rows[s.rows.length - 1];
  numbers(last, s.summary); showRevisit(s.revisit); info(s.chunks);
  $("view").innerHTML = "";
  if (s.expired) err("your episode expired (it was idle and its place went to another player, or the server restarted); this is a new one");
}

// ---------------------------------------------------------------- actions, the queue and the progress bar
function setBusy(b, text) {
  busy = b; document.body.classList.toggle("busy", b);
  for (const el of document.querySelectorAll("#reset, #seed, select, #replay, #gif, #save, #loadbtn, #viewbtn")) el.disabled = b;
  $("status").textContent = text;
}
function showQueue() { $("queue").textContent = queue.length ? `${queue.length} waiting: ${queue.join(", ")}` : ""; }
async function poll() {  // the progress bar, and a panel's frames as soon as it is done
  while (busy) {
    try {
      const p = await (await fetch("/api/progress")).json();
      if (p.busy) {
        $("status").textContent = `${p.stage} (${p.elapsed.toFixed(1)} s)`;
        $("fill").style.width = (p.expected ? Math.min(95, 100 * p.elapsed / p.expected) : 50) + "%";
        for (const q of ["plain", "lora"]) {
          if (p.partial[q] && !shownEarly[q]) {
            const panels = shownEarly.truth ? [q] : [q, "truth"];
            for (const x of panels) shownEarly[x] = true;
            const other = q === "plain" ? "lora" : "plain";
            if (!shownEarly[other]) $("over-" + other).textContent = "still dreaming...";
            shownEarly.done = (shownEarly.done || Promise.resolve()).then(() => animate(p.partial, panels));
          }
        }
      }
    } catch (e) {}
    await sleep(300);
  }
}
async function run(job, text) {
  if (busy) return false;
  setBusy(true, text); err(""); $("fill").style.width = "3%"; poll();
  let failed = null;
  try { await job(); } catch (e) { failed = e; }
  setBusy(false, "ready"); $("fill").style.width = "100%";
  if (failed) {
    let m = failed.message;
    if (queue.length) { m += ` (the ${queue.length} waiting action(s) were not played)`; queue = []; showQueue(); }
    if (failed.status === 410) { try { await loadState(); } catch (e) {} }  // the episode is gone: show the new one
    err(m);
  }
  setTimeout(drain, 0);  // actions pressed during a reset or a download
  return true;
}
async function step(a) {
  shownEarly = {};
  const out = await (await api("/api/step", {action: a})).json();
  state.chunks = out.chunks; state.next_annotated = out.next_annotated;
  addRow(out.row); info(out.chunks); numbers(out.row, out.summary);
  await shownEarly.done;
  const rest = ["plain", "lora", "truth"].filter(p => !shownEarly[p]);
  $("over-plain").textContent = $("over-lora").textContent = "";
  if (rest.length) await animate(out.frames, rest);
  showRevisit(out.revisit);
}
async function drain() {
  while (queue.length && !busy) { const a = queue.shift(); showQueue(); await run(() => step(a), `dreaming: ${a}`); }
  if (!queue.length && !busy) $("status").textContent = "ready";
}
function act(a) {
  if (queue.length >= QUEUE_LIMIT) { note(`the queue is full (${QUEUE_LIMIT} actions wait): "${a}" was not added`); return; }
  queue.push(a); showQueue(); drain();
}
async function loadState() {  // a reload while this session's chunk is still generating: 409 until it is done
  for (let i = 0; ; i++) {
    try { return setState(await (await api("/api/state")).json()); }
    catch (e) { if (e.status !== 409 || i > 300) throw e; await sleep(1000); }
  }
}
async function reset(body) { await run(async () => setState(await (await api("/api/reset", body)).json()), "starting a new episode"); }
function download(path) { run(async () => {
  const blob = await (await api(path)).blob(), a = document.createElement("a");
  a.href = URL.createObjectURL(blob); a.download = path.endsWith("gif") ? "episode.gif" : "memory.pt"; a.click();
}, "preparing the download"); }
function resetClicked() {
  if (state.source.kind === "video") return reset({});
  const v = $("seed").value.trim();
  if (v === "") { note(`type a world seed first: a whole number 0..${state.max_seed}`); return; }
  if (!/^[0-9]+$/.test(v) || Number(v) > state.max_seed) {
    $("seed").value = state.settings.seed;
    note(`"${v}" is not a world seed (a whole number 0..${state.max_seed}); the field is back at ${state.settings.seed}`); return;
  }
  reset({seed: Number(v)});
}
function settingChanged(select, key) {  // a new setting starts a new episode: ask first when there is one to lose
  const value = key === "fast_steps" ? Number(select.value) : select.value;
  if (state.chunks && !confirm(`Changing ${key === "fast_steps" ? "fast steps" : "where the memory is"} starts a new episode; ` +
                               `the ${state.chunks} chunk(s) played are dropped. Go on?`)) {
    select.value = state.settings[key]; return;
  }
  reset({[key]: value});
}

// ---------------------------------------------------------------- the memory view
function renderView(v) {
  const label = w => w.age === 0 ? `the last window it learned (chunks ${w.chunks[0]} and ${w.chunks[1]})`
                                 : `${w.age} chunk${w.age > 1 ? "s" : ""} further back (chunks ${w.chunks[0]} and ${w.chunks[1]})`;
  const gain = w => `<span class="${w.gain === null || Math.abs(w.gain) < v.spread_db ? "" : w.gain > 0 ? "good" : "bad"}">` +
                    `${w.gain > 0 ? "+" : ""}${fmt(w.gain)}</span>`;
  const last = v.windows[0];
  const verdict = last.gain === null ? "" : Math.abs(last.gain) < v.spread_db
    ? `On the last window the two are within the run-to-run spread (${fmt(last.gain)} dB): the fast weights hold little of it. ` +
      "More fast steps store more."
    : last.gain > 0 ? `On the last window the fast weights get ${fmt(last.gain)} dB closer: they hold part of it.`
                    : `On the last window the fast weights do worse by ${fmt(-last.gain)} dB.`;
  let h = `<p>${verdict}</p><p class="dim">after chunk ${v.after_chunk}, ${v.fast_steps} fast step(s) per chunk; ` +
          `noise level t = ${v.t} of ${v.T}, the same noise for both</p>`;
  for (const w of v.windows.filter(w => w.pictures)) {
    h += `<h3>${label(w)}</h3>`;
    for (const [k, name, tip] of [
      ["window", "the window it learned", "the two chunks the fast rule trained on (sfvgen.local_window)"],
      ["noised", "noised halfway: what it is asked", "Diffusion.q_sample at the middle noise level"],
      ["lora", "cleaned with memory (Phi + Theta)", "one denoising pass with the fast weights"],
      ["plain", "cleaned with no memory (fresh LoRA)", "one denoising pass with a fresh LoRA: the slow weights alone"]]) {
      const score = k === "lora" || k === "plain" ? `${fmt(w.psnr[k])} dB to the window` : "";
      h += `<div class="strip"><span class="k" title="${tip}">${name}</span>` +
           `<img src="${png(w.pictures[k])}" alt="${name}"><span class="v">${score}</span></div>`;
    }
  }
  h += `<table title="how quickly it fades: what the fast weights add on windows learned longer ago (${SPREAD_NOTE})">` +
       '<tr><th class="l">chunks back</th>' +
       v.windows.map(w => `<th>${w.age}</th>`).join("") + `</tr><tr><td class="l">with memory &minus; no memory (dB)</td>` +
       v.windows.map(w => `<td>${gain(w)}</td>`).join("") + `</tr></table>`;
  $("view").innerHTML = h;
}
async function memoryView() {
  await run(async () => renderView(await (await api("/api/memory-view")).json()), "looking into the fast weights");
}

// ---------------------------------------------------------------- wiring
document.addEventListener("keydown", e => {
  if (["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName) || e.ctrlKey || e.metaKey || e.altKey) return;
  if (KEYS[e.key]) { e.preventDefault(); if (!e.repeat) act(KEYS[e.key]); }  // a held key is one action
});
for (const b of document.querySelectorAll("button[data-a]")) b.onclick = () => act(b.dataset.a);
$("reset").onclick = resetClicked;
$("seed").addEventListener("keydown", e => { if (e.key === "Enter") { e.preventDefault(); resetClicked(); } });
$("steps").onchange = () => settingChanged($("steps"), "fast_steps");
$("targets").onchange = () => settingChanged($("targets"), "lora_targets");
$("gif").onclick = () => download("/api/gif");
$("save").onclick = () => download("/api/memory");
$("loadbtn").onclick = () => $("load").click();
$("load").onchange = () => { const f = $("load").files[0]; $("load").value = "";
  if (f && f.size > 8 * 1024 * 1024) { err("memory files are at most 8 MiB"); return; }
  if (f) run(async () =>
  setState(await (await api("/api/memory", await f.arrayBuffer(), "application/octet-stream")).json()), "loading the memory"); };
$("replay").onclick = () => run(async () => {  // the server sends the frames: a replay works after a reload too
  const f = (await (await api("/api/frames")).json()).frames;
  await animate(f, ["plain", "lora", "truth"]);
}, "replaying");
$("viewbtn").onclick = memoryView;

(async () => {
  await run(loadState, "loading");
  const params = new URLSearchParams(location.search), auto = params.get("auto");  // ?auto=go right,go left: play these
  if (auto) { for (const a of auto.split(",")) if (a.trim()) queue.push(a.trim()); showQueue(); drain(); }
  if (params.get("view") === "memory") {  // &view=memory: then the memory view
    while (busy || queue.length) await sleep(200);
    await memoryView();
  }
})();
</script></body></html>
""".replace("{{SPREAD_DB}}", str(SPREAD_DB))

if __name__ == "__main__":
    main()
