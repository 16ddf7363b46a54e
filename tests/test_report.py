"""Tests of the per-dataset HTML report (emforge.report): numbers, plots, escaping, atomic write."""

from __future__ import annotations

import base64
import html.parser
import math

import numpy as np
import pandas as pd
import pytest

from emforge.maps import DensityMap
from emforge.report import build_dataset_report, local_cc_summary, read_per_residue, render_dataset_report
from emforge.workflow_support import write_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ReportParser(html.parser.HTMLParser):
    """Collects data-key/data-value pairs, images, visible text and tags that fetch anything."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, str] = {}
        self.images: list[dict] = []
        self.text: list[str] = []
        self.tags: list[str] = []
        self.external: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "data-key" in a:
            self.values[a["data-key"]] = a.get("data-value", "")
        if tag == "img":
            self.images.append(a)
        for name in ("src", "href"):
            if name in a and not a[name].startswith("data:"):
                self.external.append((tag, a[name]))

    def handle_data(self, data):
        self.text.append(data)


def parse(text: str) -> ReportParser:
    p = ReportParser()
    p.feed(text)
    p.close()
    return p


def png_of(img: dict) -> bytes:
    src = img["src"]
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    return base64.b64decode(src[len(prefix):], validate=True)


@pytest.fixture
def per_residue() -> pd.DataFrame:
    # two chains, one insertion code, one unscored residue (NaN), values known exactly
    return pd.DataFrame({
        "chain_id": ["A", "A", "A", "A", "B", "B", "B"],
        "res_seq": [1, 2, 3, 3, 10, 11, 12],
        "ins_code": ["", "", "", "A", "", "", ""],
        "res_name": ["MET", "GLY", "SER", "SER", "LYS", "ALA", "TRP"],
        "local_cc": [0.9, 0.8, 0.2, float("nan"), 0.7, -0.1, 0.6],
        "n_points": [40, 35, 30, 3, 50, 45, 44],
    })


@pytest.fixture
def scores() -> dict:
    return {
        "dataset": "toy",
        "model": "model<1>.cif",
        "map": "map.mrc",
        "map_fit": {"cc": 0.812345, "cc_mask": 0.654321, "mask_radius_A": 3.0, "n_mask_voxels": 1234,
                    "local_cc_mean": 0.516667, "local_cc_median": 0.65, "resolution_A": 6.0,
                    "kernel": "emrefiner", "n_atoms": 50, "n_residues": 7},
        "reference": {"path": "ref.cif", "tm_score": 0.734, "rmsd_A": 2.5, "gdt_ts": 0.61, "gdt_ha": 0.42,
                      "n_aligned": 7, "n_reference": 7},
    }


@pytest.fixture
def map_stats() -> dict:
    return {"shape_zyx": [5, 4, 3], "voxel_size_A": [2.0, 2.0, 2.5], "origin_A": [-3.0, 0.0, 7.5],
            "box_size_A": [6.0, 8.0, 12.5], "min": -1.0, "max": 4.0, "mean": 0.1, "std": 1.1,
            "resolution_A": 6.0, "nyquist_A": 5.0, "contour_mean_plus_3std": 3.4,
            "expected_mass_Da": 5000.0, "contour_for_expected_volume": 1.5, "source": "in.mrc"}


@pytest.fixture
def density_map() -> DensityMap:
    rng = np.random.default_rng(7)
    return DensityMap(rng.normal(size=(5, 4, 3)).astype(np.float32), (2.0, 2.0, 2.5), (-3.0, 0.0, 7.5))


def test_report_holds_numbers_and_plots(tmp_path, scores, per_residue, map_stats, density_map):
    out = render_dataset_report("toy", scores, per_residue, map_stats, tmp_path / "sub" / "report.html",
                                density_map=density_map)
    text = out.read_text(encoding="utf-8")
    p = parse(text)

    assert text.startswith("<!DOCTYPE html>")
    for key in ("cc", "cc_mask", "local_cc_median", "n_mask_voxels"):
        assert float(p.values[f"map_fit.{key}"]) == pytest.approx(scores["map_fit"][key])
    assert p.values["map_fit.kernel"] == "emrefiner"
    for key in ("tm_score", "rmsd_A", "gdt_ts", "gdt_ha", "n_aligned"):
        assert float(p.values[f"reference.{key}"]) == pytest.approx(scores["reference"][key])
    assert float(p.values["card.cc"]) == pytest.approx(0.812345)
    assert float(p.values["card.tm_score"]) == pytest.approx(0.734)
    # map statistics, vectors as comma-separated values
    assert p.values["map.voxel_size_A"] == "2.0,2.0,2.5"
    assert p.values["map.shape_zyx"] == "5,4,3"
    assert float(p.values["map.resolution_A"]) == 6.0
    assert float(p.values["map.contour_for_expected_volume"]) == 1.5
    # local CC statistics from the table, computed independently here
    cc = np.array([0.9, 0.8, 0.2, 0.7, -0.1, 0.6])
    assert float(p.values["local_cc.median"]) == pytest.approx(np.median(cc))
    assert float(p.values["local_cc.min"]) == pytest.approx(-0.1)
    assert int(p.values["local_cc.n_scored"]) == 6
    assert int(p.values["local_cc.n_residues"]) == 7
    assert float(p.values["local_cc.fraction_below_0.5"]) == pytest.approx(2 / 6)
    # worst residue first
    assert float(p.values["worst.B:11"]) == pytest.approx(-0.1)
    # formatted numbers are visible as text too
    visible = " ".join(p.text)
    assert "0.812" in visible and "0.734" in visible and "emforge report: toy" in visible

    ids = [img.get("id") for img in p.images]
    assert ids == ["plot-local-cc", "plot-map-histogram"]
    for img in p.images:
        png = png_of(img)
        assert png.startswith(PNG_MAGIC) and len(png) > 2000
        assert img["alt"]

    # self-contained: nothing fetched from anywhere
    assert p.external == []
    assert "script" not in p.tags and "link" not in p.tags
    assert not list((tmp_path / "sub").glob(".*"))  # no temporary file left


def test_report_escapes_text(tmp_path, scores, per_residue, map_stats):
    scores = {**scores, "model": "<script>alert('x')</script>.cif"}
    text = build_dataset_report("a&b<c>", scores, per_residue, map_stats)
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    assert "a&amp;b&lt;c&gt;" in text
    p = parse(text)
    assert p.values["dataset"] == "a&b<c>"  # the parser unescapes: the text round-trips
    assert "script" not in p.tags
    assert "<script>alert('x')</script>.cif" in " ".join(p.text)


def test_report_without_model_shows_map_only(tmp_path, map_stats, density_map):
    out = render_dataset_report("maponly", None, None, map_stats, tmp_path / "r.html", density_map=density_map)
    p = parse(out.read_text(encoding="utf-8"))
    assert "validation was skipped" in " ".join(p.text)
    assert not any(k.startswith("map_fit.") for k in p.values)
    assert float(p.values["map.contour_mean_plus_3std"]) == pytest.approx(3.4)
    assert [img["id"] for img in p.images] == ["plot-map-histogram"]
    assert png_of(p.images[0]).startswith(PNG_MAGIC)


def test_report_handles_missing_values(tmp_path, scores, map_stats):
    # a table where no residue could be scored, and a null local CC median in the scores
    per_residue = pd.DataFrame({"chain_id": ["A"], "res_seq": [1], "ins_code": [""], "res_name": ["GLY"],
                                "local_cc": [float("nan")], "n_points": [2]})
    scores = {**scores, "map_fit": {**scores["map_fit"], "local_cc_median": None, "local_cc_mean": None}}
    p = parse(build_dataset_report("x", scores, per_residue, map_stats))
    assert p.values["map_fit.local_cc_median"] == ""
    assert p.images == []  # no map given, nothing scored: no plot
    assert local_cc_summary(per_residue) == {"n_residues": 1, "n_scored": 0}


def test_per_residue_table_round_trip(tmp_path, per_residue):
    # chain "NA" and empty insertion codes must survive the TSV (no NaN guessing)
    table = per_residue.assign(chain_id=["NA"] * 4 + ["B"] * 3)
    path = write_table(tmp_path / "per_residue.tsv", table)
    back = read_per_residue(path)
    assert back["chain_id"].tolist() == table["chain_id"].tolist()
    assert back["ins_code"].tolist() == table["ins_code"].tolist()
    np.testing.assert_allclose(back["local_cc"], table["local_cc"], equal_nan=True)
    assert math.isnan(back["local_cc"][3])
