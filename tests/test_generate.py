"""generate.py end to end: from a built-in world, from your own video's first frame (scored against your frames),
from any picture (no truth, no scores); its GIF marks exactly the revisits SRC scores; bad starts are refused
before any work."""
import json
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import micro_cfg

import data
import metrics
import train
import video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("m")
    train.main(micro_cfg(max_steps=1, out=str(out)), quiet=True)
    return str(out / "ckpt.pt")


def run(*args):
    res = subprocess.run([sys.executable, "generate.py", "--threads", "1", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    return res.returncode, res.stdout, res.stderr


def yellow_frames(gif):
    """The frames whose PSNR bar ends in yellow: the revisits the GIF marks."""
    frames = iio.imread(gif, index=None)[..., :3].astype(int)
    corner = frames[:, -6, 4 * (16 + 2) - 12]  # the first panel's bar end (scale 4, 16-px panels)
    return [n for n, c in enumerate(corner) if c[0] > 180 and c[1] > 150 and c[2] < 90]


def test_the_gif_marks_exactly_the_revisits_src_scores(tmp_path, ckpt):
    actions = "go right*2,go down*2,go up*2,go left*2"
    code, out, err = run("--ckpt", ckpt, "--world-seed", "200001", "--actions", actions, "--out", str(tmp_path))
    assert code == 0, err
    cfg = micro_cfg()
    _, positions = data.render_episode(200001, data.parse_actions(actions), cfg.world())
    pairs = metrics.revisit_pairs(positions, 2 * cfg.chunk)
    assert pairs and yellow_frames(str(tmp_path / "video.gif")) == [j for _, j in pairs]
    assert "return-leg PSNR" in out and "SRC-PSNR" in out


def test_your_own_video_starts_from_its_first_frame_and_is_scored_against_your_frames(tmp_path, ckpt):
    folder = video.write_example_folder(str(tmp_path / "v"), n_videos=2)
    code, out, err = run("--ckpt", ckpt, "--data", folder, "--video", "pan1.npy", "--out", str(tmp_path / "o"),
                         "--gif", "video.mp4")
    assert code == 0, err
    ep = video.load_folder(folder, micro_cfg().world(), only="pan1.npy")[0]
    frames = np.load(tmp_path / "o" / "frames.npy")
    assert np.array_equal(frames[0], ep.frames[0]) and len(frames) == len(ep.frames)  # its start, its actions
    m = json.load(open(tmp_path / "o" / "metrics.json"), parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert m["truth"] == "your frames" and m["world_seed"] is None
    # a pan that never comes back has no revisit: SRC is null, and the printed line says why, never "nan dB"
    assert (m["results"]["with memory"]["src_psnr"] is None) == ("SRC-PSNR no revisit" in out) and "nan" not in out
    assert abs(m["results"]["with memory"]["psnr"] - metrics.psnr(frames[1:], ep.frames[1:])) < 1e-9
    assert iio.imread(tmp_path / "o" / "video.mp4", index=None).shape[0] == len(frames)
    # other actions than the video's: its frames are the truth only where the actions agree
    code, out, err = run("--ckpt", ckpt, "--data", folder, "--video", "pan1.npy", "--actions", "stay*3",
                         "--out", str(tmp_path / "s"))
    assert code == 0 and "no scores" in out, out + err


def test_any_picture_starts_a_video_without_truth_or_scores(tmp_path, ckpt):
    picture = tmp_path / "photo.png"
    iio.imwrite(picture, video.landscape(1, size=96)[:80])
    code, out, err = run("--ckpt", ckpt, "--first-frame", str(picture), "--actions", "go left*2",
                         "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert "no scores (no truth to compare with)" in out and "bars: PSNR against the truth" not in out
    frames = np.load(tmp_path / "o" / "frames.npy")
    assert frames.shape == (1 + 2 * micro_cfg().chunk, 16, 16, 3)


def test_a_checkpoint_trained_on_your_videos_warns_when_run_in_the_built_in_world(tmp_path):
    folder = video.write_example_folder(str(tmp_path / "v"), n_videos=2)
    train.main(micro_cfg(max_steps=1, data=folder, out=str(tmp_path / "m")), quiet=True)
    code, out, err = run("--ckpt", str(tmp_path / "m" / "ckpt.pt"), "--actions", "go right", "--out", str(tmp_path / "o"))
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert code == 0 and len(warnings) == 1 and "was trained on your videos (--data)" in warnings[0]


@pytest.mark.parametrize("args,msg", [
    (["--data", "x"], "--data needs --video"),
    (["--video", "a.mp4"], "--video needs --data"),
    (["--first-frame", "a.png", "--world-seed", "3"], "start from one of"),
    (["--gif", "video.avi"], ".gif or an .mp4"),
    (["--first-frame", "no/such.png"], "no such file"),
])
def test_bad_starts_are_refused_in_one_line_before_any_work(tmp_path, ckpt, args, msg):
    code, out, err = run("--ckpt", ckpt, "--out", str(tmp_path / "o"), *args)
    assert code != 0 and msg in err and "Traceback" not in err and err.strip().count("\n") == 0
    assert not (tmp_path / "o" / "frames.npy").exists()
