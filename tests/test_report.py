"""Tests of the HTML reports (emforge.report): per-dataset page with one section per validated model
(numbers, cards, plots, worst and flagged residues), the cross-dataset summary, escaping, atomic writes."""

from __future__ import annotations

import base64
import html
import html.parser
import io
import math
import urllib.parse

import numpy as np
import pandas as pd
import pytest

from emforge.maps import DensityMap
from emforge.report import (
    SUMMARY_COLUMNS,
    build_dataset_report,
    build_summary_report,
    local_cc_summary,
    read_per_residue,
    render_dataset_report,
    render_summary_report,
    summary_table,
)
from emforge.workflow_support import write_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOSTILE = "<script>alert('x')</script>&\"quoted\""


class ReportParser(html.parser.HTMLParser):
    """Collects data-key/data-value pairs, images, ids, links, tables (by class), visible text and
    tags that fetch anything."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, str] = {}
        self.images: list[dict] = []
        self.ids: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []
        self.external: list[tuple[str, str]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "data-key" in a:
            assert a["data-key"] not in self.values, f"duplicated data-key {a['data-key']}"
            self.values[a["data-key"]] = a.get("data-value", "")
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.images.append(a)
        if tag == "a":
            self.links.append(a.get("href", ""))
        for name in ("src", "href"):
            if name in a and not a[name].startswith(("data:", "#")):
                self.external.append((tag, a[name]))
        if tag == "table":
            self._table = a.get("class", "")
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    @property
    def visible(self) -> str:
        return " ".join(self.text)


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


def tiny_png(colour: str) -> bytes:
    """A real, small PNG whose bytes identify it (one flat colour)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(0.5, 0.5))
    fig.patch.set_facecolor(colour)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=20)
    return buf.getvalue()


@pytest.fixture(scope="module")
def pngs() -> dict[str, bytes]:
    out = {"per_residue": tiny_png("#ff0000"), "fsc": tiny_png("#00ff00"), "ramachandran": tiny_png("#0000ff")}
    assert len(set(out.values())) == 3
    return out


@pytest.fixture
def per_residue() -> pd.DataFrame:
    # two chains, one insertion code, one unscored residue (NaN), values and flags known exactly
    t = pd.DataFrame({
        "chain_id": ["A", "A", "A", "A", "B", "B", "B"],
        "res_seq": [1, 2, 3, 3, 10, 11, 12],
        "ins_code": ["", "", "", "A", "", "", ""],
        "res_name": ["MET", "GLY", "SER", "SER", "LYS", "ALA", "TRP"],
        "local_cc": [0.9, 0.8, 0.2, float("nan"), 0.7, -0.1, 0.6],
        "smoc": [0.95, 0.85, 0.3, float("nan"), 0.75, 0.05, 0.65],
        "qscore": [0.7, 0.6, 0.1, float("nan"), 0.5, -0.2, 0.4],
        "rama_outlier": [False, False, True, False, False, True, False],
        "rotamer_outlier": [False] * 7,
        "cbeta_outlier": [False, False, False, False, False, False, True],
        "has_clash": [False, False, True, False, False, False, False],
        "geometry_outlier": [False] * 7,
        "peptide_flag": [False] * 7,
    })
    t["flags"] = ["", "", "rama;clash", "", "", "rama", "cbeta"]
    return t


@pytest.fixture
def scores() -> dict:
    return {
        "dataset": "toy",
        "step": "input",
        "model": {"path": "model<1>.cif", "n_atoms": 50, "n_residues": 7},
        "map_fit": {"map": "map.mrc", "resolution_A": 6.0, "cc": 0.812345, "cc_mask": 0.654321,
                    "ccc": 0.7, "moc": 0.8, "resolution_fsc05_A": 6.5, "mask_radius_A": 3.0,
                    "n_mask_voxels": 1234, "local_cc_mean": 0.516667, "local_cc_median": 0.65,
                    "qscore_mean": 0.35, "smoc_mean": 0.59, "kernel": "emrefiner"},
        "geometry": {"molprobity_score": 1.75, "clashscore": 4.2, "rama_favoured_pct": 95.0,
                     "rama_outlier_pct": 2.0, "rotamer_outlier_pct": 0.0, "cbeta_outliers": 1,
                     "bond_rmsz": 1.1, "angle_rmsz": 1.3},
        "reference": {"path": "ref.cif", "tm_score": 0.734, "rmsd_A": 2.5, "gdt_ts": 0.61, "gdt_ha": 0.42,
                      "lddt_ca": 0.8, "n_aligned": 7, "n_reference": 7, "correspondence": "numbering"},
        "flags": {"rama_outlier": 2, "cbeta_outlier": 1, "has_clash": 1},
    }


