"""MolProbity score: one number combining clashscore, rotamer outliers and Ramachandran favoured.

Chen et al. (2010) Acta Cryst D66:12-21 (MolProbity: all-atom structure validation for
macromolecular crystallography), formula as implemented in cctbx
``mmtbx/validation/utils.py::molprobity_score`` (cctbx-base 2025.11) and described at
http://kinemage.biochem.duke.edu/suppinfo/CASP8/methods.html:

    MPscore = 0.426 ln(1 + clashscore)
            + 0.33  ln(1 + max(0, rota_out - 1))
            + 0.25  ln(1 + max(0, rama_iffy - 2))
            + 0.5

with clashscore per 1000 atoms, rota_out the percentage of rotamer outliers and rama_iffy =
100 - the percentage of Ramachandran-favoured residues. The coefficients come from a log-linear
fit of the three scores against crystallographic resolution, so the score reads as the
resolution (Å) at which the model's geometry would be typical. Note the "-1" and "-2" offsets:
up to 1 % rotamer outliers and 2 % non-favoured Ramachandran residues cost nothing.
"""

from __future__ import annotations

import math

CLASH_WEIGHT = 0.426
ROTAMER_WEIGHT = 0.33
RAMA_WEIGHT = 0.25
OFFSET = 0.5
ROTAMER_ALLOWANCE_PCT = 1.0
RAMA_ALLOWANCE_PCT = 2.0


def molprobity_score(clashscore: float, rotamer_outlier_pct: float, rama_favoured_pct: float) -> float:
    """MolProbity score from clashscore, rotamer-outlier % and Ramachandran-favoured % (see module docstring).

    Parameters
    ----------
    clashscore
        Serious clashes per 1000 atoms (>= 0).
    rotamer_outlier_pct
        Percentage (0-100) of side chains that are rotamer outliers.
    rama_favoured_pct
        Percentage (0-100) of residues in favoured Ramachandran regions.

    Returns
    -------
    float
        The score (lower is better; roughly a resolution in Å).

    Raises
    ------
    ValueError
        If an input is negative or not finite, or a percentage exceeds 100. (cctbx returns -1
        for missing or negative inputs; here the caller decides what to report.)
    """
    values = {"clashscore": clashscore, "rotamer_outlier_pct": rotamer_outlier_pct,
              "rama_favoured_pct": rama_favoured_pct}
    for name, v in values.items():
        if v is None or not math.isfinite(float(v)) or float(v) < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    for name in ("rotamer_outlier_pct", "rama_favoured_pct"):
        if float(values[name]) > 100.0 + 1e-9:
            raise ValueError(f"{name} is a percentage and must be <= 100, got {values[name]!r}")
    rama_iffy = 100.0 - float(rama_favoured_pct)
    return (CLASH_WEIGHT * math.log(1.0 + float(clashscore))
            + ROTAMER_WEIGHT * math.log(1.0 + max(0.0, float(rotamer_outlier_pct) - ROTAMER_ALLOWANCE_PCT))
            + RAMA_WEIGHT * math.log(1.0 + max(0.0, rama_iffy - RAMA_ALLOWANCE_PCT))
            + OFFSET)
