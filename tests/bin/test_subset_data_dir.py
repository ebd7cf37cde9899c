from pathlib import Path

import pytest

from cdsvae.bin.subset_data_dir import main
from cdsvae.data.datadir import DataDir
from cdsvae.data.subset import choose_speakers
from cdsvae.io import UserError

SPEAKERS = [f"spk{k}" for k in range(6)]


def _data(path: Path) -> Path:
    path.mkdir()
    utts = [(f"{s}-u{i}", s) for s in SPEAKERS for i in range(3)]
    (path / "wav.scp").write_text("".join(f"{u} /audio/{u}.wav\n" for u, _ in utts))
    (path / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utts))
    (path / "text").write_text("".join(f"{u} words of {u}\n" for u, _ in utts))
    (path / "spk2gender").write_text("".join(f"{s} {'mf'[k % 2]}\n" for k, s in enumerate(SPEAKERS)))
    (path / "spk2utt").write_text("".join(f"{s} {' '.join(u for u, t in utts if t == s)}\n" for s in SPEAKERS))
    return path


def test_num_spk_keeps_whole_speakers_with_every_table(tmp_path):
    src = _data(tmp_path / "train")
    assert main(["--num_spk", "2", "--seed", "3", str(src), str(tmp_path / "sub")]) == 0
    sub = DataDir.load(tmp_path / "sub")
    kept = choose_speakers(SPEAKERS, 2, 3)
    assert sub.speakers == kept and len(kept) == 2
    assert sub.utterances == [f"{s}-u{i}" for s in kept for i in range(3)]
    for name in ("wav.scp", "text"):
        assert sorted(sub.tables[name]) == sub.utterances
    assert sorted(sub.tables["spk2gender"]) == kept
    # another seed, another draw; the same seed, the same draw
    assert choose_speakers(SPEAKERS, 2, 3) == kept
    assert any(choose_speakers(SPEAKERS, 2, s) != kept for s in range(4, 10))


def test_speaker_list_and_errors(tmp_path):
    src = _data(tmp_path / "train")
    (tmp_path / "list").write_text("spk4\nspk1\n")
    assert main(["--spk_list", str(tmp_path / "list"), str(src), str(tmp_path / "sub")]) == 0
    assert DataDir.load(tmp_path / "sub").speakers == ["spk1", "spk4"]
    (tmp_path / "bad").write_text("spk9\n")
    with pytest.raises(UserError, match=r"bad: speaker 'spk9' is not in"):
        main(["--spk_list", str(tmp_path / "bad"), str(src), str(tmp_path / "sub2")])
    with pytest.raises(UserError, match=r"--num_spk must be within 1..6"):
        main(["--num_spk", "7", str(src), str(tmp_path / "sub3")])
    with pytest.raises(UserError, match="must not be the source"):
        main(["--num_spk", "2", str(src), str(src)])
    assert not (tmp_path / "sub3").exists()
