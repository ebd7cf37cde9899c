"""Reports of a run: durations, DIR/progress."""

import re

from _toy import toy_trainer
from cdsvae.train.monitor import Monitor, format_duration


def test_format_duration_known_values():
    assert [format_duration(s) for s in (0, 5, 59.4, 59.6, 65, 3599, 3600, 3725, 36000 + 59 * 60 + 59)] == \
        ["0s", "5s", "59s", "1m00s", "1m05s", "59m59s", "1h00m", "1h02m", "10h59m"]
    assert format_duration(-3) == "0s"


def test_progress_file_follows_training_and_says_finished(tmp_path, monkeypatch):
    lines = []
    write = Monitor.write_progress
    monkeypatch.setattr(Monitor, "write_progress", lambda self, line: (lines.append(line), write(self, line))[1])
    out = tmp_path / "exp"
    toy_trainer(out, epochs=2, log_every=3).fit()  # 32 sequences, batch 4: 8 steps per epoch
    assert (out / "progress").read_text() == "finished: step 16/16, 2/2 epochs complete\n"
    during, last = lines[:-1], lines[-1]
    assert last == "finished: step 16/16, 2/2 epochs complete"
    # every 3 steps, and at the end of each epoch
    steps = [int(re.search(r"step (\d+)/16,", line).group(1)) for line in during]
    assert steps == [3, 6, 8, 9, 12, 15, 16]
    for line in during:
        assert re.fullmatch(r"epoch [12]/2, step \d+/16, loss \d[0-9.e+-]*, ETA \d+s", line), line
    assert [line.split(",")[0] for line in during] == ["epoch 1/2"] * 3 + ["epoch 2/2"] * 4
    assert during[-1].endswith("ETA 0s")
