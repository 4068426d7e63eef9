"""Play in the world model: drive the camera with the arrow keys and watch every chunk being dreamed, by the
model without fast learning and by the model with TEMP-LoRA, beside the simulator's ground truth.

    python play.py --ckpt checkpoints/tiny.pt [--port 8000] [--host 127.0.0.1] [--device auto] [--threads N]
        then open the address it prints; /?auto=go right,go right,go left plays those actions by itself

Each action is one chunk: `sfvgen.generate_long` continues two memories of the session by one action, one with
fast learning off (the slow model alone) and one with fast learning on (a TEMP-LoRA copy of the model,
`sfvgen.with_lora`), both from seed cfg.seed, so the frames are exactly those of one generate_long call with
all the actions (continuing with memory= is exact). The ground truth is data.render_episode. Per chunk the
page shows the PSNR of each model panel against the truth and, on a revisit, the consistency with the first
visit: the mean PSNR of the chunk's frames at a camera pose first seen before the chunk's context (the chunk
before it) against the same panel's frames of that first visit (metrics.src_metrics' SRC-PSNR, per chunk).

Controls: reset; the world seed; the fast-learning setting (fast_steps, lora_targets; a change resets);
a GIF of the episode (the three panels side by side); the memory saved or loaded in the format of
generate.py --memory-out / --memory-in (result["memory"] plus "actions"; play.py adds "world_seed", which
generate.py ignores). A loaded memory continues the TEMP-LoRA panel from it; the panel without fast learning
continues from the same last chunk and noise state with no fast weights (a paired control: the two panels
differ only by the memory), and the truth from the file's world seed (the page's seed when the file has none,
as generate.py uses its --world-seed). Frames from before the load are not in the file, so revisits are scored
only against frames generated since.

The server is the Python standard library's http.server (ThreadingHTTPServer), chosen so nothing is added
to the project's dependencies. It is meant for one machine: it binds 127.0.0.1 unless told otherwise and
refuses what it does not know, with a one-line JSON error {"error": "..."} that says what is accepted:
    400  unknown action, setting or seed, a bad memory file, the episode at its length limit (max_chunks),
         a Host header other than 127.0.0.1 / localhost on a loopback server
    404  unknown path          409  this session is already generating a chunk     501  a method but GET or POST
    411  POST without Content-Length       413  body over the limit (4 KiB; 8 MiB for a memory file)
    415  POST body of the wrong Content-Type (application/json; application/octet-stream for a memory file)
    503  every session slot busy
Sessions are a random id in a cookie; at most max_sessions are kept (the least recently used goes).
Generation runs one chunk at a time over the whole server (the slow model is shared); a client that goes away
mid-chunk costs nothing but the chunk, which is kept in its session.

API (all JSON but the downloads): GET /api/state; POST /api/step {"action": "go right"};
POST /api/reset {"seed": 200000, "fast_steps": 2, "lora_targets": "temporal"} (each optional);
GET /api/progress; GET /api/gif; GET /api/memory; POST /api/memory (the .pt file as the body).
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
from collections import OrderedDict
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

FAST_STEPS = (1, 2, 4, 8, 16)          # the fast-learning steps per chunk a player may pick
MAX_SEED = 2 ** 31 - 1                 # world seeds: any integer in 0 .. MAX_SEED
JSON_LIMIT = 4 * 1024                  # bytes of a JSON request body
MEMORY_LIMIT = 8 * 2 ** 20             # bytes of an uploaded memory file (tiny: 0.7 MB; 3.3 MB with LoRA on all layers)
COOKIE = "play_session"
PANELS = ("plain", "lora", "truth")    # without fast learning, with TEMP-LoRA, the simulator


class Refused(Exception):
    """A request the server does not accept: an HTTP status and a one-line reason."""
    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def png64(frame):
    """(H, W, 3) uint8 -> base64 PNG text for a data: URL."""
    return base64.b64encode(iio.imwrite("<bytes>", frame, extension=".png")).decode()


def side_by_side(videos, scale=4):
    """Panels (N, H, W, 3) each -> (N, s H, s (n W + 2 (n - 1)), 3), a white line between panels."""
    sep = np.full_like(videos[0][:, :, :2], 255)
    row = [videos[0]]
    for v in videos[1:]:
        row += [sep, v]
    return np.concatenate(row, axis=2).repeat(scale, 1).repeat(scale, 2)


def nan_to_none(x):
    return None if x is None or not np.isfinite(x) else round(float(x), 2)


# ----------------------------------------------------------------------------- one player's episode
class Session:
    """The episode of one player: world seed, fast-learning setting, the two memories, the frames so far.

    frames[p] holds panel p's frames of global indices base .. base + len - 1 (base = 0 from a reset: the
    start frame first; after a loaded memory, the last frame the file holds)."""

    def __init__(self, sid, app):
        self.sid, self.lock = sid, threading.Lock()  # the lock: one chunk at a time per session (else 409)
        self.stage, self.started, self.last_seconds = "idle", None, None
        self.lora_model, self.targets = None, None
        self.reset(app, app.cfg.test_seeds[0], app.cfg.fast_steps, app.cfg.lora_targets)

    def reset(self, app, seed, fast_steps, targets):
        self.seed, self.cfg = seed, replace(app.cfg, fast_steps=fast_steps, lora_targets=targets)
        if self.targets != targets:  # this session's own fast weights on a copy of the shared slow model
            self.lora_model, self.targets = sfvgen.with_lora(app.model, self.cfg), targets
        truth, _ = data.render_episode(seed, [], self.cfg.world())
        self.actions, self.base, self.rows, self.loaded = [], 0, [], None
        self.memory = {"plain": None, "lora": None}
        self.frames = {"plain": truth[:1], "lora": truth[:1]}

    def settings(self):
        return dict(seed=self.seed, fast_steps=self.cfg.fast_steps, lora_targets=self.cfg.lora_targets)


class App:
    """The shared model, the sessions, and what every request does."""

    def __init__(self, model, cfg, max_chunks=64, max_sessions=8):
        self.model, self.cfg = model, cfg
        self.diffusion = sfvgen.Diffusion(cfg, next(model.parameters()).device)
        self.max_chunks, self.max_sessions = max_chunks, max_sessions
        self.sessions, self.sessions_lock = OrderedDict(), threading.Lock()
        # one chunk at a time over the server: the slow model is shared, and chunks side by side only slow each other
        self.compute = threading.Lock()

    def session(self, sid):
        """The session with id `sid`, or a new one (the least recently used idle one goes beyond max_sessions)."""
        with self.sessions_lock:
            if sid in self.sessions:
                self.sessions.move_to_end(sid)
                return self.sessions[sid]
            while len(self.sessions) >= self.max_sessions:
                idle = [k for k, s in self.sessions.items() if not s.lock.locked()]
                if not idle:
                    raise Refused(503, f"all {self.max_sessions} sessions are generating; try again in a moment")
                del self.sessions[idle[0]]
            s = Session(secrets.token_hex(16), self)
            self.sessions[s.sid] = s
            return s

    # ------------------------------------------------------------------ requests
    def state(self, s):
        """Everything the page shows, with the current frame of each panel (no chunk frames)."""
        truth, _ = data.render_episode(s.seed, s.actions, s.cfg.world(), frame_ids=[len(s.actions) * s.cfg.chunk])
        return dict(settings=s.settings(), chunk=s.cfg.chunk, chunks=len(s.actions), max_chunks=self.max_chunks,
                    rows=s.rows, loaded=s.loaded, summary=self.summary(s),
                    current={"plain": png64(s.frames["plain"][-1]), "lora": png64(s.frames["lora"][-1]),
                             "truth": png64(truth[0])},
                    accepted=dict(actions=list(data.ACTIONS), fast_steps=list(FAST_STEPS),
                                  lora_targets=list(sfvgen.LORA_TARGETS), seed=[0, MAX_SEED]))

    def reset(self, s, body):
        known = ("seed", "fast_steps", "lora_targets")
        unknown = [k for k in body if k not in known]
        if unknown:
            raise Refused(400, f"unknown setting {unknown[0]!r}; accepted: {', '.join(known)}")
        seed = body.get("seed", s.seed)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
            raise Refused(400, f"seed {seed!r}: an integer in 0..{MAX_SEED} (test worlds: "
                               f"{s.cfg.test_seeds[0]}..{s.cfg.test_seeds[1] - 1})")
        steps = body.get("fast_steps", s.cfg.fast_steps)
        if not isinstance(steps, int) or isinstance(steps, bool) or steps not in FAST_STEPS:
            raise Refused(400, f"fast_steps {steps!r}: one of {list(FAST_STEPS)}")
        targets = body.get("lora_targets", s.cfg.lora_targets)
        if not isinstance(targets, str) or targets not in sfvgen.LORA_TARGETS:
            raise Refused(400, f"lora_targets {targets!r}: one of {list(sfvgen.LORA_TARGETS)}")
        s.reset(self, seed, steps, targets)
        return self.state(s)

    def step(self, s, body):
        """One action: one chunk in both model panels, the truth, and the chunk's scores."""
        if set(body) != {"action"}:
            raise Refused(400, 'expected {"action": ...} and nothing else; actions: ' + ", ".join(data.ACTIONS))
        a = body["action"]
        if a not in data.ACTIONS:
            raise Refused(400, f"unknown action {a!r}; accepted: {', '.join(data.ACTIONS)}")
        if len(s.actions) >= self.max_chunks:
            raise Refused(400, f"the episode is at its limit of {self.max_chunks} chunks; reset to play on")
        cfg, K = s.cfg, s.cfg.chunk
        actions = s.actions + [a]
        truth, positions = data.render_episode(s.seed, actions, cfg.world())
        s.stage = "waiting for another session's chunk"
        with self.compute:
            out, seconds = {}, {}
            for p, model, fast in (("plain", self.model, False), ("lora", s.lora_model, True)):
                s.stage = "sampling without fast learning" if p == "plain" else "sampling with TEMP-LoRA, then fast learning"
                t0 = time.time()
                out[p] = sfvgen.generate_long(model, self.diffusion, cfg, truth[0], [a], fast_learning=fast,
                                              seed=cfg.seed, memory=s.memory[p])
                seconds[p] = time.time() - t0
        # commit only when both panels are done: a failed chunk leaves the session as it was
        for p in ("plain", "lora"):
            s.frames[p] = np.concatenate([s.frames[p], out[p]["frames"][-K:]]) if s.memory[p] is not None else out[p]["frames"]
            s.memory[p] = out[p]["memory"]
        s.actions = actions
        n = len(truth)  # global frame count; the new chunk is n - K .. n - 1
        row = dict(index=len(actions), action=a, move=data.resolve_go_back(actions)[-1],
                   seconds={p: round(v, 2) for p, v in seconds.items()},
                   fast_loss=nan_to_none(out["lora"]["fast_losses"][-1]) if out["lora"]["fast_losses"] else None,
                   psnr={p: nan_to_none(metrics.psnr(s.frames[p][-K:], truth[n - K:])) for p in ("plain", "lora")},
                   **self.revisits(s, positions, n - K, n))
        s.rows.append(row)
        return dict(row=row, summary=self.summary(s), chunks=len(actions),
                    frames={"plain": [png64(f) for f in out["plain"]["frames"][-K:]],
                            "lora": [png64(f) for f in out["lora"]["frames"][-K:]],
                            "truth": [png64(f) for f in truth[n - K:]]})

    def revisits(self, s, positions, start, end):
        """Consistency of chunk start .. end - 1 with the first visits: its frames j of metrics.revisit_pairs (the
        revisits SRC scores, more than a context window after the first visit i), PSNR(generated j, generated i) per
        panel, averaged (SRC-PSNR restricted to this chunk). Only first visits this session generated count."""
        pairs = [(i, j) for i, j in metrics.revisit_pairs(positions[:end], min_gap=2 * s.cfg.chunk)
                 if j >= start and i >= s.base]
        if not pairs:
            return dict(revisit_frames=0, consistency={"plain": None, "lora": None})
        first = np.array([i for i, _ in pairs]) - s.base
        later = np.array([j for _, j in pairs]) - s.base
        return dict(revisit_frames=len(pairs), pairs=[[int(i), int(j)] for i, j in pairs],
                    consistency={p: nan_to_none(np.mean(metrics.psnr_per_frame(s.frames[p][later], s.frames[p][first])))
                                 for p in ("plain", "lora")})

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
        busy = s.lock.locked()
        return dict(busy=busy, stage=s.stage if busy else "idle", chunks=len(s.actions),
                    elapsed=round(time.time() - s.started, 1) if busy and s.started else 0.0,
                    expected=s.last_seconds)

    def gif(self, s):
        """The episode so far, without fast learning | with TEMP-LoRA | truth, as GIF bytes."""
        truth, _ = data.render_episode(s.seed, s.actions, s.cfg.world())
        video = side_by_side([s.frames["plain"], s.frames["lora"], truth[s.base:]])
        return iio.imwrite("<bytes>", video, extension=".gif", duration=125, loop=0)

    def save_memory(self, s):
        """The TEMP-LoRA panel's memory as generate.py --memory-out writes it (plus the world seed), as bytes."""
        if s.memory["lora"] is None:
            raise Refused(400, "no memory yet: play at least one chunk first")
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "memory.pt")
            replace(s.memory["lora"], world_seed=s.seed).save(path)
            with open(path, "rb") as f:
                return f.read()

    def load_memory(self, s, blob):
        """Continue the TEMP-LoRA panel from a memory file (generate.py --memory-out); see the module docstring."""
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "memory.pt")
            with open(path, "wb") as f:
                f.write(blob)
            try:
                mem = sfvgen.Memory.load(path)  # weights_only: a file cannot run code
            except ValueError as e:
                raise Refused(400, "memory file: " + str(e).replace(path + ": ", "")) from None
        cfg, K = s.cfg, s.cfg.chunk
        if any(a not in data.ACTIONS for a in mem.actions):
            raise Refused(400, f"memory file: 'actions' must be actions from {list(data.ACTIONS)}")
        if not 0 < mem.chunk < self.max_chunks:
            raise Refused(400, f"memory file holds {mem.chunk} chunks; episodes here are 1..{self.max_chunks - 1} chunks before the next")
        shape = (1, cfg.latent_channels or 3, *(2 * [cfg.size // 4 if cfg.latent_channels else cfg.size]))
        if any(not h.is_floating_point() or (h.shape[0], *h.shape[2:]) != shape for h in mem.history):
            raise Refused(400, f"memory file: 'history' must be (1, n, {', '.join(map(str, shape[1:]))}) tensors for this model")
        seed = s.seed if mem.world_seed is None else mem.world_seed
        if not 0 <= seed <= MAX_SEED:
            raise Refused(400, f"memory file: world_seed {seed!r} is not in 0..{MAX_SEED}")
        # the LoRA targets follow from the file's keys (the fast steps stay this session's setting)
        for targets in sfvgen.LORA_TARGETS:
            m = sfvgen.with_lora(self.model, replace(cfg, lora_targets=targets))
            if set(mem.lora) == set(sfvgen.lora_state(m)):
                break
        else:
            raise Refused(400, f"memory file: its LoRA layers are not those of any of {list(sfvgen.LORA_TARGETS)} on this model")
        try:  # the checks generate_long makes at the next chunk, made now, before the episode is replaced
            sfvgen.load_lora_state(m, mem.lora)
            torch.optim.Adam(sfvgen.lora_parameters(m), lr=cfg.fast_lr).load_state_dict(mem.copy().opt)
            torch.Generator().set_state(mem.gen)
            torch.Generator().set_state(mem.fast_gen)
        except (ValueError, TypeError, KeyError, RuntimeError) as e:
            raise Refused(400, f"memory file does not fit this model: {(str(e).splitlines() or [''])[0][:200]}") from None
        s.reset(self, seed, cfg.fast_steps, targets)
        last = sfvgen.to_frames(mem.history[-1][:, -1:], self.model.autoencoder)[0]  # (1, H, W, 3): where it continues
        s.memory = {"lora": mem, "plain": replace(mem, lora={}, opt={})}  # the same context and noise, no fast weights
        s.actions, s.base, chunk = list(mem.actions), mem.chunk * K, mem.chunk
        s.frames = {"plain": last, "lora": last}
        s.loaded = f"memory of {chunk} chunks in world {seed}"
        return self.state(s)


# ----------------------------------------------------------------------------- HTTP
class Handler(BaseHTTPRequestHandler):
    server_version = "sfvgen-play"
    timeout = 60  # seconds a client may take to send its request
    sid = None    # the session a reply's cookie names

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (another method: 501, a malformed request line: 400, ...) as one-line JSON too."""
        self.close_connection = True
        message = message or self.responses.get(code, ("error",))[0]
        self.send(code, {"error": message + ("; this server takes GET and POST" if code == 501 else "")})

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            super().log_message(fmt, *args)

    def do_GET(self):
        self.handle_request("GET")

    def do_POST(self):
        self.handle_request("POST")

    def handle_request(self, method):
        app, path = self.server.app, urlsplit(self.path).path
        self.sid = None
        try:
            routes = {("GET", "/"): None, ("GET", "/api/state"): None, ("GET", "/api/progress"): None,
                      ("GET", "/api/gif"): None, ("GET", "/api/memory"): None, ("POST", "/api/step"): "json",
                      ("POST", "/api/reset"): "json", ("POST", "/api/memory"): "bytes"}
            if (method, path) not in routes:
                known = [f"{m} {p}" for m, p in routes]
                raise Refused(404, f"unknown {method} {path}; the paths are: {', '.join(known)}")
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            if self.server.loopback and host not in ("127.0.0.1", "localhost", "[::1]"):
                raise Refused(400, f"Host {host!r}: this server answers only to 127.0.0.1 or localhost")  # no DNS rebinding
            kind = routes[(method, path)]
            body = self.read_body(kind) if kind else None  # before the session: a refused body costs nothing
            s = app.session(self.cookie_session())
            self.sid = s.sid
            if path == "/":
                return self.send(200, PAGE.encode(), "text/html; charset=utf-8")
            if path == "/api/progress":
                return self.send_json(200, app.progress(s))
            if not s.lock.acquire(blocking=False):
                raise Refused(409, "this session is generating a chunk; wait for it (GET /api/progress)")
            try:  # the answer is made under the lock and sent after it: the client's next request finds it free
                s.started = time.time()
                reply = self.answer(app, s, method, path, body)
                if path == "/api/step":
                    s.last_seconds = round(time.time() - s.started, 2)
            finally:
                s.stage = "idle"
                s.lock.release()
            self.send(*reply)
        except Refused as e:
            self.send_json(e.status, {"error": e.message})
        except Exception as e:  # the server keeps serving; the one line says what went wrong
            print(f"error on {method} {path}: {type(e).__name__}: {e}", file=sys.stderr)
            self.send_json(500, {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"})

    def answer(self, app, s, method, path, body):
        """(status, payload, content type[, attachment]) of a request that needs the session's lock."""
        if path == "/api/state":
            return 200, app.state(s)
        if path == "/api/reset":
            return 200, app.reset(s, body)
        if path == "/api/step":
            return 200, app.step(s, body)
        if path == "/api/gif":
            return 200, app.gif(s), "image/gif", "episode.gif"
        if method == "GET":  # /api/memory
            return 200, app.save_memory(s), "application/octet-stream", "memory.pt"
        return 200, app.load_memory(s, body)

    def cookie_session(self):
        jar = cookies.SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except cookies.CookieError:
            return None
        return jar[COOKIE].value if COOKIE in jar else None

    def read_body(self, kind):
        """The request body, refused (411, 413, 415) before it is read when it is not what the path takes."""
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
        try:
            body = json.loads(blob or b"{}")
        except ValueError:
            raise Refused(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise Refused(400, "the body must be a JSON object")
        return body

    def send_json(self, status, obj):
        self.send(status, obj)

    def send(self, status, payload, ctype=None, attachment=None):
        if ctype is None:  # a dict: JSON
            payload, ctype = (json.dumps(payload) + "\n").encode(), "application/json"
        try:  # a client gone mid-chunk: its chunk stays in the session, the server keeps serving
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            if attachment:
                self.send_header("Content-Disposition", f'attachment; filename="{attachment}"')
            if self.sid:
                self.send_header("Set-Cookie", f"{COOKIE}={self.sid}; Path=/; HttpOnly; SameSite=Strict")
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def make_server(model, cfg, host="127.0.0.1", port=8000, max_chunks=64, max_sessions=8, quiet=False):
    """The HTTP server (not yet serving): server.serve_forever() in any thread, server.shutdown() to stop."""
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.app, server.quiet = App(model, cfg, max_chunks, max_sessions), quiet
    server.loopback = host in ("127.0.0.1", "localhost", "::1")  # then a page elsewhere cannot reach it by DNS tricks
    return server


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py (or its --export)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0: any free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; anything but 127.0.0.1 opens it to the network")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cuda, mps or cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    p.add_argument("--max-chunks", type=int, default=64, help="chunks per episode")
    p.add_argument("--max-sessions", type=int, default=8, help="sessions kept at once (the least recently used goes)")
    args = p.parse_args(argv)
    if args.max_chunks < 1 or args.max_sessions < 1:
        p.error("--max-chunks and --max-sessions must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = cli.pick_device(args.device)
    model, cfg, _ = sfvgen.load_model(args.ckpt, device)
    server = make_server(model, cfg, args.host, args.port, args.max_chunks, args.max_sessions)
    host, port = server.server_address[:2]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can use the server")
    print(f"play: http://{host}:{port}/  ({args.ckpt} on {device}; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# ----------------------------------------------------------------------------- the page
PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sfvgen: play in the world model</title>
<style>
 body { font: 14px/1.4 system-ui, sans-serif; background: #16181d; color: #e4e6eb; margin: 16px; }
 h1 { font-size: 18px; margin: 0 0 10px; } .dim { color: #9aa0aa; }
 .panels { display: flex; gap: 18px; }
 .panel { text-align: center; } .panel h2 { font-size: 14px; margin: 0 0 6px; }
 .panel img { width: 256px; height: 256px; image-rendering: pixelated; image-rendering: crisp-edges;
              background: #000; border: 1px solid #444; display: block; }
 .num { font: 14px ui-monospace, monospace; margin-top: 6px; min-height: 4.2em; }
 .good { color: #7fd37f; } .bad { color: #f08a7e; }
 .controls { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; margin: 14px 0; }
 .pad { display: grid; grid-template-columns: repeat(3, 44px); gap: 4px; }
 button, select, input { font: inherit; background: #2a2e37; color: #e4e6eb; border: 1px solid #555;
                         border-radius: 4px; padding: 4px 8px; }
 button:hover { background: #3a3f4b; } button:disabled { opacity: .45; }
 .pad button { height: 36px; padding: 0; } fieldset { border: 1px solid #444; border-radius: 6px; }
 #bar { width: 260px; height: 8px; background: #333; border-radius: 4px; overflow: hidden; display: inline-block; }
 #fill { height: 100%; width: 0; background: #5b9cf0; transition: width .25s linear; }
 .busy #fill { background: repeating-linear-gradient(45deg, #5b9cf0 0 8px, #7fb2f5 8px 16px); }
 table { border-collapse: collapse; font: 13px ui-monospace, monospace; } td, th { padding: 2px 8px; text-align: right; }
 th { color: #9aa0aa; font-weight: normal; border-bottom: 1px solid #444; text-align: center; }
 td { white-space: nowrap; } td.l { text-align: left; }
 #err { color: #f08a7e; }
</style></head><body>
<h1>Play in the world model <span class="dim">(arrow keys move the camera; s = stay, b = go back)</span></h1>
<div class="panels">
 <div class="panel"><h2>without fast learning</h2><img id="img-plain" alt="without fast learning">
  <div class="num" id="num-plain"></div></div>
 <div class="panel"><h2>with TEMP-LoRA (fast learning)</h2><img id="img-lora" alt="with TEMP-LoRA">
  <div class="num" id="num-lora"></div></div>
 <div class="panel"><h2>ground truth (simulator)</h2><img id="img-truth" alt="ground truth"><div class="num" id="num-truth"></div></div>
</div>
<div><span id="bar"><span id="fill" style="display:block"></span></span>
 <span id="status" class="dim">loading</span> <span id="err"></span></div>
<div class="controls">
 <fieldset><legend>move (one chunk each)</legend><div class="pad">
  <span></span><button data-a="go up" title="go up (&uarr;)">&uarr;</button><span></span>
  <button data-a="go left" title="go left (&larr;)">&larr;</button><button data-a="stay" title="stay (s)">&bull;</button>
  <button data-a="go right" title="go right (&rarr;)">&rarr;</button>
  <span></span><button data-a="go down" title="go down (&darr;)">&darr;</button><span></span>
 </div><button data-a="go back" style="margin-top:4px;width:140px" title="retrace the last move (b)">go back</button></fieldset>
 <fieldset><legend>episode</legend>
  world seed <input id="seed" type="number" min="0" style="width:90px"> <button id="reset">reset</button><br>
  fast steps <select id="steps"></select> LoRA on <select id="targets"></select> <span class="dim">(a change resets)</span><br>
  <button id="replay">replay episode</button> <button id="gif">save GIF</button>
  <button id="save">save memory</button> <button id="loadbtn">load memory</button>
  <input id="load" type="file" accept=".pt" hidden>
  <div class="dim" id="info"></div></fieldset>
</div>
<table id="rows"><thead>
 <tr><th rowspan="2">chunk</th><th rowspan="2" class="l">action</th><th colspan="2">PSNR vs truth (dB)</th>
  <th rowspan="2">revisit<br>frames</th><th colspan="2">consistency (dB)</th><th rowspan="2">seconds</th></tr>
 <tr><th>no FL</th><th>TEMP-LoRA</th><th>no FL</th><th>TEMP-LoRA</th></tr></thead><tbody></tbody></table>
<p class="dim">PSNR: the chunk against the simulator (higher = closer). Consistency: the chunk's frames at a pose first
seen before its context chunk against the same panel's frames of that first visit (SRC-PSNR) &mdash; where memory
should pay when you walk back; green marks the panel that kept the place better. Episode means: PSNR / consistency.</p>
<script>
"use strict";
const $ = id => document.getElementById(id);
const KEYS = {ArrowLeft: "go left", ArrowRight: "go right", ArrowUp: "go up", ArrowDown: "go down", s: "stay", b: "go back"};
let state = null, busy = false, queue = [], episode = [];
const fmt = x => x === null || x === undefined ? "&ndash;" : x.toFixed(2);

async function api(path, body, type) {
  const opt = body === undefined ? {} : {method: "POST", body: type ? body : JSON.stringify(body),
                                        headers: {"Content-Type": type || "application/json"}};
  const r = await fetch(path, opt);
  if (!r.ok) { let m = r.status + ""; try { m += ": " + (await r.json()).error; } catch (e) {} throw new Error(m); }
  return r;
}
function show(frames) { for (const p of ["plain", "lora", "truth"]) $("img-" + p).src = "data:image/png;base64," + frames[p]; }
const sleep = ms => new Promise(res => setTimeout(res, ms));
async function animate(frames) {  // a chunk's frames as a short animation, then the last one stays
  for (let i = 0; i < frames.truth.length; i++) {
    show({plain: frames.plain[i], lora: frames.lora[i], truth: frames.truth[i]});
    await sleep(125);
  }
}
function numbers(row, summary) {
  for (const p of ["plain", "lora"]) {
    const other = p === "plain" ? "lora" : "plain";
    let h = row ? `chunk ${row.index}: PSNR ${fmt(row.psnr[p])} dB` : "start frame";
    if (row && row.revisit_frames) {
      const better = row.consistency[p] >= row.consistency[other];
      h += `<br><span class="${better ? "good" : "bad"}">revisit consistency ${fmt(row.consistency[p])} dB</span>`;
    }
    h += `<br><span class="dim">episode means: ${fmt(summary[p].psnr)} / ${fmt(summary[p].consistency)} dB</span>`;
    $("num-" + p).innerHTML = h;
  }
  const move = row && row.action !== row.move ? ` (= ${row.move})` : "";
  $("num-truth").innerHTML = row ? `chunk ${row.index}: ${row.action}${move}` : "start frame";
}
function addRow(r) {
  const tr = document.createElement("tr");
  tr.innerHTML = `<td>${r.index}</td><td class="l">${r.action}</td><td>${fmt(r.psnr.plain)}</td><td>${fmt(r.psnr.lora)}</td>` +
    `<td>${r.revisit_frames || ""}</td><td>${fmt(r.consistency.plain)}</td><td>${fmt(r.consistency.lora)}</td>` +
    `<td>${(r.seconds.plain + r.seconds.lora).toFixed(1)}</td>`;
  $("rows").tBodies[0].prepend(tr);
}
function setState(s) {
  state = s; episode = [];
  $("seed").value = s.settings.seed;
  for (const [id, key] of [["steps", "fast_steps"], ["targets", "lora_targets"]]) {
    $(id).innerHTML = s.accepted[key].map(v => `<option${v === s.settings[key] ? " selected" : ""}>${v}</option>`).join("");
  }
  $("rows").tBodies[0].innerHTML = ""; s.rows.forEach(addRow);
  show(s.current); numbers(s.rows[s.rows.length - 1], s.summary);
  $("info").textContent = (s.loaded ? "continuing a loaded " + s.loaded + "; " : "") + `${s.chunks} / ${s.max_chunks} chunks`;
}
function setBusy(b, text) {
  busy = b; document.body.classList.toggle("busy", b);
  for (const el of document.querySelectorAll("button, select, input")) el.disabled = b;
  $("status").textContent = text;
}
async function poll() {  // the progress bar: this chunk's elapsed time over the last chunk's
  while (busy) {
    try {
      const p = await (await fetch("/api/progress")).json();
      if (p.busy) {
        $("status").textContent = `dreaming chunk ${p.chunks + 1}: ${p.stage} (${p.elapsed.toFixed(1)} s)`;
        $("fill").style.width = (p.expected ? Math.min(95, 100 * p.elapsed / p.expected) : 50) + "%";
      }
    } catch (e) {}
    await sleep(300);
  }
}
async function run(job, text) {
  if (busy) return false;
  setBusy(true, text); $("err").textContent = ""; $("fill").style.width = "3%"; poll();
  try { await job(); } catch (e) { $("err").textContent = e.message; queue = []; }
  setBusy(false, "ready"); $("fill").style.width = "100%";
  setTimeout(drain, 0);  // actions pressed during a reset or download
  return true;
}
async function step(a) {
  const out = await (await api("/api/step", {action: a})).json();
  episode.push(out.frames); addRow(out.row);
  $("info").textContent = (state.loaded ? "continuing a loaded " + state.loaded + "; " : "") + `${out.chunks} / ${state.max_chunks} chunks`;
  numbers(out.row, out.summary);
  await animate(out.frames);
}
async function drain() {
  while (queue.length && !busy) { const a = queue.shift(); await run(() => step(a), `dreaming: ${a}`); }
  if (!queue.length && !busy) $("status").textContent = "ready" + (state ? ` (${state.max_chunks} chunks at most)` : "");
}
function act(a) { if (queue.length < 4) queue.push(a); drain(); }
async function reset(body) { await run(async () => setState(await (await api("/api/reset", body)).json()), "resetting"); }
function download(path) { run(async () => {
  const blob = await (await api(path)).blob(), a = document.createElement("a");
  a.href = URL.createObjectURL(blob); a.download = path.endsWith("gif") ? "episode.gif" : "memory.pt"; a.click();
}, "preparing the download"); }

document.addEventListener("keydown", e => {
  if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
  if (KEYS[e.key]) { e.preventDefault(); act(KEYS[e.key]); }
});
for (const b of document.querySelectorAll("button[data-a]")) b.onclick = () => act(b.dataset.a);
$("reset").onclick = () => reset({seed: Number($("seed").value)});
$("steps").onchange = () => reset({fast_steps: Number($("steps").value)});
$("targets").onchange = () => reset({lora_targets: $("targets").value});
$("gif").onclick = () => download("/api/gif");
$("save").onclick = () => download("/api/memory");
$("loadbtn").onclick = () => $("load").click();
$("load").onchange = () => { const f = $("load").files[0];
  if (f && f.size > 8 * 1024 * 1024) { $("err").textContent = "memory files are at most 8 MiB"; return; }
  if (f) run(async () =>
  setState(await (await api("/api/memory", await f.arrayBuffer(), "application/octet-stream")).json()), "loading the memory"); };
$("replay").onclick = () => run(async () => { for (const f of episode) await animate(f); }, "replaying");

(async () => {
  await run(async () => {  // a reload while this session's chunk is still generating: 409 until it is done
    for (let i = 0; ; i++) {
      try { return setState(await (await api("/api/state")).json()); }
      catch (e) { if (!e.message.startsWith("409") || i > 300) throw e; await sleep(1000); }
    }
  }, "loading");
  const auto = new URLSearchParams(location.search).get("auto");  // ?auto=go right,go left: play these
  if (auto) { for (const a of auto.split(",")) queue.push(a.trim()); drain(); }
})();
</script></body></html>
"""

if __name__ == "__main__":
    main()
