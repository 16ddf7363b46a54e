"""Build ``src/emforge/data/emrefiner_tables.npz``: the knowledge-based tables of the EM-Refiner energy.

Paper 000 takes its H-bond feature statistics (Table S1, from 3,881 X-ray structures) and its
``P(phi, psi | residue type, secondary structure)`` from QUARK; neither table is available here,
so both are derived from the real chains of the shared data set (``chains/``, PDB entries, CC0),
**train split only** (:func:`emforge.splits.split_of` on ``clust40``), so that benchmark decoys
drawn from the validation split are never scored by statistics of their own structure.

* Secondary structure: :func:`emforge.sse.assign_secondary_structure` (3 states H/E/C).
* H-bond features: every backbone pair (C=O of i, N-H of j, |i - j| >= 3, same chain or not)
  that DSSP's electrostatic criterion calls hydrogen-bonded (E < -0.5 kcal/mol,
  :func:`emforge.sse.hbond_energy`), with the amide H placed as the energy places it
  (:func:`emforge.refine.emrefiner.energy.bisector_amide_hydrogens`). Class "helical": donor and
  acceptor both H; "other": the rest. Per class and feature: mean and standard deviation (the torsion's
  on the circle: circular mean, and the SD of the wrapped deviations); the torsion is only used
  for the helical class.
* Torsions: ``phi, psi`` (:func:`emforge.geometry.torsions.backbone_torsions`) histogrammed on
  36 x 36 bins of 10° per residue type and state, smoothed on the torus with a Gaussian of one
  bin, and shrunk toward the state's all-residue distribution (and that toward uniform) with a
  pseudo-count of :data:`PSEUDO` observations: ``P = (n + a P_parent) / (N + a)``. Stored as
  ``-log(P * n_bins^2)`` (0 = as likely as uniform), float32.

Run:  .venv/bin/python tools/build_emrefiner_tables.py [--data ../shared/data] [--out src/emforge/data/...]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emforge.geometry.torsions import backbone_torsions  # noqa: E402
from emforge.models import read_model  # noqa: E402
from emforge.refine.emrefiner.energy import (  # noqa: E402
    AMINO_ACIDS,
    SS_CODES,
    bisector_amide_hydrogens,
    hbond_features,
)
from emforge.splits import split_of  # noqa: E402
from emforge.sse import assign_secondary_structure, backbone_arrays, hbond_energy  # noqa: E402

N_BINS = 36
PSEUDO = 50.0
HB_CUTOFF_KCAL = -0.5


def chain_files(data: Path) -> list[Path]:
    with open(data / "chains" / "MANIFEST.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [data / "chains" / r["file"] for r in rows if split_of(r["clust40"]) == "train"]


def circular_stats(deg: np.ndarray) -> tuple[float, float]:
    a = np.radians(deg)
    mean = float(np.degrees(np.arctan2(np.sin(a).mean(), np.cos(a).mean())))
    dev = (deg - mean + 180.0) % 360.0 - 180.0
    return mean, float(np.sqrt(np.mean(dev ** 2)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "src" / "emforge" / "data" / "emrefiner_tables.npz")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    counts = np.zeros((20, 3, N_BINS, N_BINS))
    feats: dict[int, list[np.ndarray]] = {0: [], 1: []}
    files = chain_files(args.data)
    n_res = 0
    for path in files:
        m = read_model(path).protein().without_hydrogens()
        if m.n_residues < 10:
            continue
        ss = assign_secondary_structure(m, states=3)
        s_idx = np.array([SS_CODES.index(c) if c in "HE" else 2 for c in ss])
        tor = backbone_torsions(m)
        phi, psi = tor["phi_deg"], tor["psi_deg"]
        starts = m.residue_starts()
        aa_map = {a: i for i, a in enumerate(AMINO_ACIDS)}
        aa = np.array([aa_map.get(r, -1) for r in m.res_name[starts]])
        ok = np.isfinite(phi) & np.isfinite(psi) & (aa >= 0)
        bi = np.clip(((phi[ok] + 180.0) // (360.0 / N_BINS)).astype(int), 0, N_BINS - 1)
        bj = np.clip(((psi[ok] + 180.0) // (360.0 / N_BINS)).astype(int), 0, N_BINS - 1)
        np.add.at(counts, (aa[ok], s_idx[ok], bi, bj), 1.0)
        n_res += int(ok.sum())

        bb = backbone_arrays(m)
        e = hbond_energy(bb).tocoo()
        keep = (e.data < HB_CUTOFF_KCAL) & (np.abs(e.row - e.col) >= 3)
        acc, don = e.row[keep], e.col[keep]
        xyz = bb.xyz  # (R, 4, 3): N, CA, C, O
        c_prev = np.roll(xyz[:, 2], 1, axis=0)
        h = bisector_amide_hydrogens(xyz[:, 0], xyz[:, 1], c_prev)
        f = hbond_features(xyz[acc, 2], xyz[acc, 3], h[don], xyz[don, 0])
        helical = (s_idx[acc] == 0) & (s_idx[don] == 0)
        good = np.isfinite(f).all(axis=1)
        feats[0].append(f[good & helical])
        feats[1].append(f[good & ~helical])

    mean = np.zeros((2, 4))
    sd = np.ones((2, 4))
    n_hb = []
    for k in (0, 1):
        f = np.concatenate(feats[k])
        n_hb.append(len(f))
        mean[k, :3] = f[:, :3].mean(axis=0)
        sd[k, :3] = f[:, :3].std(axis=0)
        mean[k, 3], sd[k, 3] = circular_stats(f[:, 3])

    smooth = ndimage.gaussian_filter(counts, sigma=(0, 0, 1.0, 1.0), mode="wrap")
    uniform = np.full((N_BINS, N_BINS), 1.0 / N_BINS ** 2)
    per_state = smooth.sum(axis=0)  # (3, n, n)
    p_state = (per_state + PSEUDO * uniform) / (per_state.sum(axis=(1, 2), keepdims=True) + PSEUDO)
    tot = smooth.sum(axis=(2, 3), keepdims=True)
    p = (smooth + PSEUDO * p_state[None]) / (tot + PSEUDO)
    energy = -np.log(p * N_BINS ** 2).astype(np.float32)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, hb_mean=mean, hb_sd=sd, torsion=energy, n_chains=np.array(len(files)),
                        n_residues=np.array(n_res), n_hbonds=np.array(n_hb))
    tmp.replace(args.out)
    print(f"{len(files)} train chains, {n_res} residues with phi/psi, H-bonds helical/other {n_hb}")
    print("H-bond mean (d_OH, C-O..H, O..H-N, C-O..H-N):\n", np.round(mean, 2), "\nsd:\n", np.round(sd, 2))
    print(f"written {args.out} ({args.out.stat().st_size / 1e3:.0f} kB) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
