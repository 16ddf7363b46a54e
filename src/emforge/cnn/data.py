"""Training examples for the C-alpha CNN, simulated from real protein chains.

One example (:func:`make_example`, :func:`simulate_example`) is made from one chain:

1. a uniformly random rotation about the chain's centroid and a random sub-voxel shift;
2. a map on the 1.5 Å working grid by paper 003 Eq. 2 (``emforge.simulate`` kernel
   ``"crtasser"``: ``rho(y) = sum_i Z_i / sqrt(2 pi sigma^2) exp(-|y - x_i|^2 / 2 sigma^2)``,
   ``sigma = R / sqrt(2 pi)``), each atom further blurred by a random B-factor
   (``sigma_i^2 = sigma^2 + B_i / 8 pi^2``): a global B drawn from ``b_range_A2`` scaled per atom
   by 0.5-1.5 following the rank of the deposited B-factor, so loops and surfaces blur more than
   the core, as in experimental maps;
3. noise: white Gaussian noise low-passed by a Gaussian of 0.5-1 times the map's own width,
   so it is correlated over about the resolution like the noise of a cryo-EM map, scaled to a
   random signal-to-noise ratio (log-uniform in ``snr_range``; SNR = standard deviation of the
   noise-free map over the protein voxels, those above 5 % of its maximum, over the noise
   standard deviation);
4. the input channels (:func:`emforge.cnn.features.input_channels`) normalised by the statistics
   of a box around the chain with a random margin of 2-20 Å, so the network sees the spread of
   solvent fractions of real boxed maps;
5. a random ``crop_vox``-cube centred on a random atom of the chain, with its labels: 1 for the
   voxels whose centre lies within :data:`LABEL_RADIUS_A` of a C-alpha atom, else 0.

Every random choice comes from the ``numpy.random.Generator`` passed in: the same seed gives
identical arrays.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from emforge.cnn.features import VOXEL_SIZE_A, input_channels
from emforge.errors import InputError, require_positive
from emforge.maps import DensityMap
from emforge.models import AtomModel, read_model
from emforge.simulate import simulate_map
from emforge.splits import VALIDATION_FRACTION, split_of

#: Label radius in Å: a voxel is a C-alpha voxel when its centre lies within this distance of a
#: C-alpha atom. 1.3 Å is half the diagonal of a 1.5 Å voxel (1.299 Å), the smallest radius
#: that always labels the voxel nearest to each C-alpha; it marks 2.7 voxels per C-alpha on
#: average, a compact blob (neighbours 3.8 Å apart stay 1.2 Å apart) with about 14 background
#: voxels per C-alpha voxel inside the protein, near paper 003's 50:1 over its central map region.
LABEL_RADIUS_A = 1.3

#: Per-atom B-factor range (Å^2) of the global blur drawn per example.
B_RANGE_A2 = (0.0, 80.0)
#: Signal-to-noise range (log-uniform) of the added noise.
SNR_RANGE = (1.0, 10.0)
#: Margin range (Å) of the box whose statistics normalise the input channels.
STATS_MARGIN_RANGE_A = (2.0, 20.0)

#: The shared chain set (``$EMFORGE_TEST_DATA`` overrides ``/work/shared/data``, as in the tests).
DEFAULT_MANIFEST = Path(os.environ.get("EMFORGE_TEST_DATA", "/work/shared/data")) / "chains" / "MANIFEST.tsv"


# -- chains -----------------------------------------------------------------------------------

def chain_table(split: str, manifest: str | os.PathLike | None = None,
                validation_fraction: float = VALIDATION_FRACTION):
    """Chains of one split (``"train"`` or ``"validation"``) of the shared chain set.

    The split is :func:`emforge.splits.split_of` of the ``clust40`` column, so no 40 %-identity
    cluster is in both splits. Returns a :class:`pandas.DataFrame` with the manifest's columns
    (``file``, ``n_residues``, ``clust40``, ``sequence``, ...) plus ``split`` and ``path`` (the
    absolute path of the chain file), in manifest order.
    """
    import pandas as pd

    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    path = Path(DEFAULT_MANIFEST if manifest is None else manifest)
    if not path.is_file():
        raise InputError("chain manifest not found", path)
    try:
        table = pd.read_csv(path, sep="\t", dtype={"clust40": str, "file": str})
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the chain manifest ({exc})", path) from None
    missing = {"file", "clust40"} - set(table.columns)
    if missing:
        raise InputError(f"chain manifest lacks the column(s) {sorted(missing)}", path)
    table = table.assign(split=[split_of(c, validation_fraction) for c in table["clust40"]],
                         path=[str(path.parent / f) for f in table["file"]])
    return table[table["split"] == split].reset_index(drop=True)


def load_chains(table) -> list[AtomModel]:
    """Protein heavy atoms of every chain in a :func:`chain_table` (``path`` column)."""
    return [read_model(p).protein().without_hydrogens() for p in table["path"]]


# -- geometry helpers -------------------------------------------------------------------------

def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly distributed 3x3 rotation matrix (normalised Gaussian quaternion)."""
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def calpha_labels(grid: DensityMap, ca_xyz_A: np.ndarray, radius_A: float = LABEL_RADIUS_A) -> np.ndarray:
    """Label grid (D, H, W) uint8: 1 where the voxel centre is within ``radius_A`` of a C-alpha.

    ``grid`` gives the frame only (shape, voxel size, origin); ``ca_xyz_A`` is (N, 3) in Å.
    Vectorised over atoms and the offsets of a cube of half-edge ``ceil(radius / voxel)``.
    """
    labels = np.zeros(grid.shape, np.uint8)
    ca = np.asarray(ca_xyz_A, dtype=np.float64).reshape(-1, 3)
    if len(ca) == 0:
        return labels
    reach = np.ceil(radius_A / grid.voxel_size).astype(np.int64)  # (x, y, z)
    axes = [np.arange(-r, r + 1) for r in reach]
    off = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)  # (M, 3) i, j, k
    base = np.floor(grid.world_to_index(ca)).astype(np.int64)  # (N, 3)
    idx = base[:, None, :] + off[None, :, :]  # (N, M, 3)
    d2 = np.sum((grid.index_to_world(idx) - ca[:, None, :]) ** 2, axis=-1)
    ok = (d2 <= radius_A ** 2) & np.all((idx >= 0) & (idx < grid.shape_xyz), axis=-1)
    i, j, k = idx[ok].T
    labels[k, j, i] = 1
    return labels


