"""play.py: the page's frames are exactly generate_long's, the server refuses what it does not know, and a browser
can drive it. The server runs in a thread on a free port with the committed tiny checkpoint (4 denoising steps,
so a chunk takes about a second on a CPU)."""
import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace

import imageio.v3 as iio
import numpy as np
import pytest

import data
import metrics
import play
import sfvgen

CKPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoints", "tiny.pt")


@pytest.fixture(scope="module")
def served():
    model, cfg, _ = sfvgen.load_model(CKPT)
    cfg = replace(cfg, sample_steps=4)  # a faster sampler; the comparison below uses the same config
    server = play.make_server(model, cfg, port=0, max_chunks=4, max_sessions=4, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, model, cfg
    finally:  # always: the port and the thread go with the test module
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class Client:
    """urllib with the session cookie kept."""

    def __init__(self, server):
        self.base, self.cookie = "http://127.0.0.1:%d" % server.server_address[1], None

    def call(self, path, body=None, ctype="application/json"):
        raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=raw, headers={"Content-Type": ctype} if raw is not None else {})
        if self.cookie:
            req.add_header("Cookie", self.cookie)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                status, payload, headers = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, payload, headers = e.code, e.read(), e.headers
        if headers.get("Set-Cookie"):
            self.cookie = headers["Set-Cookie"].split(";")[0]
        return status, payload

    def json(self, path, body=None):
        status, payload = self.call(path, body)
        assert status == 200, payload
        return json.loads(payload)


def unpng(b64):
    return iio.imread(base64.b64decode(b64), extension=".png")


def refused(status_payload, status):
    """The documented refusal: the status and a one-line JSON error."""
    got, payload = status_payload
    assert got == status, payload
    assert payload.endswith(b"\n") and payload.count(b"\n") == 1
    return json.loads(payload)["error"]


def test_frames_are_generate_longs_and_memory_continues_exactly(served, tmp_path):
    server, model, cfg = served
    c = Client(server)
    state = c.json("/api/reset", {"seed": cfg.test_seeds[0] + 3, "fast_steps": 1})  # a setting: on both sides below
    cfg1 = replace(cfg, fast_steps=1)
    actions = ["go right", "go right", "go left", "go left"]
    shown = {p: [unpng(state["current"][p])[None]] for p in play.PANELS}
    for k, a in enumerate(actions):
        out = c.json("/api/step", {"action": a})
        for p in play.PANELS:
            shown[p].append(np.stack([unpng(f) for f in out["frames"][p]]))
        if k == 1:  # the memory after two chunks, in generate.py's --memory-in format
            status, memory_file = c.call("/api/memory")
            assert status == 200
    shown = {p: np.concatenate(v) for p, v in shown.items()}
    truth, _ = data.render_episode(cfg.test_seeds[0] + 3, actions, cfg.world())
    plain = sfvgen.generate_long(model, server.app.diffusion, cfg1, truth[0], actions, fast_learning=False, seed=cfg.seed)
    lora = sfvgen.generate_long(sfvgen.with_lora(model, cfg1), server.app.diffusion, cfg1, truth[0], actions,
                                fast_learning=True, seed=cfg.seed)
    assert np.array_equal(shown["plain"], plain["frames"])
    assert np.array_equal(shown["lora"], lora["frames"])
    assert not np.array_equal(shown["plain"], shown["lora"])  # the fast weights changed the video
    assert np.array_equal(shown["truth"], truth)
    # the last chunk walks back over poses first seen more than a context window (2K = 8 frames) before: the revisits
    # SRC scores (metrics.revisit_pairs), frames 13..16 back to 3..0
    row = out["row"]
    pairs = [[i, j] for i, j in metrics.revisit_pairs(data.render_episode(cfg.test_seeds[0] + 3, actions, cfg.world())[1], 8)]
    assert row["revisit_frames"] == 4 and row["pairs"] == pairs == [[3, 13], [2, 14], [1, 15], [0, 16]]
    assert row["consistency"]["lora"] == round(np.mean([metrics.psnr(shown["lora"][j], shown["lora"][i]) for i, j in pairs]), 2)
    assert row["psnr"]["plain"] == round(metrics.psnr(shown["plain"][13:], truth[13:]), 2)
    # the episode limit (4 chunks here) is refused
    assert "limit of 4 chunks" in refused(c.call("/api/step", {"action": "stay"}), 400)
    # the GIF: three 32x32 panels side by side, scaled by 4, a frame per frame of the episode
    status, gif = c.call("/api/gif")
    assert status == 200 and iio.imread(gif, extension=".gif", index=None).shape[:3] == (17, 128, 4 * (3 * 32 + 4))
    # the memory file is generate.py's --memory-in format; loaded, it continues the TEMP-LoRA panel exactly where the
    # saved episode went on, and the panel without fast learning from the same context with no fast weights
    path = tmp_path / "memory.pt"
    path.write_bytes(memory_file)
    mem = sfvgen.Memory.load(str(path))
    assert mem.actions == actions[:2] and mem.chunk == 2 and mem.world_seed == cfg.test_seeds[0] + 3
    other = Client(server)
    other.json("/api/reset", {"fast_steps": 1})
    status, payload = other.call("/api/memory", memory_file, "application/octet-stream")
    assert status == 200, payload
    state = json.loads(payload)
    assert state["chunks"] == 2 and state["settings"]["seed"] == cfg.test_seeds[0] + 3
    assert np.array_equal(unpng(state["current"]["lora"]), shown["lora"][8])
    out = other.json("/api/step", {"action": "go left"})
    cont = {p: np.stack([unpng(f) for f in out["frames"][p]]) for p in play.PANELS}
    assert np.array_equal(cont["lora"], shown["lora"][9:13])
    assert np.array_equal(cont["truth"], truth[9:13])
    ref = sfvgen.generate_long(model, server.app.diffusion, cfg1, None, ["go left"], fast_learning=False, seed=cfg.seed,
                               memory=replace(mem, lora={}, opt={}))
    assert np.array_equal(cont["plain"], ref["frames"])


