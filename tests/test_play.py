"""play.py: the page's frames are exactly generate_long's, the server refuses what it does not know in one plain line,
a request that only reads makes no session (the eviction of a playing episode by a few polls is gone), the memory
view is the probe it says, your own video can be the truth, and a browser can drive the page. The servers run in
threads on free ports with the committed tiny checkpoint (4 denoising steps, so a chunk takes about a second)."""
import base64
import contextlib
import http.client
import json
import os
import pickle
import re
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
import torch

import data
import metrics
import play
import sfvgen
import video

CKPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoints", "tiny.pt")


@pytest.fixture(scope="module")
def loaded():
    model, cfg, _ = sfvgen.load_model(CKPT)
    return model, replace(cfg, sample_steps=4)  # a faster sampler; the comparisons below use the same config


@contextlib.contextmanager
def serving(model, cfg, **kwargs):
    """A play server in a thread on a free port, shut down (port and thread) when the block ends."""
    server = play.make_server(model, cfg, port=0, quiet=kwargs.pop("quiet", True), **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def served(loaded):
    model, cfg = loaded
    with serving(model, cfg, max_chunks=4, max_sessions=16) as server:
        yield server, model, cfg


class Client:
    """urllib with the session cookie kept (a cleared cookie is dropped)."""

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
            self.cookie = None if "Max-Age=0" in headers["Set-Cookie"] else headers["Set-Cookie"].split(";")[0]
        return status, payload

    def json(self, path, body=None):
        status, payload = self.call(path, body)
        assert status == 200, payload
        return json.loads(payload)

    @property
    def sid(self):
        return self.cookie.split("=")[1]


def unpng(b64):
    return iio.imread(base64.b64decode(b64), extension=".png")


def refused(status_payload, status):
    """The documented refusal: the status and a one-line JSON error in plain words (no traceback, no torch advice)."""
    got, payload = status_payload
    assert got == status, payload
    assert payload.endswith(b"\n") and payload.count(b"\n") == 1
    message = json.loads(payload)["error"]
    assert not re.search(r"Traceback|weights_only|torch\.load|Error:|KeyError", message), message
    return message


def raw_request(server, blob, timeout=30):
    """Send raw bytes, return everything the server answers before it closes the connection."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=timeout) as sock:
        sock.sendall(blob)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


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
        if k == 1:  # the memory after two chunks, in generate.py's --memory-in format; and a look into it
            status, memory_file = c.call("/api/memory")
            assert status == 200
            assert c.json("/api/memory-view")["after_chunk"] == 2  # a look changes nothing: the frames below are exact
    shown = {p: np.concatenate(v) for p, v in shown.items()}
    truth, positions = data.render_episode(cfg.test_seeds[0] + 3, actions, cfg.world())
    plain = sfvgen.generate_long(model, server.app.diffusion, cfg1, truth[0], actions, fast_learning=False, seed=cfg.seed)
    lora = sfvgen.generate_long(sfvgen.with_lora(model, cfg1), server.app.diffusion, cfg1, truth[0], actions,
                                fast_learning=True, seed=cfg.seed)
    assert np.array_equal(shown["plain"], plain["frames"])
    assert np.array_equal(shown["lora"], lora["frames"])
    assert not np.array_equal(shown["plain"], shown["lora"])  # the fast weights changed the video
    assert np.array_equal(shown["truth"], truth)
    # the replay's frames (GET /api/frames) are the same, after the fact
    replay = c.json("/api/frames")["frames"]
    for p in play.PANELS:
        assert np.array_equal(np.stack([unpng(f) for f in replay[p]]), shown[p])
    # the last chunk walks back over poses first seen more than two chunks (2K = 8 frames) before: the revisits SRC
    # scores (metrics.revisit_pairs, the project's one definition), frames 13..16 back to 3..0
    row = out["row"]
    pairs = [[i, j] for i, j in metrics.revisit_pairs(positions, 8)]
    assert row["revisit_frames"] == 4 and row["pairs"] == pairs == [[3, 13], [2, 14], [1, 15], [0, 16]]
    assert row["consistency"]["lora"] == round(np.mean([metrics.psnr(shown["lora"][j], shown["lora"][i]) for i, j in pairs]), 2)
    assert row["psnr"]["plain"] == round(metrics.psnr(shown["plain"][13:], truth[13:]), 2)
    # the picture behind the consistency number: the first visit of the place (frame 0) and the return to it (16)
    view = out["revisit"]
    assert (view["first"], view["now"]) == (0, 16)
    for p in play.PANELS:
        assert np.array_equal(unpng(view["frames"][p][0]), shown[p][0]) and np.array_equal(unpng(view["frames"][p][1]), shown[p][16])
    # the episode limit (4 chunks here) is refused
    assert "limit of 4 chunks" in refused(c.call("/api/step", {"action": "stay"}), 400)
    # the GIF: video.panels of the three panels with their labels, scaled by 4, a frame per frame of the episode
    status, gif = c.call("/api/gif")
    gif = iio.imread(gif, extension=".gif", index=None)
    panel = 4 * (32 + 2)
    assert status == 200 and gif.shape[:3] == (17, 14 + 4 * (32 + 4), 3 * panel)
    for k, name in enumerate(play.GIF_LABELS):  # each panel carries its name in the strip above it
        assert np.abs(gif[0, :14, k * panel:(k + 1) * panel].astype(int) - video.label(name, panel)).max() < 16
    # the memory file is generate.py's --memory-in format; loaded, it continues the with-memory panel exactly where the
    # saved episode went on, and the no-memory panel from the same context with no fast weights
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
    assert state["loaded"]["text"].startswith("continuing a saved memory of 2 chunks")
    assert [(r["action"], r["loaded"], r["psnr"]["lora"]) for r in state["rows"]] == [("go right", True, None)] * 2
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
    c.json("/api/reset", {})
    assert "go left, go right" in refused(c.call("/api/step", {"action": "jump"}), 400)
    assert "go left" in refused(c.call("/api/step", {"action": "go right", "speed": 9}), 400)
    assert "accepted: seed, fast_steps, lora_targets" in refused(c.call("/api/reset", {"sample_steps": 1}), 400)
    for seed in (-1, 2 ** 40, "7", 1.5, True, None):
        assert "an integer in 0.." in refused(c.call("/api/reset", {"seed": seed}), 400)
    assert "[1, 2, 4, 8, 16]" in refused(c.call("/api/reset", {"fast_steps": 3}), 400)
    assert "temporal" in refused(c.call("/api/reset", {"lora_targets": "mlp"}), 400)
    assert "not JSON" in refused(c.call("/api/step", b"go right"), 400)
    assert "JSON object" in refused(c.call("/api/step", b'["go right"]'), 400)
    assert "Content-Type" in refused(c.call("/api/step", b'{"action": "stay"}', "text/plain"), 415)
    assert "at most 4096 bytes" in refused(c.call("/api/step", {"action": "x" * 5000}), 413)
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
    assert "answers only to 127.0.0.1" in refused((r.status, r.read()), 400)
    conn.close()
    # a memory file over 8 MiB is refused from its header, before a byte of it is read
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    conn.putrequest("POST", "/api/memory")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(play.MEMORY_LIMIT + 1))
    conn.endheaders()
    r = conn.getresponse()
    assert "at most 8388608 bytes" in refused((r.status, r.read()), 413)
    conn.close()
    # without a session there is nothing to download or look into (and asking makes none)
    n = len(server.app.sessions)
    for path in ("/api/gif", "/api/memory", "/api/frames", "/api/memory-view"):
        assert "no episode yet" in refused(Client(server).call(path), 400)
    assert len(server.app.sessions) == n
    # a second request while this session generates: 409 (the session's lock held as a chunk would hold it)
    session = server.app.sessions[c.sid]
    with session.lock:
        assert "busy" in refused(c.call("/api/step", {"action": "stay"}), 409)
        assert json.loads(c.call("/api/progress")[1])["busy"]  # progress is still answered
    assert c.json("/api/state")["chunks"] == 0  # nothing was played
    assert len(server.app.sessions) == n


def test_deep_json_is_refused_before_it_is_parsed(served):
    server, _, _ = served
    c = Client(server)
    c.json("/api/reset", {})
    n = len(server.app.sessions)
    deep = b"[" * 2000 + b"]" * 2000  # within the 4 KiB limit; json.loads would fail with a RecursionError
    for path in ("/api/step", "/api/reset"):
        assert "nested 2000 levels" in refused(c.call(path, deep), 400)
        assert "flat objects" in refused(c.call(path, b'{"action": [[[[[["go right"]]]]]]}'), 400)
        assert "flat objects" in refused(Client(server).call(path, b'{"a": ' * 500 + b"1" + b"}" * 500), 400)
    assert "unknown action" in refused(c.call("/api/step", {"action": "[[[[[[[[{{{{"}), 400)  # brackets in a string
    assert len(server.app.sessions) == n and c.json("/api/state")["chunks"] == 0


def test_a_garbled_request_gets_a_status_line(served):
    server, _, _ = served
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)).replace(b"\n", b"")
    for blob, status in ((b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + garbage + b"\r\n\r\n", 400),  # a TLS hello, say
                         (b"GET\r\n\r\n", 400), (b"HELLO / HTTP/9\r\n\r\n", 400), (b"GET / HTTP/2.0\r\n\r\n", 505),
                         (b"GET /api/progress HTTP/0.9\r\nHost: 127.0.0.1\r\n\r\n", 200)):  # 0.9 asked for: 1.0 answers
        answer = raw_request(server, blob)
        assert answer.startswith(b"HTTP/1.0 %d " % status), answer[:80]
        body = answer.split(b"\r\n\r\n", 1)[1]
        if status == 200:
            assert json.loads(body)["busy"] is False
        else:
            refused((status, body), status)


def test_files_that_are_not_a_memory_are_refused_in_plain_words(served, tmp_path):
    server, _, cfg = served
    c = Client(server)
    c.json("/api/reset", {})
    c.json("/api/step", {"action": "go right"})
    status, memory_file = c.call("/api/memory")
    assert status == 200
    marker = tmp_path / "ran"

    class AsksForCode:  # unpickled without safe loading, this would create `marker`
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    torch.save({"history": AsksForCode()}, evil)
    (tmp_path / "memory.pt").write_bytes(memory_file)
    mem = sfvgen.Memory.load(str(tmp_path / "memory.pt"))
    replace(mem, history=[torch.zeros(1, 4, 8, 8, 8)] * 2).save(str(tmp_path / "latent.pt"))  # a latent model's
    ckpt_bytes = open(CKPT, "rb").read()
    cases = {"model checkpoint": (ckpt_bytes, "model checkpoint, not a memory"),
             "random bytes": (bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)), "not a file torch.save wrote"),
             "random zip-looking bytes": (b"PK\x03\x04" + bytes(3000), "damaged or cut short"),
             "a truncated memory": (memory_file[:len(memory_file) // 2], "damaged or cut short"),
             "a pickle that asks for code": (evil.read_bytes(), "asks to run code"),
             "a memory of another model": ((tmp_path / "latent.pt").read_bytes(), "saved with another model"),
             "a plain pickle": (pickle.dumps({"history": []}), "not a file torch.save wrote"),
             "empty": (b"", "not a file torch.save wrote")}
    for name, (blob, says) in cases.items():
        message = refused(c.call("/api/memory", blob, "application/octet-stream"), 400)
        assert message.startswith("memory file: ") and says in message, (name, message)
    assert not marker.exists()
    assert c.json("/api/state")["chunks"] == 1  # the episode is as it was


def test_reads_make_no_session_so_polls_cannot_evict_a_player(loaded):
    """The issue: press right, 8 cookie-less curls to /api/progress, press right again: the episode was gone (each
    poll made a session and the 8th evicted the player's). Now the episode is intact: 2 of 64 chunks."""
    model, cfg = loaded
    with serving(model, cfg) as server:  # the defaults: 64 chunks, 8 sessions
        player = Client(server)
        player.json("/api/step", {"action": "go right"})  # a POST without a cookie: the episode starts here
        for _ in range(8):
            assert Client(server).json("/api/progress")["busy"] is False
        for path in ("/", "/api/state", "/favicon.ico"):  # neither the page, a fresh state, nor the icon makes one
            assert Client(server).call(path)[0] in (200, 204)
        assert list(server.app.sessions) == [player.sid]
        player.json("/api/step", {"action": "go right"})
        state = player.json("/api/state")
        assert (state["chunks"], state["max_chunks"]) == (2, 64) and not state["expired"]


def test_idle_sessions_give_their_place_active_ones_keep_it(loaded):
    model, cfg = loaded
    with serving(model, cfg, max_sessions=2) as server:
        a, b, newcomer = Client(server), Client(server), Client(server)
        a.json("/api/step", {"action": "go right"})
        b.json("/api/reset", {})
        # both players were active within the last minutes: the newcomer is told to wait, and nothing is made
        assert "try again in a few minutes" in refused(newcomer.call("/api/reset", {}), 503)
        assert newcomer.cookie is None and len(server.app.sessions) == 2
        server.app.sessions[a.sid].last_used -= play.IDLE_SECONDS + 1  # a leaves for more than five minutes
        newcomer.json("/api/reset", {})
        assert set(server.app.sessions) == {b.sid, newcomer.sid}
        # a's next step is told its episode expired (not silently a new one), and a state read says so too
        assert "your episode expired" in refused(a.call("/api/step", {"action": "go left"}), 410)
        assert a.cookie is None  # cleared, so the page starts a new episode
        a.cookie = "play_session=" + "0" * 32
        assert a.json("/api/state")["expired"] and a.cookie is None
        assert len(server.app.sessions) == 2  # a read made nothing, even for an expired player


def test_concurrent_steps_are_all_answered_one_plays(served):
    server, _, _ = served
    c = Client(server)
    c.json("/api/reset", {})
    n = len(server.app.sessions)
    results, body = [], json.dumps({"action": "go up"})
    start = threading.Barrier(20)

    def post():
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=120)
        start.wait()
        try:
            conn.request("POST", "/api/step", body, {"Content-Type": "application/json", "Cookie": c.cookie})
            r = conn.getresponse()
            results.append((r.status, r.read()))
        except OSError as e:  # a reset connection would land here
            results.append((None, repr(e).encode()))
        finally:
            conn.close()

    threads = [threading.Thread(target=post) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    statuses = sorted(s for s, _ in results)
    assert len(results) == 20 and set(statuses) <= {200, 400, 409}, results  # all answered; 400: the 4-chunk limit
    assert all("busy" in refused((s, p), 409) for s, p in results if s == 409)
    played = statuses.count(200)
    assert played >= 1 and c.json("/api/state")["chunks"] == played  # no step was lost, none reset the episode
    assert len(server.app.sessions) == n  # and none made a session
    assert play.Server.request_queue_size == 64  # the listen backlog: a burst waits instead of being reset


def test_the_first_panel_arrives_before_the_second(served):
    server, _, _ = served
    c = Client(server)
    c.json("/api/reset", {"fast_steps": 16})  # the with-memory panel learns long after the other is done
    c.json("/api/step", {"action": "go right"})  # the first chunk also copies the model for the fast weights
    out = {}
    thread = threading.Thread(target=lambda: out.update(c.json("/api/step", {"action": "go down"})))
    thread.start()
    early = None
    while thread.is_alive():
        p = c.json("/api/progress")
        if p["busy"] and "plain" in p["partial"] and "lora" not in p["partial"]:
            early = p
        time.sleep(0.05)
    thread.join()
    assert early is not None, "no progress answer held the no-memory panel alone"
    assert early["partial"]["plain"] == out["frames"]["plain"] and early["partial"]["truth"] == out["frames"]["truth"]
    assert early["stage"].startswith("with memory")
    assert out["row"]["seconds"]["plain"] < out["row"]["seconds"]["lora"] <= out["row"]["seconds"]["both"]


def test_the_memory_view_is_the_probe_it_says(served):
    """The last window the fast rule learned, noised to t = T/2 with the fixed noise, denoised once by Phi + Theta and
    by Phi alone (= Phi + a fresh LoRA): the numbers are that computation's, and on the window just learned (16 fast
    steps) the fast weights get closer to it than the slow weights alone."""
    server, model, cfg = served
    c = Client(server)
    c.json("/api/reset", {"fast_steps": 16})
    for a in ("go right", "go right", "go down"):
        c.json("/api/step", {"action": a})
    view = c.json("/api/memory-view")
    assert view["after_chunk"] == 3 and view["t"] == cfg.timesteps // 2
    assert [w["age"] for w in view["windows"]] == [0, 1, 2] and [w["chunks"] for w in view["windows"]] == [[2, 3], [1, 2], [0, 1]]
    assert "pictures" in view["windows"][0] and "pictures" in view["windows"][-1]  # the last window and the first
    mem = server.app.sessions[c.sid].memory["lora"]
    x0 = torch.cat(mem.history[-2:], dim=1)
    t = torch.tensor(view["t"])
    x_t = server.app.diffusion.q_sample(x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)))
    lora = sfvgen.with_lora(model, replace(cfg, fast_steps=16))
    sfvgen.load_lora_state(lora, mem.lora)
    window = sfvgen.to_frames(x0)[0]
    for name, m in (("lora", lora), ("plain", model)):
        with torch.no_grad():
            pred = m(x_t, torch.full(x_t.shape[:2], int(t)), sfvgen.null_tokens(1, "cpu"), 0)
        made = sfvgen.to_frames(server.app.diffusion.x0_eps(x_t, t, pred)[0])[0]
        assert view["windows"][0]["psnr"][name] == round(metrics.psnr(made, window), 2)
        assert np.array_equal(unpng(view["windows"][0]["pictures"][name]), play_strip(made))
    assert np.array_equal(unpng(view["windows"][0]["pictures"]["window"]), play_strip(window))
    assert view["windows"][0]["gain"] > 0  # the fast weights hold the window they just learned
    assert c.json("/api/state")["chunks"] == 3