# -- simulation -------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class SimulatedMap:
    """A noisy simulated map of a randomly rotated chain on the 1.5 Å grid.

    Attributes
    ----------
    map : DensityMap, voxel 1.5 Å
    model : AtomModel, the rotated chain (Å)
    ca_xyz_A : (N_ca, 3) float64, its C-alpha positions
    stats_slices : tuple of 3 slices into ``map.data``, the normalisation box
    resolution_A : float
    """

    map: DensityMap
    model: AtomModel
    ca_xyz_A: np.ndarray
    stats_slices: tuple
    resolution_A: float


def simulate_noisy_map(model: AtomModel, resolution_A: float, rng: np.random.Generator, *,
                       margin_A: float = 10.0, b_range_A2=B_RANGE_A2, snr_range=SNR_RANGE,
                       stats_margin_range_A=STATS_MARGIN_RANGE_A) -> SimulatedMap:
    """Steps 1-3 of the module docstring and the normalisation box of step 4.

    The grid covers the chain plus ``margin_A`` on each side.
    """
    R = require_positive(resolution_A, "resolution (Å)")
    atoms = model.without_hydrogens()
    if len(atoms) == 0:
        raise InputError("model holds no heavy atoms")
    # 1. rotation about the centroid, random sub-voxel shift
    rot = random_rotation(rng)
    centre = atoms.coords.mean(axis=0)
    xyz = (atoms.coords - centre) @ rot.T + centre + rng.uniform(0.0, VOXEL_SIZE_A, 3)
    atoms = atoms.with_coords(xyz)
    ca = atoms.calpha().coords
    # 2. Eq. 2 with a per-atom B blur
    b_global = rng.uniform(*b_range_A2)
    b = np.nan_to_num(np.asarray(atoms.b_factor, dtype=np.float64))
    rank = np.argsort(np.argsort(b, kind="stable"), kind="stable") / max(len(b) - 1, 1)
    b_atom = b_global * (0.5 + rank)
    sigma_r = R / math.sqrt(2.0 * math.pi)
    sigma = np.sqrt(sigma_r ** 2 + b_atom / (8.0 * math.pi ** 2))
    grid = DensityMap.around_points(xyz, VOXEL_SIZE_A, margin_A)
    signal = simulate_map(atoms, grid, R, kernel="crtasser", sigma_A=sigma).data.astype(np.float64)
    # 3. correlated noise at a random SNR
    protein = signal > 0.05 * signal.max()
    snr = math.exp(rng.uniform(math.log(snr_range[0]), math.log(snr_range[1])))
    noise = rng.standard_normal(signal.shape)
    noise_sigma_vox = rng.uniform(0.5, 1.0) * sigma_r / VOXEL_SIZE_A
    if noise_sigma_vox > 0.05:
        noise = ndimage.gaussian_filter(noise, noise_sigma_vox, mode="wrap")
    noise *= float(signal[protein].std()) / (snr * float(noise.std()))
    data = (signal + noise).astype(np.float32)
    # normalisation box: the chain's bounding box plus a random margin
    m = rng.uniform(*stats_margin_range_A)
    lo = np.floor(grid.world_to_index(xyz.min(axis=0) - m)).astype(np.int64)
    hi = np.ceil(grid.world_to_index(xyz.max(axis=0) + m)).astype(np.int64) + 1
    lo = np.clip(lo, 0, grid.shape_xyz)
    hi = np.clip(hi, lo + 1, grid.shape_xyz)
    stats = tuple(slice(int(lo[a]), int(hi[a])) for a in (2, 1, 0))
    return SimulatedMap(grid.with_data(data), atoms, ca, stats, R)


