"""Model geometry validation (MolProbity-style), computed by emforge itself.

Each validator takes an :class:`emforge.models.AtomModel` and returns ``(summary, per_residue)``:
a JSON-ready dict and a pandas DataFrame with one row per residue in ``model.residue_table()``
order (columns chain_id, res_seq, ins_code, res_name first).
"""

from emforge.geometry.cbeta import cbeta_deviations
from emforge.geometry.clashes import clash_pairs, clashscore
from emforge.geometry.covalent import covalent_geometry
from emforge.geometry.hydrogens import add_riding_hydrogens
from emforge.geometry.molprobity import molprobity_score
from emforge.geometry.peptides import peptide_bonds
from emforge.geometry.ramachandran import ramachandran
from emforge.geometry.rotamers import rotamers
from emforge.geometry.torsions import backbone_torsions, chi_angles, dihedral_deg

__all__ = [
    "add_riding_hydrogens",
    "backbone_torsions",
    "cbeta_deviations",
    "chi_angles",
    "clash_pairs",
    "clashscore",
    "covalent_geometry",
    "dihedral_deg",
    "molprobity_score",
    "peptide_bonds",
    "ramachandran",
    "rotamers",
]
