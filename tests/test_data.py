"""The action world: its renderer must agree with its own action semantics."""

import numpy as np
import pytest

import data

SPEC = data.WorldSpec(marker=False)


def test_same_seed_same_frames():
    a, pa = data.render_episode(5, ["go right", "go up"], SPEC)
    b, pb = data.render_episode(5, ["go right", "go up"], SPEC)
    c, _ = data.render_episode(6, ["go right", "go up"], SPEC)
    assert a.dtype == np.uint8 and a.shape == (1 + 2 * SPEC.chunk, SPEC.size, SPEC.size, 3)
    assert np.array_equal(a, b) and np.array_equal(pa, pb)
    assert not np.array_equal(a, c)


def test_go_right_shifts_view_left_by_speed_and_stay_changes_nothing():
    s = SPEC.speed
    frames, pos = data.render_episode(3, ["go right"], SPEC)
    for n in range(SPEC.chunk):
        assert np.array_equal(frames[n + 1][:, :-s], frames[n][:, s:])  # content moved left by `speed` pixels
        assert not np.array_equal(frames[n + 1], frames[n])
        assert pos[n + 1, 1] == (pos[n, 1] + s) % SPEC.canvas
    frames, _ = data.render_episode(3, ["stay", "stay"], SPEC)
    assert all(np.array_equal(f, frames[0]) for f in frames)
    up, _ = data.render_episode(3, ["go down"], SPEC)
    assert np.array_equal(up[1][:-s], up[0][s:])  # "go down": content moves up


def test_out_and_back_returns_to_identical_frame_and_position():
    rng = np.random.default_rng(0)
    actions = data.make_actions("out-and-back", rng, n=4)
    frames, pos = data.render_episode(11, actions, SPEC)
    assert np.array_equal(frames[0], frames[-1]) and np.array_equal(pos[0], pos[-1])
    mid = len(frames) // 2
    for k in range(1, mid + 1):  # every outward frame is revisited, in reverse order
        assert np.array_equal(frames[mid - k], frames[mid + k])
    assert not np.array_equal(frames[0], frames[mid])  # the path really left the start


def test_go_back_retraces_the_previous_path():
    moves = ["go right", "go down", "go right"]
    frames, pos = data.render_episode(2, moves + ["go back"] * 3, SPEC)
    _, out_pos = data.render_episode(2, moves, SPEC)
    n = len(out_pos)
    assert np.array_equal(pos[n - 1:][::-1], out_pos)  # the return walks the same corners backwards
    assert np.array_equal(frames[0], frames[-1])


def test_loop_closes():
    rng = np.random.default_rng(1)
    actions = data.make_actions("loop", rng, n=4)
    _, pos = data.render_episode(4, actions, SPEC)
    assert np.array_equal(pos[0], pos[-1]) and len(set(map(tuple, pos))) > 4


def test_the_second_lap_of_loop_twice_walks_the_first_lap_again():
    rng = np.random.default_rng(1)
    actions = data.make_actions("loop-twice", rng, n=4)
    half = len(actions) // 2
    assert actions[:half] == actions[half:]  # the same moves in the same order and direction
    frames, pos = data.render_episode(4, actions, SPEC)
    lap = half * (len(frames) - 1) // len(actions)  # frames per lap
    assert np.array_equal(pos[lap:], pos[:lap + 1]) and np.array_equal(frames[lap:], frames[:lap + 1])


def test_dynamics_move_without_actions():
    spec = data.WorldSpec(dynamics=True, marker=False)
    world = data.World(7, spec)
    p0, vel = world._ball
    y, x = int(p0[0]) - spec.size // 2, int(p0[1]) - spec.size // 2  # a view that holds the ball
    frames = [world.view(y, x, n) for n in range(3)]
    assert not np.array_equal(frames[0], frames[1])  # things move while the camera stays


def test_seed_ranges_are_disjoint():
    from sfvgen import Config
    c = Config()
    ranges = [set(range(*c.train_seeds)), set(range(*c.val_seeds)), set(range(*c.test_seeds))]
    assert not (ranges[0] & ranges[1]) and not (ranges[0] & ranges[2]) and not (ranges[1] & ranges[2])


def test_tokenizer_refuses_unknown_words_and_names_the_vocabulary():
    assert data.tokenize("go left") != data.tokenize("go right")
    assert len(data.tokenize("stay")) == data.MAX_WORDS
    with pytest.raises(ValueError, match="vocabulary"):
        data.tokenize("go sideways")
    with pytest.raises(ValueError, match="go right"):
        data.parse_actions("go right*x")
    assert data.parse_actions("go right*2,stay") == ["go right", "go right", "stay"]


def test_training_items_have_mixed_context_lengths_and_continue_the_context():
    rng = np.random.default_rng(0)
    spec = data.WorldSpec()
    seen = set()
    for _ in range(30):
        ctx, tok, tgt = data.sample_batch(rng, (0, 50), 2, spec)
        seen.add(ctx.shape[1])
        assert tgt.shape[1] == (spec.chunk if ctx.shape[1] else 2 * spec.chunk)
        assert tok.shape == (2, data.MAX_WORDS)
    assert seen == set(range(0, spec.chunk + 1))


def test_the_known_region_is_what_the_last_context_frame_showed_and_the_shift_oracle_is_exact_there():
    """The headline measure: in a static world the part of a new view that was already in the last context view
    is that view shifted by the camera move (the agent marker, drawn on top of the world, left out of both)."""
    spec = data.WorldSpec()
    items = data.chunk_items((0, 50), 6, spec)
    for i in range(6):
        for k in range(spec.chunk):
            known = items["known"][i, k]
            assert np.array_equal(items["oracle"][i, k][known], items["target"][i, k][known])
            in_view = spec.size * (spec.size - spec.speed * (k + 1))  # all but the incoming strip
            marker = data.marker_mask(spec.size).sum()  # 12 pixels, left out where they fall in view (twice at most)
            assert in_view - 2 * marker <= known.sum() <= in_view - marker
    assert data.known_region((0, 0), spec).sum() == spec.size ** 2 - data.marker_mask(spec.size).sum()
    assert not data.known_region((0, spec.size), spec).any()  # a whole view away: nothing was in view