@pytest.fixture
def geometry_only_scores() -> dict:
    return {"model": {"path": "fit.cif"},
            "geometry": {"molprobity_score": 2.5, "clashscore": 10.0, "rama_outlier_pct": 1.0}}


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


@pytest.fixture
def models(scores, per_residue, geometry_only_scores, pngs, tmp_path) -> dict:
    # "input": every family and all three plots (as bytes); "fit": geometry only, one plot given as a path
    rama_path = tmp_path / "fit_ramachandran.png"
    rama_path.write_bytes(pngs["ramachandran"])
    fit_table = per_residue.assign(flags=[""] * 7)
    return {"input": {"scores": scores, "per_residue": per_residue, "plots": dict(pngs)},
            "fit": {"scores": geometry_only_scores, "per_residue": fit_table, "plots": {"ramachandran": rama_path}}}


def test_report_holds_every_model(tmp_path, models, scores, map_stats, density_map, pngs):
    out = render_dataset_report("toy", models, map_stats, tmp_path / "sub" / "report.html",
                                density_map=density_map)
    text = out.read_text(encoding="utf-8")
    p = parse(text)
    assert text.startswith("<!DOCTYPE html>")
    assert p.values["dataset"] == "toy"

    # one section per step, in the given order, linked from the top of the page
    assert [i for i in p.ids if i.startswith("model-")] == ["model-input", "model-fit"]
    assert "#model-input" in p.links and "#model-fit" in p.links
    assert "Model: input" in p.visible and "Model: fit" in p.visible

    # numbers of the input model, full precision in data-value, keyed by step
    for key in ("cc", "cc_mask", "ccc", "moc", "resolution_fsc05_A", "local_cc_median", "qscore_mean"):
        assert float(p.values[f"input.map_fit.{key}"]) == pytest.approx(scores["map_fit"][key], rel=1e-12)
    assert p.values["input.map_fit.kernel"] == "emrefiner"
    for key in ("molprobity_score", "clashscore", "rama_outlier_pct", "cbeta_outliers", "bond_rmsz"):
        assert float(p.values[f"input.geometry.{key}"]) == pytest.approx(scores["geometry"][key])
    for key in ("tm_score", "rmsd_A", "gdt_ts", "gdt_ha", "lddt_ca", "n_aligned"):
        assert float(p.values[f"input.reference.{key}"]) == pytest.approx(scores["reference"][key])
    assert p.values["input.reference.correspondence"] == "numbering"
    # the collapsed "all numbers" tables hold keys outside the curated rows too
    assert int(p.values["input.map_fit.all.n_mask_voxels"]) == 1234
    # headline cards
    assert float(p.values["input.card.cc"]) == pytest.approx(0.812345)
    assert float(p.values["input.card.tm_score"]) == pytest.approx(0.734)
    assert float(p.values["input.card.molprobity_score"]) == pytest.approx(1.75)

    # the geometry-only model has geometry numbers and no map fit or reference
    assert float(p.values["fit.geometry.molprobity_score"]) == pytest.approx(2.5)
    assert float(p.values["fit.card.clashscore"]) == pytest.approx(10.0)
    assert not [k for k in p.values if k.startswith(("fit.map_fit", "fit.reference", "fit.card.cc", "fit.worst"))]

    # map statistics, vectors as comma-separated values
    assert p.values["map.voxel_size_A"] == "2.0,2.0,2.5"
    assert p.values["map.shape_zyx"] == "5,4,3"
    assert float(p.values["map.resolution_A"]) == 6.0
    assert float(p.values["map.contour_for_expected_volume"]) == 1.5

    # plots: exactly the bytes given (bytes or path), then the map histogram made by the report
    ids = [img.get("id") for img in p.images]
    assert ids == ["plot-input-fsc", "plot-input-per-residue", "plot-input-ramachandran",
                   "plot-fit-ramachandran", "plot-map-histogram"]
    by_id = {img["id"]: img for img in p.images}
    assert png_of(by_id["plot-input-fsc"]) == pngs["fsc"]
    assert png_of(by_id["plot-input-per-residue"]) == pngs["per_residue"]
    assert png_of(by_id["plot-input-ramachandran"]) == pngs["ramachandran"]
    assert png_of(by_id["plot-fit-ramachandran"]) == pngs["ramachandran"]
    hist = png_of(by_id["plot-map-histogram"])
    assert hist.startswith(PNG_MAGIC) and len(hist) > 2000
    assert all(img["alt"] for img in p.images)

    # formatted numbers are visible as text too
    assert "0.812" in p.visible and "0.734" in p.visible and "emforge report: toy" in p.visible

    # self-contained: nothing fetched from anywhere
    assert p.external == []
    assert "script" not in p.tags and "link" not in p.tags
    assert not list((tmp_path / "sub").glob(".*"))  # no temporary file left


