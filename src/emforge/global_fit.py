"""Global map-model fit: correlation in several regions, Manders' overlap, model-map FSC.

Which definition is which
-------------------------
All correlations compare the experimental map ``e`` with a map ``s`` simulated from the
model on the same grid. Let ``E = {e > t_e}`` be the voxels above the map's contour
level and ``S = {s > t_s}`` those above the model map's contour.

``ccc``
    Pearson correlation over the whole box. Same as TEMPy's ``ScoringFunctions.CCC``
    (mean of the product of the two z-scored maps) and ``CCC_map(mode=1, meanDist=True)``,
    and as ChimeraX ``measure correlation`` "about mean" over the whole grid.
``ccc_mask``
    Pearson correlation over the voxels within ``mask_radius_A`` (default max(3 Å, R/2))
    of any atom (:func:`emforge.masks.model_mask`; emforge's ``cc_mask``, paper 000's
    masked CC). No TEMPy counterpart.
``ccc_envelope``
    Pearson correlation ("about mean") over the model map's envelope ``S``: ChimeraX
    ``measure correlation <model map> inMap <map> envelope true`` reports this as
    "correlation about mean" when the model map is shown at level ``t_s`` (the value
    ChimeraX calls "correlation" is the uncentred one, i.e. :func:`manders_overlap` over
    ``S``). No TEMPy counterpart.
``ccc_contour``
    TEMPy ``CCC_map(mode=2, meanDist=True)``, the ``ccc_contour`` of ``TEMPy.scores``:
    each map minus its mean over its own contoured voxels, set to 0 outside them, then
    ``sum(e' s') / sqrt(sum e'^2 sum s'^2)`` over the box (so over ``E ∪ S``).
``ccc_overlap``
    TEMPy ``CCC_map(mode=3, meanDist=True)``, the ``ccc_mask`` of ``TEMPy.scores``:
    Pearson correlation over ``E ∩ S``.
``moc``
    Manders' overlap coefficient ``sum(e s) / sqrt(sum e^2 sum s^2)`` (no mean
    subtraction) over ``E ∩ S``: TEMPy ``CCC_map(mode=3, meanDist=False)``, the MOC of
    Joseph et al. (2016) on contoured maps. Over that region both maps are positive.
``overlap_fraction``
    ``|E ∩ S| / |E|``, TEMPy ``calculate_overlap_scores(...)[0]`` (the ``overlap`` of
    ``TEMPy.scores``).
``resolution_fsc05_A``
    Model-map FSC = 0.5 (first crossing, linear interpolation in frequency), whole box
    unless ``fsc_mask_radius_A`` is given (:func:`emforge.fsc.model_map_fsc`).

Contour levels
--------------
* map contour ``t_e`` (``map_contour``): a number (map units); ``"volume"`` (default),
  :func:`volume_contour`: the level at which the map encloses the model's molecular
  volume (1.21 Å^3 per Da of atomic mass, i.e. protein density 1.37 g/cm^3), a common
  way to choose a display level when none is deposited; or ``"tempy"``,
  :func:`default_map_contour`: TEMPy's ``calculate_map_threshold`` (mean + 2 x the
  root-mean-square deviation above the histogram peak), which ``CCC_map`` uses when no
  level is given; on maps with an empty (zero) background such as segmented maps it
  lands near the top of the density.
* model contour ``t_s``: :func:`default_model_contour`, TEMPy.scores' rule:
  ``mean(s) + t std(s)`` with ``t = round(0.0225 R, 1)`` (TEMPy applies ``t`` to the
  z-scored model map).

Model map (defaults follow TEMPy)
---------------------------------
``sigma_coeff=0.225``: every atom a Gaussian of width ``0.225 R`` weighted by its mass
(``simulate_map(kernel="emrefiner", sigma_A=0.225 R)``), TEMPy's
``gaussian_blur_real_space(sigma_coeff=0.225)`` as used by ``TEMPy.scores`` and SMOC.
``sigma_coeff=None`` uses the ``kernel``'s own widths instead. Gaussians are cut at
4 sigma, as TEMPy's voxcov blurring does.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from emforge.errors import InputError, require_positive
from emforge.fsc import model_map_fsc
from emforge.maps import DensityMap
from emforge.masks import model_mask
from emforge.models import AtomModel
from emforge.scores import check_overlap, default_mask_radius_A, pearson_cc
from emforge.simulate import simulate_map

log = logging.getLogger(__name__)

#: TEMPy's default Gaussian width per Å of resolution for global scores and SMOC.
TEMPY_SIGMA_COEFF = 0.225


def simulate_tempy_like(model: AtomModel, like: DensityMap, resolution_A: float,
                        sigma_coeff: float | None = TEMPY_SIGMA_COEFF, kernel: str = "emrefiner"
                        ) -> DensityMap:
    """Model map on the grid of ``like``: mass-weighted Gaussians of width ``sigma_coeff * R``.

    With ``sigma_coeff=None`` the ``kernel``'s own widths are used (:func:`simulate_map`).
    """
    resolution = require_positive(resolution_A, "resolution (Å)")
    sigma = None if sigma_coeff is None else require_positive(sigma_coeff, "sigma_coeff") * resolution
    return simulate_map(model, like, resolution, kernel=kernel, sigma_A=sigma, cutoff_sigma=4.0)


def default_map_contour(density_map: DensityMap | np.ndarray) -> float:
    """TEMPy's automatic map threshold: mean + 2 x the RMS deviation above the histogram peak.

    The peak is the centre of the most populated of 1000 histogram bins lying below
    mean + 1 std (else the mean); the deviation is the root mean square of
    ``value - peak`` over the voxels above the peak.
    """
    d = np.asarray(density_map.data if isinstance(density_map, DensityMap) else density_map,
                   dtype=np.float64)
    freq, bins = np.histogram(d, 1000)
    ave = float(d.mean())
    std = float(d.std())
    peak = None
    for i in np.flatnonzero(freq == freq.max()):
        val = 0.5 * (bins[i] + bins[i + 1])
        if val < ave + std:
            peak = float(val)
    if peak is None:
        peak = ave
    above = d[d > peak]
    sigma1 = float(np.sqrt(np.mean((above - peak) ** 2))) if above.size else 0.0
    return ave + 2.0 * sigma1


#: Molecular volume per dalton of protein (Å^3/Da): density 1.37 g/cm^3.
VOLUME_PER_DALTON_A3 = 1.21


def volume_contour(density_map: DensityMap, model: AtomModel,
                   volume_per_dalton_A3: float = VOLUME_PER_DALTON_A3) -> float:
    """Map level enclosing the model's molecular volume (sum of atomic masses x 1.21 Å^3/Da).

    The level lies halfway between the n-th and (n+1)-th largest voxel values, n the
    volume in voxels (at least 1), so the voxels above it make up that volume (fewer
    where values tie at the level).
    """
    volume = float(np.sum(model.mass)) * float(volume_per_dalton_A3)
    n = int(round(volume / float(np.prod(density_map.voxel_size))))
    d = np.sort(density_map.data.ravel().astype(np.float64))
    n = min(max(n, 1), d.size)
    if n >= d.size:
        return float(d[0]) - 1.0
    return 0.5 * float(d[-n] + d[-n - 1])


def default_model_contour(sim_map: DensityMap | np.ndarray, resolution_A: float) -> float:
    """TEMPy.scores' model-map contour: ``mean + round(0.0225 R, 1) * std`` (map units)."""
    d = np.asarray(sim_map.data if isinstance(sim_map, DensityMap) else sim_map, dtype=np.float64)
    t = round(TEMPY_SIGMA_COEFF * float(resolution_A) * 0.1, 1)
    return float(d.mean() + t * d.std())


