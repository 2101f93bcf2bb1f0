"""Webdataset shards: make_shards writes what the CSV builder validated; the `artquest` builder streams them,
each row once per pass across ranks and data-loader workers; CSV and shard evaluation agree."""

import csv
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest
import torch
from helpers.result_tolerance import assert_same_results
from helpers.runs import REPO, SUBPROCESS_TIMEOUT, free_port, only_run_dir, run
from lavis.common.registry import registry
from omegaconf import OmegaConf

import lavis_gated  # noqa: F401
from lavis_gated.datasets.artquest_shards import slot_range
from lavis_gated.datasets.make_shards import main as make_shards_main
from lavis_gated.datasets.make_shards import make_shards, write_shards
from lavis_gated.datasets.synthetic_artquest import generate

SPLIT_SIZES = {"train": 2, "val": 2, "test": 1}  # images per style: 24 / 24 / 12 rows


def project_yaml(path, data_root, shards=None, base="demo.yaml", **run_options):
    """demo.yaml (or demo_eval.yaml) on data_root's CSVs, or on the shard patterns {split: pattern}."""
    cfg = OmegaConf.load(REPO / "projects" / "gated" / base)
    info = cfg.datasets.artquest.build_info
    for split in info.annotations:
        info.annotations[split].storage = str(data_root / f"artquest_{split}.csv")
    info.images.storage = str(data_root / "images")
    if shards:
        cfg.datasets.artquest.build_info = {"shards": {s: {"storage": shards[s]} for s in info.annotations}}
    cfg.run.output_dir = str(path.parent / path.stem)
    cfg.run.update(run_options)
    OmegaConf.save(cfg, path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    generate(str(root / "csv"), SPLIT_SIZES, seed=5)
    cfg = project_yaml(root / "make.yaml", root / "csv")
    patterns = make_shards(str(cfg), str(root / "shards"), maxcount=5)
    return root, patterns


def shard_builder(patterns, splits=("train", "val"), **extra):
    cfg = OmegaConf.create(
        {
            "data_type": "images",
            "vis_processor": {
                "train": {"name": "blip_image_eval", "image_size": 16},
                "eval": {"name": "blip_image_eval", "image_size": 16},
            },
            "text_processor": {"train": {"name": "blip_question"}, "eval": {"name": "blip_question"}},
            "build_info": {"shards": {s: {"storage": patterns[s]} for s in splits}},
            **extra,
        }
    )
    return registry.get_builder_class("artquest")(cfg).build_datasets()


def csv_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ---- make_shards ----------------------------------------------------------------------------------------


def test_shards_hold_the_validated_rows_and_the_image_bytes(data):
    root, patterns = data
    assert patterns["val"] == str(root / "shards" / "val-{000000..000004}.tar")  # 24 rows, 5 per shard
    with tarfile.open(root / "shards" / "val-000000.tar") as tar:
        names = tar.getnames()
        assert names[:2] == ["000000000.json", "000000000.png"] and len(names) == 10
        row = json.loads(tar.extractfile("000000001.json").read())
        image = tar.extractfile("000000001.png").read()
    expected = csv_rows(root / "csv" / "artquest_val.csv")[1]
    assert row == {**expected, "style": "impressionism"}
    assert image == (root / "csv" / "images" / expected["image"]).read_bytes()
    assert not [n for n in os.listdir(root / "shards") if n.endswith(".tmp")]


def test_make_shards_is_reproducible_and_refuses_to_mix_runs(data, tmp_path, capsys):
    root, patterns = data
    cfg = project_yaml(tmp_path / "make.yaml", root / "csv")
    make_shards_main(["--cfg-path", str(cfg), "--out", str(tmp_path / "again"), "--maxcount", "5"])
    assert f"storage: {tmp_path / 'again'}/val-{{000000..000004}}.tar" in capsys.readouterr().out
    for name in os.listdir(root / "shards"):
        assert (tmp_path / "again" / name).read_bytes() == (root / "shards" / name).read_bytes(), name
    with pytest.raises(FileExistsError, match=r"already holds train shards"):
        make_shards(str(cfg), str(tmp_path / "again"))


# ---- streaming --------------------------------------------------------------------------------------------


def test_builder_reads_shards_like_the_csv(data):
    root, patterns = data
    datasets = shard_builder(patterns)
    csv_ids = [r["question_id"] for r in csv_rows(root / "csv" / "artquest_train.csv")]
    assert [r["question_id"] for r in datasets["train"].annotation] == csv_ids
    assert datasets["val"].summary["rows"] == 24 and datasets["val"].summary["style"]["cubism"] == 4
    assert len(datasets["val"].style_labels()) == 24
    first = next(iter(datasets["val"]))
    assert first["question_id"] == "val-000000" and first["image"].shape == (3, 16, 16)
    assert first["image_file"] == "val_impressionism_0000.png" and first["instance_id"] == "0"


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_every_row_once_per_pass_across_ranks_and_workers(data, monkeypatch, world_size, num_workers):
    root, patterns = data
    dataset = shard_builder(patterns, splits=("val",))["val"]
    seen, lengths = [], set()
    for rank in range(world_size):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world_size))
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=4, num_workers=num_workers, collate_fn=dataset.collater
        )
        seen += [qid for batch in loader for qid in batch["question_id"]]
        lengths.add(len(dataset))
    assert sorted(seen) == sorted(r["question_id"] for r in dataset.annotation)  # each exactly once
    assert lengths == {-(-24 // world_size)}


def test_slot_ranges_tile_the_rows():
    for total in (0, 1, 7, 24):
        for slots in (1, 2, 3, 8):
            ranges = [slot_range(total, s, slots) for s in range(slots)]
            assert ranges[0][0] == 0 and ranges[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            assert max(b - a for a, b in ranges) - min(b - a for a, b in ranges) <= 1


def test_training_stream_is_shuffled_reproducibly(data):
    root, patterns = data
    train = shard_builder(patterns, splits=("train",), shuffle_buffer=8)["train"]
    torch.manual_seed(0)
    first = [s["question_id"] for s in train]
    second = [s["question_id"] for s in train]
    torch.manual_seed(0)
    again = [s["question_id"] for s in train]
    assert sorted(first) == sorted(second) == sorted(r["question_id"] for r in train.annotation)
    assert first == again and first != second and first != sorted(first)


def test_shard_rows_without_style_follow_the_policy(tmp_path, data):
    root, _ = data
    rows = [
        {
            **row,
            "image_path": str(root / "csv" / "images" / row["image"]),
            "style": "" if i < 3 else row["style"],
        }
        for i, row in enumerate(csv_rows(root / "csv" / "artquest_test.csv"))
    ]
    pattern = write_shards(rows, str(tmp_path), "test", maxcount=5)
    with pytest.raises(
        ValueError,
        match=r"test-\{000000\.\.000002\}\.tar: 3 of 12 rows have no style "
        r".*shard order \(from 0\): \[0, 1, 2\]",
    ):
        shard_builder({"test": pattern}, splits=("test",))
    dataset = shard_builder({"test": pattern}, splits=("test",), missing_style="skip")["test"]
    assert len(dataset.annotation) == 9 and dataset.summary["skipped"] == {"no style": 3}
    assert sorted(s["question_id"] for s in dataset) == sorted(r["question_id"] for r in rows[3:])
    kept = shard_builder({"test": pattern}, splits=("test",), missing_style="keep-unlabelled")["test"]
    assert [s["style"] for s in kept][:4] == ["", "", "", "cubism"]


def test_missing_or_broken_shards_name_the_file(data, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"shard files not found: .*nope-000001\.tar"):
        shard_builder({"val": str(tmp_path / "nope-{000000..000001}.tar")}, splits=("val",))
    root, patterns = data
    broken = tmp_path / "val-000000.tar"
    with tarfile.open(root / "shards" / "val-000000.tar") as src, tarfile.open(broken, "w") as dst:
        for member in src:
            payload = src.extractfile(member).read()
            if member.name == "000000002.png":
                payload = b"not a png"
            member.size = len(payload)
            dst.addfile(member, io.BytesIO(payload))
    dataset = shard_builder({"val": str(broken)}, splits=("val",))["val"]
    with pytest.raises(
        ValueError, match=r"val-000000\.tar: image of sample 000000002 \(val_impressionism_0001\.png\)"
    ):
        list(dataset)


def test_runner_loaders_for_streamed_splits(data, tmp_path):
    """Training: a length and an endless stream; evaluation: a loader that can be iterated every epoch."""
    from helpers.runner import make_runner

    root, patterns = data
    datasets = shard_builder(patterns)
    runner = make_runner(tmp_path)
    train, val = runner.create_loaders(
        [datasets["train"], datasets["val"]],
        num_workers=0,
        batch_sizes=[10, 10],
        is_trains=[True, False],
        collate_fns=[None, datasets["val"].collater],
    )
    assert len(train) == 3  # 24 rows, batches of 10
    assert (
        sum(len(next(train)["question_id"]) for _ in range(4)) == 10 + 10 + 4 + 10
    )  # wraps into the next pass
    assert [len(b["question_id"]) for b in val] == [10, 10, 4]
    assert [len(b["question_id"]) for b in val] == [10, 10, 4]


# ---- the real entry points ---------------------------------------------------------------------------------


def test_two_process_gloo_stream_sees_every_row_once(data, tmp_path):
    root, patterns = data
    out = tmp_path / "seen.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={free_port()}",
            "tests/helpers/shard_partition.py",
            patterns["val"],
            str(out),
            "2",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    seen = json.loads(out.read_text())
    ranks = seen["ranks"]
    for epoch in range(2):
        ids = [qid for rank in ranks for qid in rank["passes"][epoch]]
        assert sorted(ids) == sorted(seen["all_ids"]) and len(ids) == 24  # no row twice, none missing
        assert [len(rank["passes"][epoch]) for rank in ranks] == [12, 12]
    assert [rank["len"] for rank in ranks] == [12, 12]


def test_train_on_shards_then_evaluate_csv_and_shards_alike(data, tmp_path):
    """torchrun (2 gloo processes) trains from shards; the checkpoint is evaluated on the CSV (1 process)
    and on the shards (1 and 2 processes): the same metrics, every question once."""
    root, patterns = data
    train_cfg = project_yaml(
        tmp_path / "train.yaml",
        root / "csv",
        shards=patterns,
        max_epoch=1,
        warmup_steps=1,
        batch_size_train=8,
        num_workers=1,
    )
    run(
        [
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={free_port()}",
            "lavis_gated/train.py",
            "--cfg-path",
            str(train_cfg),
        ]
    )
    checkpoint = only_run_dir(tmp_path / "train") / "checkpoint_best.pth"
    assert checkpoint.is_file()

    def evaluate(name, shards, nproc):
        cfg = project_yaml(
            tmp_path / f"{name}.yaml", root / "csv", shards=shards, base="demo_eval.yaml", num_workers=2
        )
        run(
            [
                "-m",
                "torch.distributed.run",
                f"--nproc_per_node={nproc}",
                f"--master_port={free_port()}",
                "lavis_gated/evaluate.py",
                "--cfg-path",
                str(cfg),
                "--options",
                "model.load_finetuned=True",
                f"model.finetuned={checkpoint}",
            ]
        )
        run_dir = only_run_dir(tmp_path / name)
        metrics = json.loads((run_dir / "val_metrics.json").read_text())
        predictions = json.loads((run_dir / "val_predictions.json").read_text())
        return metrics, predictions

    from_csv, csv_predictions = evaluate("eval_csv", None, 1)
    expected_ids = sorted(r["question_id"] for r in csv_rows(root / "csv" / "artquest_val.csv"))
    assert sorted(p["question_id"] for p in csv_predictions) == expected_ids
    for name, nproc in (("eval_shards1", 1), ("eval_shards2", 2)):
        from_shards, predictions = evaluate(name, patterns, nproc)
        assert sorted(p["question_id"] for p in predictions) == expected_ids, name
        assert from_shards["num_samples"] == 24
        assert_same_results(
            {k: v for k, v in from_shards.items() if k != "epoch"},
            {k: v for k, v in from_csv.items() if k != "epoch"},
            where=name,
        )
