"""Atomic models as struct-of-arrays, read and written through gemmi.

An :class:`AtomModel` holds one model (the first of a file) as parallel arrays,
one row per atom, coordinates in Å. Files are never parsed by hand: gemmi reads
PDB and mmCIF (optionally gzipped) and writes them back. Selections return new
models and never mutate their input. :func:`superpose` is the Kabsch fit and
returns the :class:`RigidTransform` it found.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from functools import cache, lru_cache
from pathlib import Path

import gemmi
import numpy as np

from emforge.atomic import atomic_path
from emforge.errors import InputError
from emforge.fileformats import check_file_type, format_suffix

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
BACKBONE_NAMES = ("N", "CA", "C", "O")


@dataclass(frozen=True, eq=False)
class AtomModel:
    """One atomic model as parallel per-atom arrays (N atoms).

    Attributes
    ----------
    coords : (N, 3) float64, Å
    element : (N,) str, element symbol as in the periodic table ("C", "Fe")
    atom_name : (N,) str ("CA")
    res_name : (N,) str ("GLY")
    res_seq : (N,) int64, author residue number
    ins_code : (N,) str, insertion code ("" when none)
    chain_id : (N,) str
    b_factor : (N,) float64, isotropic B in Å² (B = 8 pi^2 sigma^2)
    occupancy : (N,) float64
    is_het : (N,) bool, HETATM record
    residue_index : (N,) int64, 0-based index of the atom's residue in file order
    """

    coords: np.ndarray
    element: np.ndarray
    atom_name: np.ndarray
    res_name: np.ndarray
    res_seq: np.ndarray
    ins_code: np.ndarray
    chain_id: np.ndarray
    b_factor: np.ndarray
    occupancy: np.ndarray
    is_het: np.ndarray
    residue_index: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.coords)
        coords = np.asarray(self.coords, dtype=np.float64).reshape(n, 3)
        object.__setattr__(self, "coords", coords)
        for f in fields(self):
            arr = getattr(self, f.name)
            if len(arr) != n:
                raise ValueError(f"AtomModel.{f.name} has {len(arr)} rows, expected {n}")

    # -- basic properties -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.coords)

    @property
    def n_atoms(self) -> int:
        return len(self.coords)

    @property
    def n_residues(self) -> int:
        return int(len(np.unique(self.residue_index)))

    @property
    def atomic_number(self) -> np.ndarray:
        """(N,) int64 atomic numbers (0 for unknown elements)."""
        return _lookup(self.element, _atomic_number)

    @property
    def mass(self) -> np.ndarray:
        """(N,) float64 atomic masses in Da (0 for unknown elements)."""
        return _lookup(self.element, _atomic_mass)

    def with_coords(self, coords: np.ndarray) -> "AtomModel":
        """A copy carrying new (N, 3) coordinates in Å."""
        coords = np.asarray(coords, dtype=np.float64)
        if coords.shape != self.coords.shape:
            raise ValueError(f"coords shape {coords.shape} does not match {self.coords.shape}")
        return _replace(self, coords=coords.copy())

    def with_b_factors(self, b_factor_A2: np.ndarray) -> "AtomModel":
        """A copy carrying new (N,) isotropic B-factors in Å²."""
        b = np.broadcast_to(np.asarray(b_factor_A2, dtype=np.float64), (len(self),)).copy()
        return _replace(self, b_factor=b)

    # -- selections -------------------------------------------------------------------------
    def select(self, mask: np.ndarray) -> "AtomModel":
        """Sub-model of the atoms where boolean ``mask`` (N,) is true (or an index array)."""
        return AtomModel(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})

    def is_protein(self) -> np.ndarray:
        """(N,) bool: atom belongs to a standard or modified amino-acid residue."""
        return _lookup(self.res_name, _is_amino_acid).astype(bool)

    def is_hydrogen(self) -> np.ndarray:
        return np.isin(self.element, ("H", "D"))

    def protein(self) -> "AtomModel":
        return self.select(self.is_protein())

    def calpha(self) -> "AtomModel":
        """C-alpha atoms of amino-acid residues (element C, name CA)."""
        return self.select(self.is_protein() & (self.atom_name == "CA") & (self.element == "C"))

    def backbone(self) -> "AtomModel":
        """N, CA, C, O atoms of amino-acid residues."""
        return self.select(self.is_protein() & np.isin(self.atom_name, BACKBONE_NAMES))

    def without_hydrogens(self) -> "AtomModel":
        return self.select(~self.is_hydrogen())

    def chain(self, chain_id: str) -> "AtomModel":
        return self.select(self.chain_id == chain_id)

    @property
    def chain_ids(self) -> list[str]:
        """Chain identifiers in file order."""
        _, first = np.unique(self.chain_id, return_index=True)
        return [str(self.chain_id[i]) for i in np.sort(first)]

    # -- residues ---------------------------------------------------------------------------
    def residue_starts(self) -> np.ndarray:
        """Index of the first atom of each residue, (R,) int64, in file order."""
        change = np.flatnonzero(np.diff(self.residue_index)) + 1
        return np.concatenate([[0], change]).astype(np.int64) if len(self) else np.zeros(0, np.int64)

    def residue_table(self) -> dict[str, np.ndarray]:
        """One row per residue (file order): chain_id, res_seq, ins_code, res_name, one_letter."""
        s = self.residue_starts()
        names = self.res_name[s]
        return {
            "chain_id": self.chain_id[s], "res_seq": self.res_seq[s], "ins_code": self.ins_code[s],
            "res_name": names, "one_letter": _lookup(names, _one_letter),
        }

    def residue_labels(self) -> list[str]:
        """Human-readable residue labels such as ``A:GLY12`` or ``A:SER52A``."""
        t = self.residue_table()
        return [f"{c}:{n}{s}{i}" for c, n, s, i in
                zip(t["chain_id"], t["res_name"], t["res_seq"], t["ins_code"])]

    def sequences(self) -> dict[str, str]:
        """One-letter sequence per chain, amino-acid residues only, in file order."""
        prot = self.protein()
        t = prot.residue_table()
        out: dict[str, str] = {}
        for c, letter in zip(t["chain_id"], t["one_letter"]):
            out[str(c)] = out.get(str(c), "") + str(letter)
        return out

    def centroid(self) -> np.ndarray:
        return self.coords.mean(axis=0)

    def transformed(self, transform: "RigidTransform") -> "AtomModel":
        return self.with_coords(transform.apply(self.coords))


def _replace(m: AtomModel, **changes) -> AtomModel:
    values = {f.name: getattr(m, f.name) for f in fields(m)}
    values.update(changes)
    return AtomModel(**values)


# -- element and residue tables (gemmi's, cached per unique name) ------------------------------

@cache
def _atomic_number(symbol: str) -> int:
    return int(gemmi.Element(symbol).atomic_number)


@cache
def _atomic_mass(symbol: str) -> float:
    el = gemmi.Element(symbol)
    # gemmi gives unknown elements ("X") a weight of 1.0; the documented value is 0
    return float(el.weight) if el.atomic_number > 0 else 0.0


@cache
def _is_amino_acid(res_name: str) -> bool:
    info = gemmi.find_tabulated_residue(res_name)
    return bool(info is not None and info.is_amino_acid())


@cache
def _one_letter(res_name: str) -> str:
    info = gemmi.find_tabulated_residue(res_name)
    if info is None or not info.is_amino_acid():
        return "X"
    code = info.one_letter_code.upper()
    return code if code.isalpha() else "X"


def _lookup(keys: np.ndarray, fn) -> np.ndarray:
    """Apply a scalar lookup to an array of strings through its unique values."""
    if len(keys) == 0:  # keep the result type of a non-empty lookup (int, float, bool or str)
        return np.zeros(0, dtype=np.asarray([fn("")]).dtype)
    uniq, inverse = np.unique(keys, return_inverse=True)
    return np.asarray([fn(str(u)) for u in uniq])[inverse]


# -- reading and writing ----------------------------------------------------------------------

def is_model_path(path: str | os.PathLike) -> bool:
    """True when the file name has a model suffix (.pdb, .ent, .cif, .mmcif, optionally .gz)."""
    return format_suffix(path) in MODEL_SUFFIXES


def read_structure(path: str | os.PathLike) -> gemmi.Structure:
    """Read a PDB/mmCIF file (optionally .gz) with gemmi, raising :class:`InputError` on failure."""
    path = Path(path)
    check_file_type(path, MODEL_SUFFIXES, "model")
    if not path.is_file():
        raise InputError("model file not found", path)
    try:
        st = gemmi.read_structure(str(path))
    except Exception as exc:  # gemmi raises RuntimeError/ValueError/OSError variously
        raise InputError(f"cannot read model ({exc})", path) from None
    if len(st) == 0:
        raise InputError("model file holds no atoms", path)
    st.setup_entities()
    return st


def read_model(path: str | os.PathLike, require_protein: bool = True) -> AtomModel:
    """Read the first model of a PDB/mmCIF file into an :class:`AtomModel`.

    Alternate locations are reduced to the first one. With ``require_protein``
    (the default) a file without amino-acid residues is rejected.
    """
    st = read_structure(path)
    st.remove_alternative_conformations()
    model = from_gemmi(st[0])
    if len(model) == 0:
        raise InputError("model file holds no atoms", path)
    if require_protein and not model.is_protein().any():
        raise InputError("model holds no amino-acid residues (emforge models proteins)", path)
    return model


def from_gemmi(gmodel: gemmi.Model) -> AtomModel:
    """Build an :class:`AtomModel` from a gemmi model (one pass over its atoms, at load time)."""
    n = gmodel.count_atom_sites()
    coords = np.empty((n, 3))
    b = np.empty(n)
    occ = np.empty(n)
    res_seq = np.empty(n, np.int64)
    res_idx = np.empty(n, np.int64)
    het = np.empty(n, bool)
    element, atom_name, res_name, ins_code, chain_id = ([""] * n for _ in range(5))
    i = 0
    r = 0
    for ch in gmodel:
        for res in ch:
            for at in res:
                p = at.pos
                coords[i] = (p.x, p.y, p.z)
                b[i], occ[i] = at.b_iso, at.occ
                element[i], atom_name[i] = at.element.name, at.name
                res_name[i], res_seq[i] = res.name, res.seqid.num
                ins_code[i] = res.seqid.icode.strip()
                chain_id[i], het[i], res_idx[i] = ch.name, res.het_flag == "H", r
                i += 1
            r += 1
    # string widths are inferred, never fixed: mmCIF allows chain ids, atom names and
    # residue names longer than the PDB columns, and a fixed "U4" silently truncated them
    def strings(values: list[str]) -> np.ndarray:
        return np.array(values[:i], dtype=str) if i else np.zeros(0, dtype="U1")

    return AtomModel(coords[:i], strings(element), strings(atom_name), strings(res_name), res_seq[:i],
                     strings(ins_code), strings(chain_id), b[:i], occ[:i], het[:i], res_idx[:i])


def to_gemmi(model: AtomModel, name: str = "emforge") -> gemmi.Structure:
    """Build a gemmi Structure (one model) from an :class:`AtomModel`."""
    st = gemmi.Structure()
    st.name = name
    gmodel = gemmi.Model(1) if _gemmi_model_takes_int() else gemmi.Model("1")
    chain = None
    residue = None
    starts = set(model.residue_starts().tolist())
    for i in range(len(model)):
        cid = str(model.chain_id[i])
        if chain is None or chain.name != cid:
            if residue is not None:
                chain.add_residue(residue)
                residue = None
            if chain is not None:
                gmodel.add_chain(chain)
            chain = gemmi.Chain(cid)
        if i in starts:
            if residue is not None:
                chain.add_residue(residue)
            residue = gemmi.Residue()
            residue.name = str(model.res_name[i])
            residue.seqid = gemmi.SeqId(int(model.res_seq[i]), str(model.ins_code[i]) or " ")
            residue.het_flag = "H" if model.is_het[i] else "A"
        atom = gemmi.Atom()
        atom.name = str(model.atom_name[i])
        atom.element = gemmi.Element(str(model.element[i]))
        atom.pos = gemmi.Position(*model.coords[i])
        atom.b_iso = float(model.b_factor[i])
        atom.occ = float(model.occupancy[i])
        residue.add_atom(atom)
    if residue is not None:
        chain.add_residue(residue)
    if chain is not None:
        gmodel.add_chain(chain)
    st.add_model(gmodel)
    st.setup_entities()
    return st


@lru_cache(maxsize=1)
def _gemmi_model_takes_int() -> bool:
    try:
        gemmi.Model(1)
        return True
    except TypeError:
        return False


def write_model(path: str | os.PathLike, model: AtomModel, name: str | None = None) -> Path:
    """Write ``model`` as mmCIF (``.cif``/``.mmcif``) or PDB (``.pdb``/``.ent``), optionally ``.gz``, atomically."""
    path = Path(path)
    check_file_type(path, MODEL_SUFFIXES, "model")
    return _write_structure(path, to_gemmi(model, name or path.name.split(".")[0]))


def write_models(path: str | os.PathLike, models: list[AtomModel], name: str | None = None) -> Path:
    """Write several models (an ensemble: same atoms, other coordinates) as one multi-model
    mmCIF or PDB file (MODEL 1..n), atomically."""
    path = Path(path)
    check_file_type(path, MODEL_SUFFIXES, "model")
    if not models:
        raise InputError("no models to write", path)
    st = to_gemmi(models[0], name or path.name.split(".")[0])
    for k, m in enumerate(models[1:], start=2):
        gm = to_gemmi(m)[0]
        gm.num = k if _gemmi_model_takes_int() else str(k)
        st.add_model(gm)
    return _write_structure(path, st)


def _write_structure(path: Path, st: gemmi.Structure) -> Path:
    suffix = check_file_type(path, MODEL_SUFFIXES, "model")
    if suffix in (".cif", ".mmcif"):
        text = st.make_mmcif_document().as_string()
    else:
        st.setup_cell_images()
        try:
            text = st.make_pdb_string()
        except RuntimeError as exc:  # e.g. "chain name too long for the PDB format": say which file
            raise InputError(f"cannot write the PDB format ({exc}); write mmCIF (.cif) instead", path) from None
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".gz":
            import gzip
            with gzip.open(tmp, "wt", encoding="utf-8") as fh:
                fh.write(text)
        else:
            tmp.write_text(text, encoding="utf-8")
    return path


# -- rigid transforms and superposition -------------------------------------------------------

@dataclass(frozen=True, eq=False)  # generated __eq__/__hash__ would compare/hash arrays and raise
class RigidTransform:
    """x' = R x + t, with ``rotation`` (3, 3) proper rotation and ``translation`` (3,) in Å."""

    rotation: np.ndarray
    translation: np.ndarray

    @classmethod
    def identity(cls) -> "RigidTransform":
        return cls(np.eye(3), np.zeros(3))

    def apply(self, xyz: np.ndarray) -> np.ndarray:
        """Transform (N, 3) or (3,) coordinates."""
        return np.asarray(xyz, dtype=np.float64) @ self.rotation.T + self.translation

    def inverse(self) -> "RigidTransform":
        rt = self.rotation.T
        return RigidTransform(rt, -rt @ self.translation)

    def compose(self, first: "RigidTransform") -> "RigidTransform":
        """The transform applying ``first`` and then ``self``."""
        return RigidTransform(self.rotation @ first.rotation, self.rotation @ first.translation + self.translation)

    @property
    def rotation_deg(self) -> float:
        """Rotation angle in degrees."""
        c = np.clip((np.trace(self.rotation) - 1.0) / 2.0, -1.0, 1.0)
        return float(np.degrees(np.arccos(c)))


def superpose(mobile: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None
              ) -> tuple[RigidTransform, float]:
    """Kabsch least-squares fit of ``mobile`` (N, 3) onto ``target`` (N, 3).

    Returns
    -------
    transform
        Maps ``mobile`` onto ``target``: ``transform.apply(mobile) ~ target``.
    rmsd_A
        (Weighted) root-mean-square deviation after the fit, in Å.
    """
    x = np.asarray(mobile, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"superpose needs two (N, 3) arrays of equal shape, got {x.shape} and {y.shape}")
    if len(x) < 3:
        raise ValueError("superpose needs at least 3 point pairs")
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    cx = w @ x
    cy = w @ y
    h = (x - cx).T @ ((y - cy) * w[:, None])
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    t = cy - rot @ cx
    fitted = x @ rot.T + t
    rmsd = float(np.sqrt(w @ np.sum((fitted - y) ** 2, axis=1)))
    return RigidTransform(rot, t), rmsd
