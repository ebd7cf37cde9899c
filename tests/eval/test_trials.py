import numpy as np
import pytest

from cdsvae.errors import UserError
from cdsvae.eval.trials import all_pairs_trials, iter_pair_lines, read_trials, write_trials

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
    import cdsvae.eval.trials as mod

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
