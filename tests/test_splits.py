"""The clust40 split: deterministic, cluster-consistent, close to the requested fraction."""

import csv

import pytest

from emforge.splits import split_of


def test_split_is_deterministic_and_by_cluster(shared_data):
    with open(shared_data / "chains" / "MANIFEST.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    by_cluster = {}
    for r in rows:
        by_cluster.setdefault(r["clust40"], set()).add(split_of(r["clust40"]))
    assert all(len(s) == 1 for s in by_cluster.values())
    frac = sum(split_of(c) == "validation" for c in by_cluster) / len(by_cluster)
    assert 0.12 < frac < 0.28
    assert split_of("abc") == split_of("abc")
    assert split_of("abc", 0.0) == "train" and split_of("abc", 1.0) == "validation"
    with pytest.raises(ValueError):
        split_of("abc", 1.5)
