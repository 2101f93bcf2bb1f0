"""compare.py: the side-by-side table of two runs' metrics files."""

import json

import pytest

from lavis_gated.reports import compare

A = {"num_samples": 180, "loss": 1.5, "em": 0.75, "em_by_type": {"style": 1.0, "shape": 0.5}, "epoch": "best"}
B = {
    "num_samples": 180,
    "loss": 1.25,
    "em": 0.5,
    "em_by_type": {"style": 0.25},
    "cider": 2.0,
    "epoch": "best",
}


def test_table_rows_values_and_differences(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "test_metrics.json").write_text(json.dumps(A))
    (tmp_path / "b.json").write_text(json.dumps(B))

    compare.main([str(tmp_path / "a"), str(tmp_path / "b.json")])

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"A: {tmp_path / 'a' / 'test_metrics.json'} (gating.type ?)"  # no log.txt beside it
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:] if not line.startswith("-")}
    assert rows["num_samples"] == ["180", "180", "0"]
    assert rows["loss"] == ["1.5000", "1.2500", "-0.2500"]
    assert rows["em"] == ["0.7500", "0.5000", "-0.2500"]
    assert rows["em[shape]"] == ["0.5000", "-"]  # only A has it: no difference
    assert rows["em[style]"] == ["1.0000", "0.2500", "-0.7500"]
    assert rows["cider"] == ["-", "2.0000"]
    assert rows["epoch"] == ["best", "best"]


def test_missing_metrics_names_the_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="val_metrics.json"):
        compare.main([str(tmp_path), str(tmp_path), "--split", "val"])
