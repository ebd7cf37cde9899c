"""The demo directory's index (demo.json): written by the demo step, read and linked by reports."""

import json

import pytest

from cdsvae.eval.demo.index import Demo, demo_lines, read_demo, write_demo
from cdsvae.io import UserError


def files(d, *names):
    d.mkdir(parents=True, exist_ok=True)
    for name in names:
        (d / name).write_bytes(b"x")
    return [(f"caption of {name}", d / name) for name in names]


def test_index_round_trip(tmp_path):
    exp = tmp_path / "exp" / "a"
    demo = Demo("speech", files(exp / "demo", "A.wav", "B.wav"), "a note", "test")
    index = write_demo(exp / "demo", demo)
    assert json.loads(index.read_text()) == {
        "kind": "speech", "source": "test", "note": "a note",
        "files": [{"file": "A.wav", "caption": "caption of A.wav"}, {"file": "B.wav", "caption": "caption of B.wav"}]}
    assert read_demo(exp) == demo
    assert read_demo(tmp_path / "exp" / "other") is None


def test_rewriting_removes_files_the_new_index_does_not_list(tmp_path):
    d = tmp_path / "demo"
    write_demo(d, Demo("video", files(d, "one.png", "two.png")))
    (d / "make_demo.log").write_text("kept: never listed")
    write_demo(d, Demo("video", files(d, "two.png"), "fewer"))
    assert sorted(p.name for p in d.iterdir()) == ["demo.json", "make_demo.log", "two.png"]
    write_demo(d, Demo("video", [], "none at all"))
    assert sorted(p.name for p in d.iterdir()) == ["demo.json", "make_demo.log"]


def test_bad_indexes_and_files_are_refused(tmp_path):
    d = tmp_path / "exp" / "demo"
    with pytest.raises(ValueError, match="unknown demo kind"):
        write_demo(d, Demo("smell", []))
    with pytest.raises(ValueError, match="must be written in"):
        write_demo(d, Demo("speech", files(tmp_path / "elsewhere", "A.wav")))
    d.mkdir(parents=True)
    (d / "demo.json").write_text("{not json")
    with pytest.raises(UserError, match="demo.json: not valid JSON .*rerun the demo step"):
        read_demo(tmp_path / "exp")
    (d / "demo.json").write_text(json.dumps({"kind": "speech", "files": [{"caption": "no file"}]}))
    with pytest.raises(UserError, match="demo.json: missing or malformed entry 'file'"):
        read_demo(tmp_path / "exp")
    # a broken index is replaced by the next demo step
    write_demo(d, Demo("speech", files(d, "A.wav")))
    assert [p.name for _, p in read_demo(tmp_path / "exp").files] == ["A.wav"]
    # a picture the index names must be there too, and is removed with its file by the next index
    (d / "A.png").write_bytes(b"png")
    write_demo(d, Demo("speech", files(d, "A.wav"), images={"A.wav": d / "A.png"}))
    assert read_demo(tmp_path / "exp").images == {"A.wav": d / "A.png"}
    (d / "A.png").unlink()
    with pytest.raises(UserError, match="demo.json lists A.png, which is missing; rerun the demo step"):
        read_demo(tmp_path / "exp")
    (d / "A.png").write_bytes(b"png")
    write_demo(d, Demo("speech", files(d, "B.wav")))
    assert sorted(p.name for p in d.iterdir()) == ["B.wav", "demo.json"]


def test_markdown_links_wavs_shows_pngs_and_says_how_to_make_a_missing_demo(tmp_path):
    speech, video, none = tmp_path / "s", tmp_path / "v", tmp_path / "n"
    write_demo(speech / "demo", Demo("speech", files(speech / "demo", "A.wav"), "Note."))
    write_demo(video / "demo", Demo("video", files(video / "demo", "grid.png")))
    assert demo_lines(speech, speech) == ["Note.", "", "- [A.wav](demo/A.wav): caption of A.wav", ""]
    assert demo_lines(video, tmp_path) == ["![caption of grid.png](v/demo/grid.png)", ""]
    assert demo_lines(none, none, " --set dev") == [
        f"No demo (run the demo step: `python -m cdsvae.bin.make_demo --expdir {none} --set dev`).", ""]
    write_demo(speech / "demo", Demo("speech", [], "No demo: the test set has a single speaker."))
    assert demo_lines(speech, speech) == ["No demo: the test set has a single speaker.", ""]