def test_refusals_say_what_is_accepted(served):
    server, _, _ = served
    c = Client(server)
    c.json("/api/state")
    assert "go left, go right" in refused(c.call("/api/step", {"action": "jump"}), 400)
    assert "go left" in refused(c.call("/api/step", {"action": "go right", "speed": 9}), 400)
    assert "accepted: seed, fast_steps, lora_targets" in refused(c.call("/api/reset", {"sample_steps": 1}), 400)
    for seed in (-1, 2 ** 40, "7", 1.5, True):
        assert "an integer in 0.." in refused(c.call("/api/reset", {"seed": seed}), 400)
    assert "[1, 2, 4, 8, 16]" in refused(c.call("/api/reset", {"fast_steps": 3}), 400)
    assert "temporal" in refused(c.call("/api/reset", {"lora_targets": "mlp"}), 400)
    assert "not JSON" in refused(c.call("/api/step", b"go right"), 400)
    assert "Content-Type" in refused(c.call("/api/step", b'{"action": "stay"}', "text/plain"), 415)
    assert "at most 4096 bytes" in refused(c.call("/api/step", {"action": "x" * 5000}), 413)
    assert "memory file" in refused(c.call("/api/memory", b"not a checkpoint", "application/octet-stream"), 400)
    assert "no memory yet" in refused(c.call("/api/memory"), 400)
    assert "the paths are" in refused(c.call("/api/nothing"), 404)
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    conn.request("PUT", "/api/state")
    r = conn.getresponse()
    assert "GET and POST" in refused((r.status, r.read()), 501)
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    conn.request("GET", "/api/state", headers={"Host": "attacker.example"})  # a DNS-rebinding page
    r = conn.getresponse()
    assert r.status == 400 and b"answers only to 127.0.0.1" in r.read()
    conn.close()
    # a memory file over 8 MiB is refused from its header, before a byte of it is read
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    conn.putrequest("POST", "/api/memory")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(play.MEMORY_LIMIT + 1))
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 413 and b"at most 8388608 bytes" in r.read()
    conn.close()
    # a second request while this session generates: 409 (the session's lock held as a chunk would hold it)
    session = server.app.sessions[c.cookie.split("=")[1]]
    with session.lock:
        assert "generating" in refused(c.call("/api/step", {"action": "stay"}), 409)
        assert json.loads(c.call("/api/progress")[1])["busy"]  # progress is still answered
    assert c.json("/api/state")["chunks"] == 0  # nothing was played


def test_a_client_gone_mid_chunk_leaves_the_server_serving(served, capfd):
    server, _, _ = served
    c = Client(server)
    c.json("/api/state")
    body = json.dumps({"action": "go up"}).encode()
    with socket.create_connection(("127.0.0.1", server.server_address[1])) as sock:
        sock.sendall(b"POST /api/step HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Cookie: " + c.cookie.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        time.sleep(0.3)  # the chunk has started; the client goes away
    deadline = time.time() + 60
    while json.loads(c.call("/api/progress")[1])["busy"] and time.time() < deadline:
        time.sleep(0.1)
    assert c.json("/api/state")["chunks"] == 1  # the chunk was kept, and the server answers
    assert "Error" not in capfd.readouterr().err  # the broken pipe was expected, not an error with a traceback


def test_sessions_are_capped_the_least_recently_used_goes(served):
    server, _, _ = served
    first = Client(server)
    first.json("/api/state")
    for _ in range(server.app.max_sessions):
        Client(server).json("/api/state")
    assert len(server.app.sessions) == server.app.max_sessions
    assert first.cookie.split("=")[1] not in server.app.sessions
    assert first.json("/api/state")["chunks"] == 0  # an evicted player gets a fresh episode


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.heavy  # starts a browser
@pytest.mark.skipif(find_chromium() is None, reason="no chromium binary on PATH (Debian: apt-get install chromium)")
def test_a_browser_plays_the_page(served, tmp_path):
    server, _, _ = served
    before = set(server.app.sessions)
    shot = tmp_path / "play.png"
    url = "http://127.0.0.1:%d/?auto=%s" % (server.server_address[1], urllib.parse.quote("go right,go left"))
    # virtual time waits for the page's fetches, so the auto-played chunks are on the screenshot
    cmd = [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=900,760",
           "--virtual-time-budget=20000", url]
    subprocess.run(cmd, timeout=120, capture_output=True)
    assert shot.exists(), "chromium wrote no screenshot"
    image = iio.imread(shot)
    assert image.shape[:2] == (760, 900) and image.std() > 10
    played = [s for sid, s in server.app.sessions.items() if sid not in before]
    assert [s.actions for s in played] == [["go right", "go left"]]  # the page played the actions from ?auto=
