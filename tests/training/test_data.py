"""SkinCAP loader and split: real CSV and PNG files written by the test."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from training.data import (
    CSV_NAME,
    DataError,
    EmptySplitError,
    Split,
    ensure_split,
    load_skincap,
    make_split,
)
from training.synthetic import write_synthetic_skincap


def _rewrite_csv(root: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = root / CSV_NAME
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    fields, rows = edit(fields, rows)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def test_loader_drops_flagged_rows_and_counts_missing_images(tmp_path: Path) -> None:
    written = write_synthetic_skincap(tmp_path, 6, flagged=2, missing_images=1)
    examples, report = load_skincap(tmp_path)
    ids = {example.id for example in examples}
    assert len(examples) == 6
    assert ids.isdisjoint(written.flagged_ids)
    assert ids.isdisjoint(written.missing_image_ids)
    assert report.rows == 9
    assert report.flagged == 2
    assert report.skipped == [(written.missing_image_ids[0], "missing image")]
    first = next(example for example in examples if example.id == "1")
    assert first.image == (tmp_path / "skincap" / "1.png").resolve()
    assert first.disease == "psoriasis"
    assert "psoriasis" in first.caption
    assert "1 skipped (missing image)" in report.summary()


def test_unreadable_image_is_skipped_and_reported(tmp_path: Path) -> None:
    write_synthetic_skincap(tmp_path, 4, flagged=0, missing_images=0)
    (tmp_path / "skincap" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "skincap" / "3.png").write_bytes(b"")
    examples, report = load_skincap(tmp_path)
    assert sorted(example.id for example in examples) == ["1", "4"]
    reasons = dict(report.skipped)
    assert reasons["2"].startswith("unreadable image")
    assert reasons["3"].startswith("unreadable image")


def test_image_named_by_id_when_the_file_column_is_absent(tmp_path: Path) -> None:
    write_synthetic_skincap(tmp_path, 3, flagged=0, missing_images=0)

    def drop_file_column(fields, rows):  # type: ignore[no-untyped-def]
        return [f for f in fields if f != "skincap_file_path"], rows

    _rewrite_csv(tmp_path, drop_file_column)
    examples, _ = load_skincap(tmp_path)
    assert [e.image.name for e in sorted(examples, key=lambda e: e.id)] == [
        "1.png",
        "2.png",
        "3.png",
    ]


def test_missing_caption_column_is_a_clear_error(tmp_path: Path) -> None:
    write_synthetic_skincap(tmp_path, 3, flagged=0, missing_images=0)

    def drop_caption(fields, rows):  # type: ignore[no-untyped-def]
        return [f for f in fields if f != "caption_zh_polish_en"], rows

    _rewrite_csv(tmp_path, drop_caption)
    with pytest.raises(DataError, match=r"lacks the column.*caption_zh_polish_en"):
        load_skincap(tmp_path)


def test_missing_csv_and_nothing_usable_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no skincap_v240623\.csv"):
        load_skincap(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_skincap(tmp_path / "absent")
    write_synthetic_skincap(tmp_path, 2, flagged=0, missing_images=0)
    for image in (tmp_path / "skincap").iterdir():
        image.unlink()
    with pytest.raises(DataError, match="no usable examples"):
        load_skincap(tmp_path)


def test_split_is_deterministic_disjoint_and_80_10_10() -> None:
    ids = [f"img{i}" for i in range(100)]
    first = make_split(ids, seed=42)
    again = make_split(list(reversed(ids)), seed=42)
    other = make_split(ids, seed=7)
    assert first == again
    assert first.eval != other.eval
    assert (len(first.train), len(first.eval), len(first.test)) == (80, 10, 10)
    assert set(first.train).isdisjoint(first.eval)
    assert set(first.test).isdisjoint(set(first.train) | set(first.eval))
    assert set(first.train) | set(first.eval) | set(first.test) == set(ids)
    two = make_split(ids, seed=42, eval_fraction=0.2, test_fraction=0.0)
    assert (len(two.train), len(two.eval), len(two.test)) == (80, 20, 0)


@pytest.mark.parametrize("seed", range(8))
def test_groups_are_never_split(seed: int) -> None:
    ids = [f"img{i:03d}" for i in range(200)]
    groups = [ids[i : i + size] for i, size in ((0, 7), (10, 3), (40, 12), (90, 2), (150, 5))]
    split = make_split(ids, seed=seed, groups=groups)
    sides = {name: set(getattr(split, name)) for name in ("train", "eval", "test")}
    for group in groups:
        holding = [name for name, members in sides.items() if set(group) & members]
        assert len(holding) == 1, (group, holding)
    assert sorted(split.duplicate_groups) == sorted(tuple(g) for g in groups)
    assert 18 <= len(split.test) <= 32  # whole groups: close to 10%, never far off
    assert set().union(*sides.values()) == set(ids)


def test_an_example_in_two_groups_is_an_error() -> None:
    with pytest.raises(DataError, match="two duplicate groups"):
        make_split([f"i{n}" for n in range(20)], groups=[["i1", "i2"], ["i2", "i3"]])


def test_planted_near_duplicates_are_grouped_and_kept_on_one_side(tmp_path: Path) -> None:
    data = write_synthetic_skincap(tmp_path / "data", 30, flagged=0, missing_images=0, duplicates=6)
    examples, _ = load_skincap(tmp_path / "data")
    assert len(examples) == 36
    split = ensure_split(examples, tmp_path / "split.json")
    # Every planted pair (3 pixel copies, 3 shared original files) is found; nothing else.
    assert sorted(split.duplicate_groups) == sorted(tuple(sorted(p)) for p in data.duplicate_pairs)
    for pair in data.duplicate_pairs:
        holding = [n for n in ("train", "eval", "test") if set(pair) & set(getattr(split, n))]
        assert len(holding) == 1, (pair, holding)
    assert Split.read(tmp_path / "split.json").duplicate_groups == split.duplicate_groups


def test_a_format_1_split_file_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(
        json.dumps(
            {"format": 1, "seed": 42, "eval_fraction": 0.2, "test_fraction": 0.0,
             "train": ["a", "b"], "eval": ["c"], "test": []}
        )
    )  # fmt: skip
    split = Split.read(path)
    assert (split.train, split.eval, split.duplicate_groups) == (("a", "b"), ("c",), ())


def test_the_split_digest_changes_with_membership_only() -> None:
    split = make_split([f"i{n}" for n in range(20)], seed=1)
    moved = Split(1, 0.1, 0.1, split.train[1:], (*split.eval, split.train[0]), split.test)
    assert split.digest() == Split(1, 0.1, 0.1, split.train[::-1], split.eval, split.test).digest()
    assert moved.digest() != split.digest()


def test_empty_split_is_an_error() -> None:
    with pytest.raises(EmptySplitError, match="'eval' split would be empty"):
        make_split(["a", "b"], eval_fraction=0.2)
    with pytest.raises(DataError, match="not unique"):
        make_split(["a", "a", "b", "c", "d"])


def test_split_file_is_written_once_and_reused(tmp_path: Path) -> None:
    write_synthetic_skincap(tmp_path / "data", 10, flagged=0, missing_images=0)
    examples, _ = load_skincap(tmp_path / "data")
    path = tmp_path / "split.json"
    split = ensure_split(examples, path)
    assert Split.read(path) == split
    # A different seed asked later does not silently reshuffle: the file wins.
    assert ensure_split(examples, path, seed=1) == split
    # Images that disappeared after the split was written are a clear error.
    for example_id in split.eval:
        next(e for e in examples if e.id == example_id).image.unlink()
    remaining, _ = load_skincap(tmp_path / "data")
    with pytest.raises(DataError, match="no longer usable"):
        ensure_split(remaining, path)
    with pytest.raises(EmptySplitError):
        Split(42, 0.2, 0.0, ("a",), ("b",)).ids("test")


def test_corrupt_split_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="not a split file"):
        Split.read(path)


def test_hugging_face_datasets_folder_loads(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    write_synthetic_skincap(tmp_path / "src", 3, flagged=1, missing_images=0)
    with (tmp_path / "src" / CSV_NAME).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    table = {key: [row[key] for row in rows] for key in rows[0]}
    table["image"] = [
        {"bytes": (tmp_path / "src" / "skincap" / f"{r['id']}.png").read_bytes(), "path": None}
        for r in rows
    ]
    features = datasets.Features(
        {key: datasets.Value("string") for key in rows[0]} | {"image": datasets.Image()}
    )
    datasets.Dataset.from_dict(table, features=features).save_to_disk(str(tmp_path / "hf"))
    examples, report = load_skincap(tmp_path / "hf", cache_dir=tmp_path / "cache")
    assert sorted(e.id for e in examples) == ["1", "2", "3"]
    assert report.flagged == 1
    for example in examples:
        assert example.image.is_file()
        assert example.image.is_relative_to(tmp_path / "cache")
