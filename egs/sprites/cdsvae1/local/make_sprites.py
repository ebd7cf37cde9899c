#!/usr/bin/env python3
"""A procedural Sprites-like corpus: the label space and tensor shapes of Li & Mandt's Sprites.

Characters are drawn from flat body parts whose colours are the four static attributes (skin, top,
pants, hair; 6 classes each, so 6**4 = 1296 characters) and animated over 8 frames of 64x64x3 in one
of 9 motions: (walk, spellcast, slash) x (front, left, right), label 3 * action + direction as in the
original loader. Like the original, every character performs all 9 motions, the characters are a
seeded permutation of the 1296 colour combinations, and training and test characters are disjoint
(9000 = 1000 x 9 train, 2664 = 296 x 9 test sequences by default).

Only 72 poses exist (9 motions x 8 frames); each is a map of body-part indices drawn once, and a
whole split is one palette lookup, so thousands of sequences take well under a second.
"""

from __future__ import annotations

import math

import numpy as np

SIZE = 64
FRAMES = 8
N_CLASSES = 6
ACTIONS = ("walk", "spellcast", "slash")
DIRECTIONS = ("front", "left", "right")
ATTRIBUTES = ("skin", "pant", "top", "hair")  # the column order of the authors' A_* arrays

# Part indices of a pose map.
BG, SKIN, TOP, PANT, HAIR, EYE, WEAPON = range(7)

PALETTES = {
    # light, tan, dark, and the fantasy body colours of the LPC sprite sheets (orc green,
    # undead grey-blue, demon red): six tones that differ in hue, not only in brightness.
    "skin": [(255, 224, 189), (198, 134, 66), (92, 51, 23), (110, 170, 90), (150, 160, 210), (210, 90, 80)],
    "top": [(200, 30, 30), (30, 120, 200), (40, 160, 60), (230, 200, 40), (140, 60, 170), (240, 240, 240)],
    "pant": [(30, 30, 120), (90, 60, 30), (70, 70, 70), (20, 110, 110), (170, 90, 20), (120, 0, 60)],
    "hair": [(15, 15, 15), (120, 70, 20), (230, 200, 90), (200, 80, 30), (160, 160, 170), (60, 90, 200)],
}
EYE_RGB = (10, 10, 40)
WEAPON_RGB = (185, 185, 200)

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)


def _segment(canvas: np.ndarray, p0, p1, radius: float, part: int) -> None:
    """Paint the pixels within ``radius`` of the segment p0-p1 (points as (x, y))."""
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    L2 = dx * dx + dy * dy
    t = np.zeros_like(_XX) if L2 == 0 else np.clip(((_XX - x0) * dx + (_YY - y0) * dy) / L2, 0, 1)
    d2 = (_XX - (x0 + t * dx)) ** 2 + (_YY - (y0 + t * dy)) ** 2
    canvas[d2 <= radius * radius] = part


def _ellipse(canvas: np.ndarray, cx, cy, rx, ry, part: int, mask=None) -> None:
    m = ((_XX - cx) / rx) ** 2 + ((_YY - cy) / ry) ** 2 <= 1.0
    if mask is not None:
        m &= mask
    canvas[m] = part


def _arm(canvas, shoulder, hand, sleeve_frac=0.55, weapon=None) -> None:
    sx, sy = shoulder
    hx, hy = hand
    ex, ey = sx + sleeve_frac * (hx - sx), sy + sleeve_frac * (hy - sy)
    _segment(canvas, (sx, sy), (ex, ey), 2.6, TOP)
    _segment(canvas, (ex, ey), (hx, hy), 2.0, SKIN)
    if weapon is not None:
        _segment(canvas, (hx, hy), weapon, 1.2, WEAPON)