def test_worst_and_flagged_residues(models):
    p = parse(build_dataset_report("toy", models, {}, n_worst_residues=3))
    # lowest local CC first, NaN rows left out, only n rows; keys name chain:number(+insertion code)
    worst = p.tables["worst"]
    assert worst[0][:4] == ["chain", "residue", "number", "local CC"]
    assert [(r[0], r[1], r[2]) for r in worst[1:]] == [("B", "ALA", "11"), ("A", "SER", "3"), ("B", "TRP", "12")]
    assert float(p.values["input.worst.B:11"]) == pytest.approx(-0.1)
    assert float(p.values["input.worst.A:3"]) == pytest.approx(0.2)
    assert float(p.values["input.worst.B:11.smoc"]) == pytest.approx(0.05)
    assert float(p.values["input.worst.B:11.qscore"]) == pytest.approx(-0.2)
    assert not any(k.startswith("input.worst.A:3A") for k in p.values)  # unscored residue
    assert worst[1][-1] == "rama" and worst[2][-1] == "rama;clash"

    # flagged residues of the input model, in sequence order, with their flag text
    assert "Flagged residues (3)" in p.visible
    flagged = p.tables["flags"]
    assert flagged[0] == ["chain", "residue", "number", "flags"]
    assert flagged[1:] == [["A", "SER", "3", "rama;clash"], ["B", "ALA", "11", "rama"], ["B", "TRP", "12", "cbeta"]]
    # the fit model has no flagged residue
    assert "No residue carries a geometry flag." in p.visible


def test_flagged_residues_are_capped(per_residue, scores):
    # 3 * n_worst rows at most, with a note on how many more there are
    table = per_residue.assign(flags=["bond_angle"] * 7, geometry_outlier=[True] * 7)
    p = parse(build_dataset_report("x", {"input": {"scores": scores, "per_residue": table, "plots": {}}}, {},
                                   n_worst_residues=1))
    assert "Flagged residues (7)" in p.visible
    assert len(p.tables["flags"]) == 1 + 3
    assert "... and 4 more" in p.visible


def test_no_plots_given_means_no_images(per_residue, scores):
    p = parse(build_dataset_report("x", {"input": {"scores": scores, "per_residue": per_residue}}, {}))
    assert p.images == []
    assert float(p.values["input.map_fit.cc"]) == pytest.approx(0.812345)


