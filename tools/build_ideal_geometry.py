"""Convert Engh & Huber ideal geometry (``stereo_chemical_props.txt``) into ``src/emforge/data/ideal_geometry.json``.

Source: ``../shared/data/geometry/stereo_chemical_props.txt`` (3dem/model-angelo,
``model_angelo/utils/``, MIT, Copyright 2022 Kiarash Jamali; originally from AlphaFold,
Apache-2.0), which lists Engh & Huber (1991) ideal bond lengths (Å) and bond angles (degrees)
with standard deviations for the 20 standard amino acids, and AlphaFold's minimum non-bonded
distances per element pair. The file has no inter-residue (peptide) restraints; those are
taken from AlphaFold's ``residue_constants.py`` (Apache-2.0), the values that accompany the same
table there:

* C(i)-N(i+1): 1.329 ± 0.014 Å, or 1.341 ± 0.016 Å when residue i+1 is proline
* CA(i)-C(i)-N(i+1): 116.568 ± 1.995 degrees (AlphaFold stores cos = -0.4473 ± 0.0311)
* C(i)-N(i+1)-CA(i+1): 121.352 ± 2.315 degrees (AlphaFold stores cos = -0.5203 ± 0.0353)

The output is deterministic (sorted keys, fixed order of restraints as in the source file), so
re-running this script on the same input reproduces the committed file byte for byte.

Run:  .venv/bin/python tools/build_ideal_geometry.py [--source PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EMFORGE_TEST_DATA", "/work/shared/data"))
DEFAULT_SOURCE = DATA / "geometry" / "stereo_chemical_props.txt"
DEFAULT_OUT = REPO / "src" / "emforge" / "data" / "ideal_geometry.json"

PEPTIDE = {
    "bond_C_N": {"ideal_A": 1.329, "sigma_A": 0.014},
    "bond_C_N_pro": {"ideal_A": 1.341, "sigma_A": 0.016},
    "angle_CA_C_N": {"ideal_deg": 116.568, "sigma_deg": 1.995},
    "angle_C_N_CA": {"ideal_deg": 121.352, "sigma_deg": 2.315},
    "source": "AlphaFold residue_constants.py (between_res_*), Apache-2.0",
}


def parse(text: str) -> dict:
    """Parse the three '-'-terminated sections (bonds, angles, non-bonded distances)."""
    sections: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line == "-":
            if current is not None:
                sections.append(current)
            current = None
            continue
        if current is None:  # header line of a section
            current = []
            continue
        current.append(line.split())
    if current:
        sections.append(current)
    if len(sections) != 3:
        raise SystemExit(f"expected 3 sections (bonds, angles, non-bonded), found {len(sections)}")
    bonds: dict[str, list] = {}
    for name, res, mean, sd in sections[0]:
        a1, a2 = name.split("-")
        bonds.setdefault(res, []).append([a1, a2, float(mean), float(sd)])
    angles: dict[str, list] = {}
    for name, res, mean, sd in sections[1]:
        a1, a2, a3 = name.split("-")
        angles.setdefault(res, []).append([a1, a2, a3, float(mean), float(sd)])
    nonbonded = {}
    for pair, dist, tol in sections[2]:
        nonbonded[pair] = {"min_distance_A": float(dist), "tolerance_A": float(tol)}
    for table in (bonds, angles):
        for res, rows in table.items():
            keys = [tuple(r[:-2]) for r in rows]
            if len(set(keys)) != len(keys):
                raise SystemExit(f"duplicate restraint in {res}")
    return {"bonds": bonds, "angles": angles, "nonbonded": nonbonded}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    raw = args.source.read_bytes()
    tables = parse(raw.decode("ascii"))
    if len(tables["bonds"]) != 20 or len(tables["angles"]) != 20:
        raise SystemExit("expected bonds and angles for the 20 standard amino acids")
    doc = {
        "description": "Engh & Huber ideal bond lengths (Å) and angles (degrees) with standard deviations, "
                       "per standard amino acid; peptide-link restraints; minimum non-bonded distances",
        "source": "stereo_chemical_props.txt from 3dem/model-angelo (model_angelo/utils/), MIT, "
                  "Copyright 2022 Kiarash Jamali; originally from AlphaFold (Apache-2.0)",
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "reference": "Engh RA, Huber R (1991) Acta Cryst A47:392-400",
        "units": {"bonds": "Å", "angles": "degrees", "nonbonded": "Å"},
        "bond_columns": ["atom1", "atom2", "ideal_A", "sigma_A"],
        "angle_columns": ["atom1", "atom2", "atom3", "ideal_deg", "sigma_deg"],
        "bonds": tables["bonds"],
        "angles": tables["angles"],
        "peptide": PEPTIDE,
        "nonbonded": tables["nonbonded"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out)
    n_b = sum(len(v) for v in tables["bonds"].values())
    n_a = sum(len(v) for v in tables["angles"].values())
    print(f"wrote {args.out} ({n_b} bonds, {n_a} angles, {len(tables['nonbonded'])} non-bonded pairs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