def draw_pose(action: str, direction: str, t: int) -> np.ndarray:
    """(64, 64) map of part indices for frame ``t`` of one motion."""
    c = np.zeros((SIZE, SIZE), dtype=np.uint8)
    front = direction == "front"
    face = {"front": 0, "left": -1, "right": 1}[direction]
    phase = 2 * math.pi * t / FRAMES
    bob = round(abs(math.sin(phase))) if action == "walk" else 0
    cx, hip_y, foot_y = 32.0, 41.0, 55.0
    head_y = 17.0 + bob
    torso_top = 26.0 + bob

    # Legs first (the torso overlaps the hips).
    if action == "walk":
        if front:
            lift = 3.0 * math.sin(phase)
            feet = [(cx - 4, foot_y - max(lift, 0)), (cx + 4, foot_y - max(-lift, 0))]
        else:
            swing = 6.0 * math.sin(phase)
            feet = [(cx + swing, foot_y), (cx - swing, foot_y)]
    elif action == "slash":
        feet = [(cx - 6, foot_y), (cx + 6, foot_y)] if front else [(cx + 5 * face, foot_y), (cx - 4 * face, foot_y)]
    else:
        feet = [(cx - 4, foot_y), (cx + 4, foot_y)] if front else [(cx + 1, foot_y), (cx - 1, foot_y)]
    hips = [(cx - 4, hip_y), (cx + 4, hip_y)] if front else [(cx, hip_y), (cx, hip_y)]
    for hip, foot in zip(hips, feet):
        _segment(c, hip, foot, 2.8, PANT)

    half_w = 7.0 if front else 5.0
    c[int(torso_top):int(hip_y) + 1, int(cx - half_w):int(cx + half_w) + 1] = TOP

    # Arms: shoulders at the torso's top corners (front) or its middle (profile).
    shoulders = [(cx - half_w - 1, torso_top + 2), (cx + half_w + 1, torso_top + 2)] if front else \
        [(cx - 1 * face, torso_top + 2), (cx + 1 * face, torso_top + 2)]
    if action == "walk":
        s = math.sin(phase)
        if front:
            hands = [(shoulders[0][0] - 1, torso_top + 13 + 2 * s), (shoulders[1][0] + 1, torso_top + 13 - 2 * s)]
        else:
            hands = [(cx - 5 * s, torso_top + 13), (cx + 5 * s, torso_top + 13)]
        for sh, hd in zip(shoulders, hands):
            _arm(c, sh, hd)
    elif action == "spellcast":
        lift = math.sin(math.pi * t / (FRAMES - 1))  # 0 -> 1 -> 0: raise both arms and lower them
        for sh, side in zip(shoulders, (-1, 1)):
            if front:
                down, up = (sh[0] + 2 * side, sh[1] + 12), (sh[0] + 8 * side, sh[1] - 10)
                _arm(c, sh, (down[0] + lift * (up[0] - down[0]), down[1] + lift * (up[1] - down[1])))
            else:  # swing forward on an arc from hanging down to forward-up
                ang = math.radians(90 - 150 * lift)
                _arm(c, sh, (sh[0] + face * 12 * math.cos(ang), sh[1] + 12 * math.sin(ang)))
    else:  # slash: the weapon arm sweeps from overhead to forward-down
        k = t / (FRAMES - 1)
        if front:
            _arm(c, shoulders[0], (shoulders[0][0] - 2, torso_top + 13))
            sh = shoulders[1]
            ang = math.radians(-120 + 200 * k)  # screen angle, 0 = pointing right, y down
        else:
            back, fore = shoulders
            _arm(c, back, (back[0] - 3 * face, torso_top + 12))
            sh = fore
            ang = math.radians(-100 + 150 * k)
            if face < 0:
                ang = math.pi - ang
        hand = (sh[0] + 11 * math.cos(ang), sh[1] + 11 * math.sin(ang))
        tip = (hand[0] + 12 * math.cos(ang), hand[1] + 12 * math.sin(ang))
        _arm(c, sh, hand, weapon=tip)

    # Head, hair and eyes last so they sit on top.
    _ellipse(c, cx, head_y, 7.5, 7.5, SKIN)
    if front:
        _ellipse(c, cx, head_y - 1, 8.5, 8.5, HAIR, mask=_YY <= head_y - 3)
        _ellipse(c, cx, head_y - 1, 8.5, 8.5, HAIR, mask=(np.abs(_XX - cx) >= 6) & (_YY <= head_y + 3))
        c[int(head_y), int(cx - 3)] = EYE
        c[int(head_y), int(cx + 3)] = EYE
    else:
        _ellipse(c, cx, head_y - 1, 8.5, 8.5, HAIR, mask=_YY <= head_y - 3)
        _ellipse(c, cx - 3 * face, head_y, 6.5, 8.5, HAIR, mask=(_XX - cx) * face <= -2)
        c[int(head_y), int(cx + 4 * face)] = EYE
        c[int(head_y) + 2, int(cx + 8 * face)] = SKIN  # nose
    return c


