"""Your own videos: a folder with annotations.jsonl is read, checked before any work, and every bad input is one
line that names the file and the annotations line; files are written all or nothing."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import data
import video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = data.WorldSpec(size=16)


def folder(tmp_path, lines, videos=None):
    """A folder with .npy videos (name -> frames) and annotations.jsonl from `lines` (dicts or raw text)."""
    frames, _ = data.render_episode(1, ["go right", "go left"], data.WorldSpec(size=48, canvas=256))
    for name, f in (videos or {"a.npy": frames, "ok.npy": frames}).items():
        if name.endswith(".npy"):
            np.save(tmp_path / name, f)
        else:
            video.write_video(str(tmp_path / name), f)
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    (tmp_path / "annotations.jsonl").write_text(text)
    return str(tmp_path)


def chunks(*spans, action="go right"):
    return [{"action": action, "start": s, "end": e} for s, e in spans]


def test_a_folder_of_mp4_gif_and_npy_videos_loads_at_the_model_size_with_a_held_out_split(tmp_path):
    frames, _ = data.render_episode(1, ["go right", "go left"], data.WorldSpec(size=48, canvas=256))
    vids = {"a.npy": frames, "b.gif": frames, "c.mp4": frames}
    lines = [{"video": n, "chunks": chunks((1, 5)) + chunks((5, 9), action="go left")} for n in vids]
    eps = video.load_folder(folder(tmp_path, lines, vids), SPEC)
    assert [e.name for e in eps] == list(vids) and [e.split for e in eps] == ["train", "train", "val"]
    for e in eps:
        assert e.actions == ["go right", "go left"] and e.frames.shape == (9, 16, 16, 3) and e.frames.dtype == np.uint8
    for e in eps[1:]:  # GIF (a 256-colour palette) and mp4 (H.264) are close to the frames, not exact
        assert np.abs(e.frames.astype(int) - eps[0].frames).mean() < 6
    lines[0]["split"] = "val"  # a split given in any line: nothing is held out by default
    eps = video.load_folder(folder(tmp_path, lines, vids), SPEC)
    assert [e.split for e in eps] == ["val", "train", "train"]


@pytest.mark.parametrize("line,message", [
    ('not json', "not JSON"),
    ('["a.npy"]', "expected a JSON object"),
    ({"chunks": []}, "no 'video'"),
    ({"video": "a.npy"}, "no 'chunks'"),
    ({"video": "gone.mp4", "chunks": chunks((1, 5))}, "gone.mp4: no such file"),
    ({"video": "a.npy", "chunks": []}, "non-empty list"),
    ({"video": "a.npy", "chunks": [{"action": "go right", "end": 5}]}, 'chunk 0 needs "action", "start" and "end"'),
    ({"video": "a.npy", "chunks": [{"action": "go right", "start": "1", "end": 5}]}, "'start' must be an integer frame index, got '1' (str)"),
    ({"video": "a.npy", "chunks": [{"action": "go right", "start": 1.5, "end": 5}]}, "'start' must be an integer"),
    ({"video": "a.npy", "chunks": chunks((5, 5))}, "0 <= start < end"),
    ({"video": "a.npy", "chunks": chunks((20, 24))}, "chunk 0: frames [20, 24) but a.npy has 9 frames (0..8)"),
    ({"video": "a.npy", "chunks": chunks((1, 5), action="go sideways")}, "vocabulary"),
    ({"video": "a.npy", "chunks": chunks((1, 5)), "split": "test"}, "'split' must be"),
])
def test_every_bad_annotation_is_one_line_naming_the_file_and_line(tmp_path, line, message):
    path = folder(tmp_path, [{"video": "ok.npy", "chunks": chunks((1, 5))}, line])
    with pytest.raises(ValueError) as e:
        video.load_folder(path, SPEC)
    text = str(e.value)
    assert message in text and "\n" not in text and "annotations.jsonl:2: " in text  # the second line is the bad one


def test_bad_videos_are_refused_or_warned_about_in_one_line(tmp_path, capsys):
    frames, _ = data.render_episode(1, ["go right", "go left"], data.WorldSpec(size=48, canvas=256))
    cases = [({"g.npy": frames[..., 0]}, "grayscale"),
             ({"f.npy": frames.astype(np.float32)}, "uint8"),
             ({"one.npy": frames[:1]}, "has 1 frame")]
    for vids, message in cases:
        name = next(iter(vids))
        with pytest.raises(ValueError, match=message) as e:
            video.load_folder(folder(tmp_path, [{"video": name, "chunks": chunks((0, 1))}], vids), SPEC)
        assert f"annotations.jsonl:1: {tmp_path}" in str(e.value) or "annotations.jsonl:1" in str(e.value)
    (tmp_path / "bad.gif").write_bytes(b"GIF89a this is not a gif")
    (tmp_path / "annotations.jsonl").write_text(json.dumps({"video": "bad.gif", "chunks": chunks((1, 5))}) + "\n")
    with pytest.raises(ValueError) as e:
        video.load_folder(str(tmp_path), SPEC)
    assert "annotations.jsonl:1" in str(e.value) and "bad.gif: cannot read video" in str(e.value) and "\n" not in str(e.value)
    # usable but odd: RGBA loses its alpha; a 1-frame chunk and a still chunk labelled with a move are warned about
    rgba = np.concatenate([frames, np.full(frames.shape[:3] + (1,), 255, np.uint8)], -1)
    still = np.repeat(frames[:1], 9, 0)
    eps = video.load_folder(folder(tmp_path, [{"video": "r.npy", "chunks": chunks((1, 2))},
                                              {"video": "s.npy", "chunks": chunks((1, 5))}], {"r.npy": rgba, "s.npy": still}), SPEC)
    err = capsys.readouterr().err
    assert eps[0].frames.shape[-1] == 3
    assert "annotations.jsonl:1: chunk 0 spans 1 frame(s)" in err and "annotations.jsonl:2: chunk 0 is labelled 'go right' but its frames do not change" in err


def test_a_gif_whose_writer_merged_still_frames_says_so(tmp_path):
    frames, _ = data.render_episode(1, ["stay", "go right"], data.WorldSpec(size=48, canvas=256))
    path = folder(tmp_path, [{"video": "m.gif", "chunks": chunks((1, 5), action="stay") + chunks((5, 9))}], {"m.gif": frames})
    with pytest.raises(ValueError, match="GIF writer may merge identical frames"):
        video.load_folder(path, SPEC)


def test_train_py_refuses_a_bad_folder_in_one_line_before_any_work(tmp_path):
    path = folder(tmp_path, [{"video": "a.npy", "chunks": [{"action": "go right", "start": "1", "end": 5}]}])
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "train.py", "--data", path, "--out", str(out), "--max-steps", "1"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "annotations.jsonl:1" in res.stderr
    assert not out.exists()


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = str(tmp_path / "f.json")
    video.write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        video.write_json(path, {"a": object()})  # not JSON: fails mid-write
    assert json.load(open(path)) == {"a": 1} and os.listdir(tmp_path) == ["f.json"]  # no temp file left