def play_strip(frames):
    return unpng(play.strip64(frames))


def test_your_video_is_the_truth_while_the_actions_follow_it(loaded, tmp_path):
    model, cfg = loaded
    K, folder = cfg.chunk, tmp_path / "mine"
    folder.mkdir()
    with open(folder / "annotations.jsonl", "w") as f:  # two videos of a world, one annotated chunk per K frames
        for name, seed, actions in (("walk.npy", 900_001, ["go right", "go right", "go down"]), ("pan.npy", 900_002, ["go up"])):
            np.save(folder / name, data.render_episode(seed, actions, cfg.world())[0])
            f.write(json.dumps(dict(video=name, chunks=[dict(action=a, start=1 + i * K, end=1 + (i + 1) * K)
                                                        for i, a in enumerate(actions)])) + "\n")
    episode = play.own_video(str(folder), None, cfg)  # no --video: the first in annotations.jsonl
    assert episode.name == "walk.npy" and play.own_video(str(folder), "pan.npy", cfg).name == "pan.npy"
    with serving(model, cfg, episode=episode) as server:
        c = Client(server)
        state = c.json("/api/state")
        assert state["source"] == dict(kind="video", name="walk.npy", actions=["go right", "go right", "go down"])
        assert state["next_annotated"] == episode.actions[0] and state["settings"]["seed"] is None
        assert np.array_equal(unpng(state["current"]["truth"]), episode.frames[0])
        assert np.array_equal(unpng(state["current"]["lora"]), episode.frames[0])  # the models start from your frame
        out = c.json("/api/step", {"action": episode.actions[0]})  # the video's own action: its frames are the truth
        assert out["row"]["truth"] and out["row"]["psnr"]["plain"] is not None
        assert np.array_equal(np.stack([unpng(f) for f in out["frames"]["truth"]]), episode.frames[1:1 + K])
        out = c.json("/api/step", {"action": "go up"})  # off the video's path (it goes right): no truth, nothing scored
        assert out["frames"]["truth"] == [None] * K and out["row"]["truth"] is False
        assert out["row"]["psnr"] == {"plain": None, "lora": None} and out["next_annotated"] is None
        assert c.json("/api/state")["current"]["truth"] is None
        assert "no world seed" in refused(c.call("/api/reset", {"seed": 5}), 400)
        status, gif = c.call("/api/gif")
        assert status == 200 and iio.imread(gif, extension=".gif", index=None).shape[0] == 1 + 2 * K


