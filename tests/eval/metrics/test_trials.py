import numpy as np
import pytest

from cdsvae.eval.metrics.trials import (
    all_pairs_trials,
    detect_trials_format,
    iter_pair_lines,
    load_trials,
    read_trials,
    read_voxceleb_trials,
    select_trials,
    voxceleb_utt_id,
    write_trials,
)
from cdsvae.io import UserError

UTT2SPK = {"spkB_u1": "spkB", "spkA_u2": "spkA", "spkA_u1": "spkA", "spkC_u1": "spkC", "spkB_u2": "spkB"}


def brute_force_pairs(utt2spk):
    utts = sorted(utt2spk)
    out = []
    for i in range(len(utts)):
        for j in range(i + 1, len(utts)):
            out.append((utts[i], utts[j], utt2spk[utts[i]] == utt2spk[utts[j]]))
    return out


def test_all_pairs_match_a_plain_double_loop():
    trials = all_pairs_trials(UTT2SPK)
    assert trials.pairs() == brute_force_pairs(UTT2SPK)
    assert len(trials) == 5 * 4 // 2
    assert trials.n_target == 2  # (A_u1, A_u2) and (B_u1, B_u2)
    assert trials.n_nontarget == 8


def test_random_utt2spk_against_brute_force():
    rng = np.random.default_rng(0)
    utt2spk = {f"s{rng.integers(0, 6)}_{k:03d}": "" for k in range(40)}
    utt2spk = {u: u.split("_")[0] for u in utt2spk}
    trials = all_pairs_trials(utt2spk)
    assert trials.pairs() == brute_force_pairs(utt2spk)


def test_written_file_is_kaldi_format_sorted_and_round_trips(tmp_path):
    trials = all_pairs_trials(UTT2SPK)
    path = tmp_path / "trials"
    write_trials(path, trials)
    lines = path.read_text().splitlines()
    assert lines[0] == "spkA_u1 spkA_u2 target"
    assert lines[1] == "spkA_u1 spkB_u1 nontarget"
    assert lines == sorted(lines)
    assert all(len(line.split()) == 3 for line in lines)
    again = read_trials(path)
    assert again.pairs() == trials.pairs()
    assert not [p.name for p in tmp_path.iterdir() if p.name != "trials"]  # no temp file left


def test_write_in_chunks(tmp_path, monkeypatch):
    import cdsvae.eval.metrics.trials as mod

    monkeypatch.setattr(mod, "_WRITE_CHUNK", 3)
    trials = all_pairs_trials(UTT2SPK)
    write_trials(tmp_path / "t", trials)
    assert read_trials(tmp_path / "t").pairs() == trials.pairs()


def test_too_few_utterances():
    with pytest.raises(UserError, match="at least 2"):
        all_pairs_trials({"a_1": "a"})


def test_bad_trials_line_names_file_and_line(tmp_path):
    path = tmp_path / "trials"
    path.write_text("a b target\na c maybe\n")
    with pytest.raises(UserError, match=r"trials:2: expected"):
        read_trials(path)


def test_pair_lines_are_parsed_once_for_trials_and_scores(tmp_path):
    path = tmp_path / "scores"
    path.write_text("a b 0.5\n\nc d -1e-3\n")
    assert list(iter_pair_lines(path, "enroll test score", float)) == [("a", "b", 0.5), ("c", "d", -0.001)]
    path.write_text("a b 0.5\nc d\n")
    with pytest.raises(UserError, match=r"scores:2: expected 'enroll test score', got 'c d'"):
        list(iter_pair_lines(path, "enroll test score", float))
    path.write_text("a b target\nc d x\n")
    with pytest.raises(UserError, match=r"scores:2: expected 'enroll test target\|nontarget', got 'c d x'"):
        read_trials(path)


VOX = ("1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
       "0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav\n"
       "\n"
       "0 id10300/ize_eiCFEg0/00003.wav ./id10270/8jEAjG6SegY/00008.flac\n")
