"""Knowledge-based tables of the EM-Refiner energy, shipped as ``emforge/data/emrefiner_tables.npz``.

Built by ``tools/build_emrefiner_tables.py`` from the real chains of the shared data set (train
split by 40% sequence cluster; provenance in ``emforge/data/README.md``):

* ``hb_mean``, ``hb_sd`` (2, 4): the H-bond features of :class:`~.energy.HBondParams`;
* ``torsion`` (20, 3, 36, 36): ``-log P(phi, psi | residue type, secondary structure)`` on 10°
  bins, :class:`~.energy.TorsionTable`.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np

from emforge.refine.emrefiner.energy import HBondParams, TorsionTable

DATA_FILE = "emrefiner_tables.npz"


@cache
def _load() -> dict[str, np.ndarray]:
    ref = resources.files("emforge") / "data" / DATA_FILE
    with resources.as_file(ref) as path:
        if not path.exists():
            raise FileNotFoundError(f"{path}: EM-Refiner tables missing; build them with "
                                    "tools/build_emrefiner_tables.py")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def default_hbond_params() -> HBondParams:
    z = _load()
    return HBondParams(mean=z["hb_mean"].astype(np.float64), sd=z["hb_sd"].astype(np.float64))


def default_torsion_table() -> TorsionTable:
    return TorsionTable(values=_load()["torsion"].astype(np.float64))