def manders_overlap(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Manders' overlap coefficient ``sum(a b) / sqrt(sum a^2 sum b^2)`` (optionally over ``mask``).

    NaN when either sum of squares is 0 (TEMPy returns -1 there).
    """
    if a.shape != b.shape:
        raise ValueError(f"arrays differ in shape: {a.shape} vs {b.shape}")
    x = (a[mask] if mask is not None else a.ravel()).astype(np.float64)
    y = (b[mask] if mask is not None else b.ravel()).astype(np.float64)
    den = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / den if den > 0 else math.nan


def ccc_contour(density_map: DensityMap, sim_map: DensityMap, map_contour: float | None = None,
                model_contour: float | None = None, region: str = "union",
                resolution_A: float | None = None) -> float:
    """Correlation of two maps restricted by contour levels.

    Parameters
    ----------
    density_map, sim_map
        Experimental and model maps on one grid.
    map_contour, model_contour
        Levels ``t_e`` and ``t_s`` (map units); defaults :func:`default_map_contour` and
        :func:`default_model_contour` (which needs ``resolution_A``).
    region : {"union", "overlap", "envelope"}
        * ``"union"``: TEMPy ``CCC_map(mode=2, meanDist=True)``: each map centred on
          its mean over its own contour, zero outside it, correlated over the box.
        * ``"overlap"``: TEMPy ``CCC_map(mode=3, meanDist=True)``: Pearson over ``E ∩ S``.
        * ``"envelope"``: ChimeraX ``measure correlation ... envelope true`` "about
          mean": Pearson over the model map's envelope ``S`` (``map_contour`` unused).

    Returns
    -------
    float (NaN when a region is empty or flat).
    """
    if not density_map.same_grid(sim_map):
        raise ValueError("density_map and sim_map must share one grid")
    e = density_map.data.astype(np.float64)
    s = sim_map.data.astype(np.float64)
    if model_contour is None:
        if resolution_A is None:
            raise ValueError("model_contour or resolution_A is needed")
        model_contour = default_model_contour(s, resolution_A)
    in_s = s > model_contour
    if region == "envelope":
        return _safe_pearson(e, s, in_s)
    if map_contour is None:
        map_contour = default_map_contour(e)
    in_e = e > map_contour
    if region == "overlap":
        return _safe_pearson(e, s, in_e & in_s)
    if region != "union":
        raise ValueError(f"region must be 'union', 'overlap' or 'envelope', got {region!r}")
    return _ccc_union(e, s, in_e, in_s)


def _ccc_union(e: np.ndarray, s: np.ndarray, in_e: np.ndarray, in_s: np.ndarray) -> float:
    """TEMPy CCC_map mode 2 (meanDist): maps centred over their own contours, zero outside."""
    if not in_e.any() or not in_s.any():
        return math.nan
    ec = e[in_e] - e[in_e].mean()
    sc = s[in_s] - s[in_s].mean()
    both = in_e & in_s
    # products are non-zero only where both contours hold
    num = float(np.dot((e[both] - e[in_e].mean()), (s[both] - s[in_s].mean())))
    den = math.sqrt(float(ec @ ec) * float(sc @ sc))
    return num / den if den > 0 else math.nan


def _safe_pearson(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None) -> float:
    try:
        return pearson_cc(a, b, mask)
    except ValueError:
        return math.nan


def global_fit(model: AtomModel, density_map: DensityMap, resolution_A: float, *,
               sim_map: DensityMap | None = None, sigma_coeff: float | None = TEMPY_SIGMA_COEFF,
               kernel: str = "emrefiner", map_contour: float | str = "volume",
               model_contour: float | None = None, mask_radius_A: float | None = None,
               fsc_mask_radius_A: float | None = None, map_path=None, model_path=None) -> dict:
    """Global fit of ``model`` in ``density_map``: CCC in several regions, MOC, overlap, FSC.

    See the module docstring for each definition and its TEMPy/ChimeraX counterpart.

    Parameters
    ----------
    model, density_map
        Atoms (Å) and the experimental map.
    resolution_A
        Map resolution (Å).
    sim_map
        Precomputed model map on the grid of ``density_map``; default
        :func:`simulate_tempy_like` with ``sigma_coeff`` and ``kernel``.
    map_contour
        Map level (map units), ``"volume"`` (:func:`volume_contour`, default) or
        ``"tempy"`` (:func:`default_map_contour`).
    model_contour
        Model map level (map units); default :func:`default_model_contour`.
    mask_radius_A
        Radius around atoms for ``ccc_mask`` (default max(3 Å, R/2)).
    fsc_mask_radius_A
        Soft mask radius for the model-map FSC (default: whole box).

    Returns
    -------
    dict
        ``ccc``, ``ccc_mask``, ``ccc_envelope``, ``ccc_contour``, ``ccc_overlap``, ``moc``,
        ``overlap_fraction``, ``resolution_fsc05_A``, and the settings used:
        ``map_contour``, ``model_contour`` (map units), ``mask_radius_A``,
        ``n_mask_voxels``, ``n_envelope_voxels``, ``n_overlap_voxels``, ``resolution_A``,
        ``sigma_coeff``, ``kernel``. Scores are NaN where their region is empty or flat.
    """
    resolution = require_positive(resolution_A, "resolution (Å)")
    if np.std(density_map.data, dtype=np.float64) == 0:
        raise InputError("map has zero variance (every voxel has the same value)", map_path)
    if len(model) == 0:
        raise InputError("model holds no atoms", model_path)
    check_overlap(model, density_map, map_path, model_path)
    given_sim = sim_map is not None
    if sim_map is None:
        sim_map = simulate_tempy_like(model, density_map, resolution, sigma_coeff, kernel)
    elif not sim_map.same_grid(density_map):
        raise ValueError("sim_map must lie on the grid of density_map")
    if np.std(sim_map.data, dtype=np.float64) == 0:
        raise InputError("model density does not reach any grid point of the map", model_path)
    e = density_map.data.astype(np.float64)
    s = sim_map.data.astype(np.float64)
    if isinstance(map_contour, str):
        if map_contour == "volume":
            t_e = volume_contour(density_map, model)
        elif map_contour == "tempy":
            t_e = default_map_contour(e)
        else:
            raise InputError(f"map_contour must be a number, 'volume' or 'tempy', got {map_contour!r}")
    else:
        t_e = float(map_contour)
    t_s = default_model_contour(s, resolution) if model_contour is None else float(model_contour)
    radius = default_mask_radius_A(resolution) if mask_radius_A is None else float(mask_radius_A)
    mask = model_mask(model, density_map, radius)
    in_e = e > t_e
    in_s = s > t_s
    both = in_e & in_s
    fsc = model_map_fsc(model, density_map, resolution, mask_radius_A=fsc_mask_radius_A, sim_map=sim_map)
    n_e = int(in_e.sum())
    return {
        "ccc": _safe_pearson(e, s, None),
        "ccc_mask": _safe_pearson(e, s, mask),
        "ccc_envelope": _safe_pearson(e, s, in_s),
        "ccc_contour": _ccc_union(e, s, in_e, in_s),
        "ccc_overlap": _safe_pearson(e, s, both),
        "moc": manders_overlap(e, s, both) if both.any() else math.nan,
        "overlap_fraction": float(both.sum()) / n_e if n_e else math.nan,
        "resolution_fsc05_A": fsc["resolution_fsc05_A"],
        "map_contour": t_e,
        "model_contour": t_s,
        "mask_radius_A": radius,
        "n_mask_voxels": int(mask.sum()),
        "n_envelope_voxels": int(in_s.sum()),
        "n_overlap_voxels": int(both.sum()),
        "fsc_mask_radius_A": fsc["mask_radius_A"],
        "resolution_A": resolution,
        "sigma_coeff": None if given_sim else sigma_coeff,
        "kernel": None if given_sim else kernel,
    }
