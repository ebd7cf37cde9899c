"""The demo directory of an experiment, ``exp/<tag>/demo/``: its index and how reports link it.

The demo step (``python -m cdsvae.bin.make_demo``, with :mod:`cdsvae.eval.demo.speech` and
:mod:`cdsvae.eval.demo.video`) writes its files there together with ``demo.json``::

    {"kind": "speech" | "video", "source": "<set or data dir>", "note": "<text>",
     "files": [{"file": "<name>", "caption": "<text>", "image": "<name>"}, ...]}

(``image``, optional: a picture of a speech file's log-mel frames, shown next to its player.)

A demo that cannot be made (a single speaker, no feature options) has no files and a note
saying why. Reports read the index and link the files; they never make a demo themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from cdsvae.eval.report.document import DemoBlock, Figure, Sound, markdown_lines
from cdsvae.io import UserError, atomic_write_text

DEMO_SUBDIR = "demo"
DEMO_INDEX = "demo.json"
KINDS = ("speech", "video")


@dataclass(frozen=True)
class Demo:
    """What the demo step left in a demo directory: (caption, path) pairs, a note, and the
    pictures of some files (file name -> image path)."""

    kind: str
    files: list[tuple[str, Path]] = field(default_factory=list)
    note: str = ""
    source: str = ""
    images: dict[str, Path] = field(default_factory=dict)


def demo_dir(expdir: str | os.PathLike) -> Path:
    return Path(expdir) / DEMO_SUBDIR


def write_demo(outdir: str | os.PathLike, demo: Demo) -> Path:
    """Write ``<outdir>/demo.json`` for files already written under ``outdir``.

    Files listed by an earlier index of the same directory and not by this one are removed,
    so the directory holds what its index says.
    """
    outdir = Path(outdir)
    if demo.kind not in KINDS:
        raise ValueError(f"unknown demo kind {demo.kind!r}; expected one of {', '.join(KINDS)}")
    entries = []
    for caption, path in demo.files:
        path = Path(path)
        if path.parent.resolve() != outdir.resolve():
            raise ValueError(f"{path}: demo files must be written in {outdir}")
        entry = {"file": path.name, "caption": caption}
        image = demo.images.get(path.name)
        if image is not None:
            if Path(image).parent.resolve() != outdir.resolve():
                raise ValueError(f"{image}: demo files must be written in {outdir}")
            entry["image"] = Path(image).name
        entries.append(entry)
    index = outdir / DEMO_INDEX
    if index.is_file():
        keep = {e[k] for e in entries for k in ("file", "image") if k in e}
        with contextlib.suppress(UserError):
            old_demo = read_demo_index(index)
            for old in [p for _, p in old_demo.files] + list(old_demo.images.values()):
                if old.name not in keep:
                    old.unlink(missing_ok=True)
    text = json.dumps({"kind": demo.kind, "source": demo.source, "note": demo.note, "files": entries}, indent=2)
    atomic_write_text(index, text + "\n")
    return index


def read_demo_index(index: str | os.PathLike) -> Demo:
    """The :class:`Demo` of a ``demo.json`` (paths next to it)."""
    index = Path(index)
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        files = [(str(e["caption"]), index.parent / str(e["file"])) for e in data["files"]]
        images = {str(e["file"]): index.parent / str(e["image"]) for e in data["files"] if e.get("image")}
        return Demo(kind=str(data["kind"]), files=files, note=str(data.get("note", "")),
                    source=str(data.get("source", "")), images=images)
    except json.JSONDecodeError as e:
        raise UserError(f"{index}: not valid JSON ({e.msg}, line {e.lineno}); rerun the demo step") from None
    except (KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{index}: missing or malformed entry {e}; rerun the demo step") from None


def read_demo(expdir: str | os.PathLike) -> Demo | None:
    """The demo of an experiment, or None when the demo step has not run for it.

    A file the index lists but which is gone is an error naming it, not a broken link.
    """
    index = demo_dir(expdir) / DEMO_INDEX
    if not index.is_file():
        return None
    demo = read_demo_index(index)
    for path in [p for _, p in demo.files] + list(demo.images.values()):
        if not path.is_file():
            raise UserError(f"{index} lists {path.name}, which is missing; rerun the demo step")
    return demo


def no_demo_note(expdir: str | os.PathLike, how: str = "") -> str:
    """What a report says where there is no demo: how to make one."""
    return f"No demo (run the demo step: `python -m cdsvae.bin.make_demo --expdir {expdir}{how}`)."


def demo_block(expdir: str | os.PathLike, how: str = "") -> DemoBlock:
    """An experiment's demo as a report block: the note, then wav files (speech) or images (video).

    ``how`` is appended to the command shown when there is no demo (e.g. ``" --set test"``).
    """
    demo = read_demo(expdir)
    if demo is None:
        return DemoBlock(missing=no_demo_note(expdir, how))
    if demo.kind == "video":
        return DemoBlock(demo.note, figures=[Figure(caption, path) for caption, path in demo.files])
    return DemoBlock(demo.note, sounds=[Sound(caption, path, demo.images.get(path.name))
                                        for caption, path in demo.files])


def demo_lines(expdir: str | os.PathLike, relative_to: str | os.PathLike, how: str = "") -> list[str]:
    """Markdown of an experiment's demo (:func:`demo_block`); ``relative_to`` is the directory of the
    markdown file."""
    return markdown_lines(demo_block(expdir, how), Path(relative_to))