@dataclass(frozen=True, eq=False)
class Example:
    """One training crop.

    Attributes
    ----------
    channels : (C, D, H, W) float32, network input
    labels : (D, H, W) uint8, 1 = C-alpha voxel
    origin_A : (3,) float64, world position (x, y, z) of crop voxel [0, 0, 0]; voxel 1.5 Å
    ca_xyz_A : (N, 3) float64, every C-alpha of the rotated chain (also those outside the crop)
    resolution_A : float
    """

    channels: np.ndarray
    labels: np.ndarray
    origin_A: np.ndarray
    ca_xyz_A: np.ndarray
    resolution_A: float


def make_example(model: AtomModel, resolution_A: float, rng: np.random.Generator, crop_vox: int = 48,
                 in_channels: int = 2, **simulate_kwargs) -> Example:
    """A training crop with its frame (module docstring, steps 1-5).

    ``simulate_kwargs`` go to :func:`simulate_noisy_map` (``b_range_A2``, ``snr_range``,
    ``stats_margin_range_A``); the grid margin is set so that every crop fits.
    """
    crop = int(crop_vox)
    if crop < 1:
        raise ValueError(f"crop_vox must be >= 1, got {crop_vox}")
    margin = (crop // 2 + 1) * VOXEL_SIZE_A
    sim = simulate_noisy_map(model, resolution_A, rng, margin_A=margin, **simulate_kwargs)
    grid = sim.map
    atom = int(rng.integers(len(sim.model)))
    centre = np.round(grid.world_to_index(sim.model.coords[atom])).astype(np.int64)
    start = np.clip(centre - crop // 2, 0, np.maximum(grid.shape_xyz - crop, 0))
    stop = np.minimum(start + crop, grid.shape_xyz)
    box = tuple(slice(int(start[a]), int(stop[a])) for a in (2, 1, 0))
    channels = input_channels(grid.data, in_channels, stats_slices=sim.stats_slices)[(slice(None),) + box]
    frame = DensityMap(np.zeros(tuple(int(stop[a] - start[a]) for a in (2, 1, 0)), np.float32),
                       grid.voxel_size, grid.index_to_world(start))
    labels = calpha_labels(frame, sim.ca_xyz_A)
    return Example(np.ascontiguousarray(channels), labels, frame.origin.copy(), sim.ca_xyz_A, sim.resolution_A)


def simulate_example(model: AtomModel, resolution_A: float, rng: np.random.Generator, crop_vox: int = 48,
                     in_channels: int = 2, **simulate_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """One training crop: channels (C, D, H, W) float32 and labels (D, H, W) uint8.

    See :func:`make_example` (which also returns the crop's frame) and the module docstring.
    """
    ex = make_example(model, resolution_A, rng, crop_vox, in_channels, **simulate_kwargs)
    return ex.channels, ex.labels