def pose_bank() -> np.ndarray:
    """(9, 8, 64, 64) uint8 part maps, motion label = 3 * action + direction."""
    return np.stack([
        np.stack([draw_pose(a, d, t) for t in range(FRAMES)])
        for a in ACTIONS for d in DIRECTIONS
    ])


def character_table(seed: int) -> np.ndarray:
    """(1296, 4) attribute classes [skin, pant, top, hair], a seeded permutation of all combinations."""
    combos = np.stack(np.meshgrid(*[np.arange(N_CLASSES)] * 4, indexing="ij"), axis=-1).reshape(-1, 4)
    return combos[np.random.RandomState(seed).permutation(len(combos))]


def render(attrs: np.ndarray, motions: np.ndarray, poses: np.ndarray | None = None) -> np.ndarray:
    """(N, 8, 3, 64, 64) uint8 frames for attribute rows [skin, pant, top, hair] and motion labels."""
    poses = pose_bank() if poses is None else poses
    n = len(attrs)
    pal = np.zeros((n, 7, 3), dtype=np.uint8)
    pal[:, SKIN] = np.asarray(PALETTES["skin"], np.uint8)[attrs[:, 0]]
    pal[:, PANT] = np.asarray(PALETTES["pant"], np.uint8)[attrs[:, 1]]
    pal[:, TOP] = np.asarray(PALETTES["top"], np.uint8)[attrs[:, 2]]
    pal[:, HAIR] = np.asarray(PALETTES["hair"], np.uint8)[attrs[:, 3]]
    pal[:, EYE] = EYE_RGB
    pal[:, WEAPON] = WEAPON_RGB
    out = np.empty((n, FRAMES, 3, SIZE, SIZE), dtype=np.uint8)
    pal_cf = np.ascontiguousarray(pal.transpose(0, 2, 1))  # (N, 3, parts)
    for m in np.unique(motions):
        sel = np.nonzero(motions == m)[0]
        # (n_m, 3, 8, 64, 64) by one table lookup, then frames before channels.
        out[sel] = pal_cf[sel][:, :, poses[m]].transpose(0, 2, 1, 3, 4)
    return out


def make_split(n: int, first_character: int, seed: int, poses: np.ndarray | None = None):
    """Sequence i is character ``first_character + i // 9`` (wrapping) doing motion ``i % 9``.

    Returns frames (N, 8, 3, 64, 64) uint8 and labels {skin, pant, top, hair, motion}: (N,) int64.
    """
    table = character_table(seed)
    i = np.arange(n)
    chars = (first_character + i // 9) % len(table)
    attrs = table[chars]
    motions = (i % 9).astype(np.int64)
    frames = render(attrs, motions, poses)
    labels = {name: attrs[:, k].astype(np.int64) for k, name in enumerate(ATTRIBUTES)}
    labels["motion"] = motions
    return frames, labels


def make_sprites(train_size: int = 9000, test_size: int = 2664, seed: int = 0):
    """Train and test splits with disjoint characters (as long as both fit in the 1296)."""
    poses = pose_bank()
    train = make_split(train_size, 0, seed, poses)
    test = make_split(test_size, math.ceil(train_size / 9), seed, poses)
    return train, test


def main(argv=None) -> None:
    """Write the corpus; the same as ``prepare_sprites.py`` with no --sprites."""
    import prepare_sprites

    prepare_sprites.main(argv)


if __name__ == "__main__":
    main()