VOX_IDS = ["id10270-x6uYqmx31kE-00001", "id10270-8jEAjG6SegY-00008", "id10300-ize_eiCFEg0-00003"]


def test_voxceleb_path_rule():
    assert voxceleb_utt_id("id10270/x6uYqmx31kE/00001.wav") == "id10270-x6uYqmx31kE-00001"
    assert voxceleb_utt_id("./id10270/x6uYqmx31kE/00001.m4a") == "id10270-x6uYqmx31kE-00001"
    assert voxceleb_utt_id("spk1/utt.v2.wav") == "spk1-utt.v2"


def test_voxceleb_list_known_answer(tmp_path):
    path = tmp_path / "veri_test.txt"
    path.write_text(VOX)
    trials = read_voxceleb_trials(path)
    a, b, c = VOX_IDS
    assert trials.pairs() == [(a, b, True), (a, c, False), (c, b, False)]
    assert (trials.n_target, trials.n_nontarget) == (1, 2)
    assert read_voxceleb_trials(path, known=set(VOX_IDS)).pairs() == trials.pairs()


def test_voxceleb_path_without_utterance_names_the_first_path(tmp_path):
    path = tmp_path / "veri_test.txt"
    path.write_text(VOX)
    with pytest.raises(UserError) as e:
        read_voxceleb_trials(path, known={VOX_IDS[0], VOX_IDS[1]}, known_from="data/test/utt2spk")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}:2: path id10300/ize_eiCFEg0/00003.wav maps to utterance id "
                          "id10300-ize_eiCFEg0-00003, which is not in data/test/utt2spk")


def test_voxceleb_bad_line(tmp_path):
    path = tmp_path / "veri_test.txt"
    path.write_text("1 a/b.wav c/d.wav\n2 a/b.wav c/d.wav\n")
    with pytest.raises(UserError, match=r"veri_test.txt:2: expected '1\|0 path1 path2', got '2 a/b.wav c/d.wav'"):
        read_voxceleb_trials(path)


def test_format_detected_from_the_first_line(tmp_path):
    kaldi, vox, bad = tmp_path / "kaldi", tmp_path / "vox", tmp_path / "bad"
    kaldi.write_text("\n1 0 target\nb c nontarget\n")  # ids that look like labels: the third field decides
    vox.write_text(VOX)
    bad.write_text("a b 0.5\n")
    assert detect_trials_format(kaldi) == "kaldi"
    assert detect_trials_format(vox) == "voxceleb"
    with pytest.raises(UserError, match=r"bad:1: not a trials line in either format"):
        detect_trials_format(bad)
    trials, fmt = load_trials(vox)
    assert fmt == "voxceleb" and trials.utts == VOX_IDS
    trials, fmt = load_trials(kaldi)
    assert fmt == "kaldi" and trials.pairs() == [("1", "0", True), ("b", "c", False)]
    # an explicit format is not second-guessed
    with pytest.raises(UserError, match=r"vox:1: expected 'enroll test target\|nontarget'"):
        load_trials(vox, "kaldi")
    with pytest.raises(UserError, match="not found"):
        load_trials(tmp_path / "nowhere")


def test_kaldi_list_with_unknown_utterance_is_an_error(tmp_path):
    path = tmp_path / "trials"
    path.write_text("a_1 a_2 target\na_1 b_1 nontarget\nc_1 d_1 nontarget\n")
    with pytest.raises(UserError, match=r"trials: utterance c_1 \(and 1 more\) is not in utt2spk"):
        load_trials(path, known={"a_1", "a_2", "b_1"}, known_from="utt2spk")


def test_select_trials_leaves_out_trials_of_missing_utterances():
    trials = all_pairs_trials(UTT2SPK)
    keep = set(UTT2SPK) - {"spkB_u1"}
    kept, dropped = select_trials(trials, keep)
    assert dropped == ["spkB_u1"]
    assert kept.pairs() == [p for p in trials.pairs() if "spkB_u1" not in p[:2]]
    assert kept.utts == sorted(keep)
    assert select_trials(trials, set(UTT2SPK)) == (trials, [])