def test_report_escapes_text(per_residue, scores, map_stats):
    hostile_scores = {**scores, "model": {"path": HOSTILE + ".cif"},
                      "map_fit": {**scores["map_fit"], "map": HOSTILE + ".mrc", "kernel": HOSTILE},
                      "reference": {**scores["reference"], "path": HOSTILE + ".pdb"}}
    table = per_residue.assign(chain_id=["<b>"] * 7, flags=[HOSTILE] * 7)
    step = "st<e>p&"
    text = build_dataset_report("a&b<c>", {step: {"scores": hostile_scores, "per_residue": table,
                                                  "plots": {}}}, {**map_stats, "source": HOSTILE},
                                title="<i>title</i>")
    assert "<script>" not in text and "<b>" not in text and "<i>" not in text
    assert "&lt;script&gt;" in text
    assert "a&amp;b&lt;c&gt;" in text
    p = parse(text)
    assert "script" not in p.tags and "b" not in p.tags and "i" not in p.tags
    # the parser unescapes: every text round-trips exactly
    assert p.values["dataset"] == "a&b<c>"
    assert p.values[f"{step}.map_fit.kernel"] == HOSTILE
    assert float(p.values[f"{step}.card.cc"]) == pytest.approx(0.812345)
    assert f"model-{step}" in p.ids and f"#model-{step}" in p.links
    for needle in (HOSTILE + ".cif", HOSTILE + ".mrc", HOSTILE + ".pdb", "<i>title</i>"):
        assert needle in p.visible
    assert p.tables["flags"][1] == ["<b>", "MET", "1", HOSTILE]


def test_report_without_model_shows_map_only(tmp_path, map_stats, density_map):
    out = render_dataset_report("maponly", {}, map_stats, tmp_path / "r.html", density_map=density_map)
    p = parse(out.read_text(encoding="utf-8"))
    assert "validation was skipped" in p.visible
    assert not [k for k in p.values if not k.startswith("map.") and k != "dataset"]
    assert float(p.values["map.contour_mean_plus_3std"]) == pytest.approx(3.4)
    assert [img["id"] for img in p.images] == ["plot-map-histogram"]
    assert png_of(p.images[0]).startswith(PNG_MAGIC)


def test_report_handles_missing_values(scores, map_stats):
    # nothing scored, a null median and a NaN in the scores
    per_residue = pd.DataFrame({"chain_id": ["A"], "res_seq": [1], "ins_code": [""], "res_name": ["GLY"],
                                "local_cc": [float("nan")], "flags": [""]})
    scores = {**scores, "map_fit": {**scores["map_fit"], "local_cc_median": None, "cc_mask": float("nan")}}
    p = parse(build_dataset_report("x", {"input": {"scores": scores, "per_residue": per_residue,
                                                   "plots": {}}}, map_stats))
    assert p.values["input.map_fit.local_cc_median"] == ""
    assert p.values["input.map_fit.cc_mask"] == "nan"
    assert "worst" not in p.tables
    assert p.images == []
    assert local_cc_summary(per_residue) == {"n_residues": 1, "n_scored": 0}


def test_local_cc_summary(per_residue):
    s = local_cc_summary(per_residue)
    cc = np.array([0.9, 0.8, 0.2, 0.7, -0.1, 0.6])
    assert s["n_residues"] == 7 and s["n_scored"] == 6
    assert s["median"] == pytest.approx(np.median(cc))
    assert s["min"] == pytest.approx(-0.1) and s["max"] == pytest.approx(0.9)
    assert s["fraction_below_0.5"] == pytest.approx(2 / 6)


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_per_residue_table_round_trip(tmp_path, per_residue, suffix):
    # chain "NA", empty insertion codes and empty flag texts must survive (no NaN guessing)
    table = per_residue.assign(chain_id=["NA"] * 4 + ["B"] * 3)
    path = tmp_path / f"per_residue{suffix}"
    if suffix == ".csv":
        table.to_csv(path, index=False, float_format="%.5g")  # as emforge.validate.write_validation
    else:
        write_table(path, table)
    back = read_per_residue(path)
    assert back["chain_id"].tolist() == table["chain_id"].tolist()
    assert back["ins_code"].tolist() == table["ins_code"].tolist()
    assert back["flags"].tolist() == table["flags"].tolist()
    assert back["rama_outlier"].dtype == bool and back["rama_outlier"].tolist() == table["rama_outlier"].tolist()
    np.testing.assert_allclose(back["local_cc"], table["local_cc"], equal_nan=True)
    assert math.isnan(back["local_cc"][3])


# -- across datasets ------------------------------------------------------------------------------

@pytest.fixture
def summary_entries(scores, geometry_only_scores) -> list:
    other = {"map_fit": {"cc": 0.5, "cc_mask": 0.4, "qscore_mean": None},
             "geometry": {"molprobity_score": 3.0, "clashscore": "n/a"}}
    no_ccc = {**scores, "map_fit": {k: v for k, v in scores["map_fit"].items() if k != "ccc"}}
    return [("toy", "input", no_ccc), ("toy", "fit", geometry_only_scores), ("d2", "input", other)]