def test_a_client_gone_mid_chunk_leaves_the_server_serving(served, capfd):
    server, _, _ = served
    c = Client(server)
    c.json("/api/reset", {})
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


def test_the_page_speaks_plainly_and_the_log_is_not_flooded(loaded, capfd):
    model, cfg = loaded
    with serving(model, cfg, quiet=False) as server:
        c = Client(server)
        status, page = c.call("/")
        page = page.decode()
        assert status == 200 and "{{" not in page
        for words in ("no memory", "with memory (TEMP-LoRA)", "consistency with the first visit", 'inputmode="numeric"',
                      "within the run-to-run spread", 'rel="icon"', "look into the fast weights", "waiting"):
            assert words in page, words
        assert 'type="number"' not in page  # arrow keys in the seed field would change the number
        assert f"SPREAD = {play.SPREAD_DB}" in page
        assert c.call("/favicon.ico")[0] == 204
        for _ in range(5):
            c.json("/api/progress")
        c.json("/api/state")
    log = capfd.readouterr().err
    assert "GET /api/state" in log and "/api/progress" not in log and "favicon" in log and " 404 " not in log


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class DevTools:
    """The browser's DevTools protocol over a websocket, standard library only: commands out, their answers and the
    page's events (console, exceptions, failed loads) in. Enough for a test; not a general client."""

    def __init__(self, ws_url):
        u = urllib.parse.urlsplit(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buf, self.last, self.events = b"", 0, []
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0], head

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the browser closed the DevTools connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _message(self):
        """The next text message (a client's frames are masked, the browser's are not; fragments joined)."""
        text = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            n = int.from_bytes(self._read({126: 2, 127: 8}[n]), "big") if n >= 126 else n
            payload, opcode = self._read(n), b0 & 0x0F
            if opcode in (0, 1):
                text += payload
                if b0 & 0x80:
                    return json.loads(text)

    def call(self, method, **params):
        """Send a command and wait for its answer; the events that arrive meanwhile are kept in self.events."""
        self.last += 1
        blob, mask = json.dumps({"id": self.last, "method": method, "params": params}).encode(), os.urandom(4)
        n = len(blob)
        size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
        self.sock.sendall(b"\x81" + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(blob)))
        while True:
            m = self._message()
            if m.get("id") == self.last:
                assert "error" not in m, m
                return m.get("result", {})
            self.events.append(m)

    def evaluate(self, js):
        return self.call("Runtime.evaluate", expression=js, returnByValue=True)["result"].get("value")

    def errors(self):
        """Uncaught exceptions, console.error / console.assert calls and error log entries (a failed load, a 404)."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("exception", {}).get("description") or p["exceptionDetails"]["text"])
            elif m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(p["entry"]["text"] + " " + p["entry"].get("url", ""))
        return out


@contextlib.contextmanager
def browser(profile):
    """Headless chromium with a fresh profile, its first tab under DevTools."""
    proc = subprocess.Popen([find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--hide-scrollbars", "--disable-background-networking", "--disable-component-update",
                             "--disable-sync", f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.time() + 60
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1) and time.time() < deadline:
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        tabs = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30).read())
        tab = DevTools(next(t for t in tabs if t["type"] == "page")["webSocketDebuggerUrl"])
        for domain in ("Runtime", "Log", "Page"):
            tab.call(domain + ".enable")
        yield tab
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_for(tab, js, seconds=240):
    """Evaluate `js` in the page until it is true (or fail after `seconds`)."""
    deadline = time.time() + seconds
    while not tab.evaluate(js):
        assert time.time() < deadline, f"the page never got to: {js}"
        time.sleep(0.25)


def screenshot(tab):
    return iio.imread(base64.b64decode(tab.call("Page.captureScreenshot", format="png")["data"]), extension=".png")


@pytest.mark.heavy  # starts a browser
@pytest.mark.skipif(find_chromium() is None, reason="no chromium binary on PATH (Debian: apt-get install chromium)")
def test_a_browser_plays_the_page(served, tmp_path):
    """The page walks out and back by itself (?auto=), the panels and the table follow, the memory view renders,
    and the console stays free of errors (exceptions, console.error, failed loads such as a favicon's 404)."""
    server, _, _ = served
    before = set(server.app.sessions)
    base = "http://127.0.0.1:%d/" % server.server_address[1]
    with browser(tmp_path / "profile") as tab:
        tab.call("Emulation.setDeviceMetricsOverride", width=1100, height=1500, deviceScaleFactor=1, mobile=False)
        tab.call("Page.navigate", url=base)
        wait_for(tab, "document.getElementById('status').textContent === 'ready'")
        start = screenshot(tab)
        tab.call("Page.navigate", url=base + "?auto=%s&view=memory" % urllib.parse.quote("go right,go right,go left,go left"))
        wait_for(tab, "document.querySelectorAll('#view img').length > 0 && document.getElementById('status').textContent === 'ready'")
        rows = tab.evaluate("[...document.querySelectorAll('#rows tbody tr')].map(r => r.cells[1].textContent)")
        assert rows == ["go left", "go left", "go right", "go right"]  # newest first
        assert tab.evaluate("document.getElementById('info').textContent").startswith("4 / 4 chunks")
        view = tab.evaluate("document.getElementById('view').textContent")
        assert "after chunk 4" in view and "cleaned with memory (Phi + Theta)" in view
        assert tab.evaluate("document.querySelectorAll('#view img').length") == 8  # two windows, four strips each
        assert tab.evaluate("document.querySelectorAll('#rev-lora img').length") == 2  # the last chunk revisits the start
        end = screenshot(tab)
        assert not tab.errors(), tab.errors()
    played = [s for sid, s in server.app.sessions.items() if sid not in before]
    assert [s.actions for s in played] == [["go right", "go right", "go left", "go left"]]
    assert start.shape[:2] == end.shape[:2] == (1500, 1100)
    assert np.abs(start[:400].astype(int) - end[:400]).mean() > 1  # the panels show other frames
    if os.environ.get("PLAY_SHOTS"):  # keep the picture (e.g. PLAY_SHOTS=/tmp/play_shots)
        os.makedirs(os.environ["PLAY_SHOTS"], exist_ok=True)
        iio.imwrite(os.path.join(os.environ["PLAY_SHOTS"], "play.png"), end)
