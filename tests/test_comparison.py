"""The comparison the scenario tests and benchmarks prove "same tables" with (bench.daily_bench.frame_differences):
it must see every kind of difference, or those tests pass on tables that differ."""

from __future__ import annotations

from datetime import datetime

from bench.daily_bench import frame_differences

SCHEMA = "id string, n int, at timestamp, tags array<string>"
ROWS = [("a", 1, datetime(2024, 3, 4, 8, 0, 0, 1), ["x"]), ("b", None, None, [])]


def test_equal_frames_have_no_difference_and_each_kind_of_difference_is_named(spark):
    same = spark.createDataFrame(ROWS, SCHEMA)
    variants = {
        "a row missing": ROWS[:1],
        "a row twice": [*ROWS, ROWS[1]],
        "a null made a value": [ROWS[0], ("b", 0, None, [])],
        "a microsecond later": [("a", 1, datetime(2024, 3, 4, 8, 0, 0, 2), ["x"]), ROWS[1]],
        "an array element": [("a", 1, ROWS[0][2], ["y"]), ROWS[1]],
    }
    pairs = {name: (same, spark.createDataFrame(rows, SCHEMA)) for name, rows in variants.items()}
    pairs["equal"] = (same, spark.createDataFrame(list(reversed(ROWS)), SCHEMA))
    pairs["columns"] = (same, same.drop("tags"))
    found = frame_differences(pairs)
    assert set(found) == set(variants) | {"columns"}
    assert found["a row missing"].startswith("1 rows only in the first, 0 only in the second")
    assert found["a row twice"].startswith("0 rows only in the first, 1 only in the second")
    assert found["a microsecond later"].startswith("1 rows only in the first, 1 only in the second")
    assert found["columns"].startswith("columns ['id', 'n', 'at', 'tags'] != ['id', 'n', 'at']")
    assert frame_differences({"equal": pairs["equal"]}) == {}