def test_summary_table(summary_entries):
    table = summary_table(summary_entries)
    scores = summary_entries[0][2]
    assert list(table.columns) == ["dataset", "step"] + [f"{s}.{k}" for s, k, _ in SUMMARY_COLUMNS]
    assert list(zip(table["dataset"], table["step"])) == [("toy", "input"), ("toy", "fit"), ("d2", "input")]
    first = table.iloc[0]
    for section, key, _ in SUMMARY_COLUMNS:
        expected = scores.get(section, {}).get(key)
        if expected is None:
            assert math.isnan(first[f"{section}.{key}"])
        else:
            assert first[f"{section}.{key}"] == pytest.approx(expected)
    # missing sections, None and non-numbers become NaN
    assert math.isnan(table.loc[1, "map_fit.cc"]) and math.isnan(table.loc[1, "reference.tm_score"])
    assert table.loc[1, "geometry.molprobity_score"] == 2.5
    assert table.loc[2, "map_fit.cc"] == 0.5
    assert math.isnan(table.loc[2, "map_fit.qscore_mean"]) and math.isnan(table.loc[2, "geometry.clashscore"])
    assert len(summary_table([])) == 0


def test_summary_report(tmp_path, summary_entries):
    table = summary_table(summary_entries)
    out_html, out_tsv = tmp_path / "summary.html", tmp_path / "summary.tsv"
    render_summary_report(table, out_html, out_tsv)
    assert not list(tmp_path.glob(".*"))  # atomic writes, no temporary file left

    back = pd.read_csv(out_tsv, sep="\t")
    assert list(back.columns) == list(table.columns)
    assert back["dataset"].tolist() == ["toy", "toy", "d2"] and back["step"].tolist() == ["input", "fit", "input"]
    numeric = [c for c in table.columns if c not in ("dataset", "step")]
    np.testing.assert_allclose(back[numeric].to_numpy(float), table[numeric].to_numpy(float), atol=5e-5,
                               equal_nan=True)

    text = out_html.read_text(encoding="utf-8")
    p = parse(text)
    rows = p.tables["summary"]
    assert len(rows) == 1 + 3
    assert rows[0][:2] == ["dataset", "model"]
    assert [r[:2] for r in rows[1:]] == [["toy", "input"], ["toy", "fit"], ["d2", "input"]]
    # each row links to its dataset's report; nothing else is linked or fetched
    assert p.links == ["toy/report.html", "toy/report.html", "d2/report.html"]
    assert sorted(set(h for _, h in p.external)) == ["d2/report.html", "toy/report.html"]
    assert "script" not in p.tags and "img" not in p.tags
    assert int(p.values["datasets"]) == 2
    assert float(p.values["summary.toy.input.map_fit.cc"]) == pytest.approx(0.812345)
    assert float(p.values["summary.toy.input.reference.tm_score"]) == pytest.approx(0.734)
    assert float(p.values["summary.toy.fit.geometry.molprobity_score"]) == pytest.approx(2.5)
    assert p.values["summary.toy.fit.map_fit.cc"] == "nan"
    assert float(p.values["summary.d2.input.map_fit.cc_mask"]) == pytest.approx(0.4)
    # a column with no value in any row is left out of the page (but kept in the TSV)
    assert "summary.toy.input.map_fit.ccc" not in p.values
    assert "CCC" not in rows[0] and "CC" in rows[0] and "TM-score" in rows[0]


def test_summary_report_escapes_text(scores):
    p_text = build_summary_report(summary_table([(HOSTILE, "<s>", scores)]), title="<i>x</i>")
    assert "<script>" not in p_text and "<s>" not in p_text and "<i>" not in p_text
    p = parse(p_text)
    assert "script" not in p.tags and "s" not in p.tags
    assert p.links == [urllib.parse.quote(HOSTILE) + "/report.html"]  # URL-encoded, then HTML-escaped
    assert float(p.values[f"summary.{HOSTILE}.<s>.map_fit.cc"]) == pytest.approx(0.812345)
    assert p.tables["summary"][1][:2] == [HOSTILE, "<s>"]
    assert "<i>x</i>" in p.visible
