"""``emforge <verb> ...``: every step by hand, outside Snakemake.

Bad input ends with one line ``emforge: error: <file>: <problem>`` on stderr and
exit code 2 (the traceback only with ``--debug``); nothing partial is written.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence

import emforge
from emforge.cnn import TILE_VOX
from emforge.errors import InputError, require_positive

log = logging.getLogger("emforge")

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1


# -- small helpers ------------------------------------------------------------------------------

class _Steps:
    """A step counter shown as a progress bar on stderr once work exceeds two seconds."""

    def __init__(self, total: int, desc: str):
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, unit="step", delay=2.0, leave=False,
                         disable=None, file=sys.stderr)

    def step(self, what: str) -> None:
        log.debug(what)
        self._bar.set_postfix_str(what, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


@contextlib.contextmanager
def _steps(total: int, desc: str) -> Iterator[_Steps]:
    s = _Steps(total, desc)
    try:
        yield s
    finally:
        s.close()


def _write_json(path: str | None, record: dict) -> None:
    from emforge import jsonio

    text = jsonio.dumps(record)
    if path in (None, "-"):
        sys.stdout.write(text)
    else:
        from emforge.atomic import write_text_atomic

        write_text_atomic(path, text)


def _write_tsv(path: str | None, table, float_format: str = "%.6g") -> None:
    """Write ``table`` (a DataFrame) as TSV atomically when ``path`` is given."""
    if path:
        from emforge.atomic import atomic_path

        with atomic_path(path) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format=float_format)


def _print_table(record: dict, keys: Sequence[str]) -> None:
    for key in keys:
        value = record.get(key)
        if isinstance(value, float):
            value = f"{value:.4f}"
        print(f"{key:<20} {value}")


def _resolution(value: str) -> float:
    try:
        return require_positive(value, "resolution (Å)")
    except InputError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None


def _positive(value: str) -> float:
    try:
        return require_positive(value, "value")
    except InputError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None


def _count(value: str) -> int:
    """An integer >= 1 (argparse type)."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


# -- verbs --------------------------------------------------------------------------------------

def cmd_simulate(args: argparse.Namespace) -> int:
    from emforge.maps import read_map, write_map
    from emforge.models import read_model
    from emforge.simulate import simulate_map

    with _steps(3, "simulate") as steps:
        model = read_model(args.model)
        steps.step("model read")
        like = read_map(args.like) if args.like else None
        if like is not None:
            from emforge.scores import check_overlap

            check_overlap(model, like, args.like, args.model)
        m = simulate_map(model, like, args.resolution, kernel=args.kernel,
                         voxel_size_A=args.voxel, margin_A=args.margin)
        steps.step("map simulated")
        write_map(args.output, m)
        steps.step("map written")
    print(f"wrote {args.output}: grid {m.shape[::-1]} (x, y, z), voxel {m.voxel_size.round(3).tolist()} Å, "
          f"kernel {args.kernel}, resolution {args.resolution:g} Å")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from emforge.atomic import atomic_path
    from emforge.maps import read_map
    from emforge.models import read_model
    from emforge.scores import score_model_map

    with _steps(3, "score") as steps:
        model = read_model(args.model)
        density_map = read_map(args.map)
        steps.step("inputs read")
        scores, per_residue = score_model_map(model, density_map, args.resolution, kernel=args.kernel,
                                              mask_radius_A=args.mask_radius, map_path=args.map,
                                              model_path=args.model)
        steps.step("scored")
        record = {"model": args.model, "map": args.map, **scores}
        if args.json:
            _write_json(args.json, record)
        if args.per_residue:
            with atomic_path(args.per_residue) as tmp:
                per_residue.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
        steps.step("written")
    if args.json != "-":
        _print_table(record, ["cc", "cc_mask", "local_cc_mean", "mask_radius_A", "n_atoms", "n_residues"])
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from emforge.compare import compare_models
    from emforge.models import read_model

    model = read_model(args.model)
    reference = read_model(args.reference)
    record = {"model": args.model, "reference": args.reference,
              **compare_models(model, reference, correspondence=args.correspondence)}
    if args.json:
        _write_json(args.json, record)
    if args.json != "-":
        _print_table(record, ["tm_score", "rmsd_A", "gdt_ts", "gdt_ha", "n_aligned", "n_reference",
                              "correspondence"])
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from emforge.maps import write_map
    from emforge.prepare import prepare_map

    m, stats = prepare_map(args.map, args.resolution, voxel_size_A=args.voxel)
    write_map(args.output, m)
    if args.json:
        _write_json(args.json, stats)
    print(f"wrote {args.output}: grid {m.shape[::-1]} (x, y, z), voxel {m.voxel_size.round(3).tolist()} Å, "
          f"origin {m.origin.round(2).tolist()} Å")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from emforge.validate import ValidationSettings, validate_model, write_validation

    if (args.map is None) != (args.resolution is None):
        raise InputError("--map and --resolution go together")
    settings = ValidationSettings.from_mapping({"kernel": args.kernel, "mask_radius_A": args.mask_radius,
                                                "seed": args.seed, "smoc_convention": args.smoc_convention})
    n_steps = (4 if args.map else 0) + 1 + (1 if args.reference else 0) + 1
    with _steps(n_steps, "validate") as steps:
        result = validate_model(args.model, args.map, args.resolution, reference_path=args.reference,
                                settings=settings, progress=steps.step)
        written = write_validation(result, args.out_dir, plots=not args.no_plots)
        steps.step("written")
    summary = result.summary
    if "map_fit" in summary:
        _print_table(summary["map_fit"], ["cc", "cc_mask", "ccc", "moc", "resolution_fsc05_A", "smoc_mean",
                                          "qscore_mean", "loqfit_A_mean"])
    _print_table(summary["geometry"], ["molprobity_score", "clashscore", "rama_favoured_pct", "rama_outlier_pct",
                                       "rotamer_outlier_pct", "cbeta_outliers", "bond_rmsz", "angle_rmsz"])
    if "reference" in summary:
        _print_table(summary["reference"], ["tm_score", "rmsd_A", "gdt_ts", "lddt_ca", "n_aligned"])
    print(f"wrote {len(written)} files to {args.out_dir}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from emforge.fit import fit_model
    from emforge.maps import read_map
    from emforge.models import read_model, write_model

    model = read_model(args.model)
    density_map = read_map(args.map)
    if not float(density_map.data.std()) > 0:
        raise InputError("map has zero variance (every voxel has the same value)", args.map)
    with _steps(1, "fit") as steps:
        result = fit_model(model, density_map, args.resolution, method=args.method,
                           angular_step_deg=args.angular_step, n_poses=args.n_poses, seed=args.seed)
        steps.step("fitted")
    write_model(args.output, result.model)
    _write_tsv(args.poses, result.poses, "%.6g")
    best = result.poses.iloc[0]
    print(f"wrote {args.output}: CC {result.cc:.4f}, z-score {float(best['z_score']):.1f}, "
          f"rotation {result.transform.rotation_deg:.1f} deg, method {args.method}")
    return 0


def _with_path(exc: InputError, path) -> InputError:
    """``exc`` naming ``path`` when it names no file yet."""
    return exc if exc.path else InputError(exc.problem, path)


def cmd_fragments(args: argparse.Namespace) -> int:
    from emforge.atomic import atomic_path
    from emforge.maps import read_map
    from emforge.models import read_model
    from emforge.refine.emrefiner.pipeline import find_fragments

    model = read_model(args.model)
    density_map = read_map(args.map)
    try:
        found = find_fragments(model, density_map, args.resolution)
    except InputError as exc:
        raise _with_path(exc, args.model) from None
    table = found.table()
    with atomic_path(args.output) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    print(f"wrote {args.output}: {len(table)} fragments over {len(found.ss)} residues "
          f"({(found.ss == 'H').sum()} helix, {(found.ss == 'E').sum()} strand)")
    return 0


def cmd_bfactors(args: argparse.Namespace) -> int:
    import numpy as np

    from emforge.maps import read_map
    from emforge.models import read_model, write_model
    from emforge.refine.gmm import refine_bfactors

    model = read_model(args.model)
    density_map = read_map(args.map)
    try:
        result = refine_bfactors(model, density_map, args.resolution, n_iterations=args.iterations,
                                 sigma_max_A=args.sigma_max)
    except InputError as exc:
        raise _with_path(exc, args.model) from None
    write_model(args.output, result.model)
    h = result.history
    cc = f"mixture CC {h['cc'].iloc[0]:.4f} -> {h['cc'].iloc[-1]:.4f}, " if len(h) else ""
    print(f"wrote {args.output}: {cc}B {np.min(result.model.b_factor):.1f}-{np.max(result.model.b_factor):.1f} Å^2 "
          f"(mean {np.mean(result.model.b_factor):.1f}; B = 8 pi^2 sigma^2 of the fitted Gaussians)")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from emforge.maps import read_map, write_map
    from emforge.models import read_model, write_models
    from emforge.refine.ensemble import generate_ensemble

    model = read_model(args.model)
    density_map = read_map(args.map)

    def progress(n: int, total: int, ccc: float) -> None:
        if not args.quiet:
            print(f"  {n} members: ensemble-map CCC {ccc:.4f}", file=sys.stderr)

    try:
        result = generate_ensemble(model, density_map, args.resolution, max_members=args.max_members,
                                   k_ens=args.k_ens, k_dens=args.k_dens, md_steps=args.md_steps, seed=args.seed,
                                   progress=progress)
    except InputError as exc:
        raise _with_path(exc, args.model) from None
    write_models(args.output, result.members)
    write_map(args.map_out, result.map)
    _write_tsv(args.rmsf, result.rmsf, "%.4f")
    _write_tsv(args.curve, result.curve, "%.6f")
    if args.summary:
        _write_json(args.summary, result.summary)
    s = result.summary
    print(f"wrote {args.output} ({s['n_members']} members) and {args.map_out}: ensemble-map CCC "
          f"{s['ensemble_ccc']:.4f} (single model {s['single_model_ccc']:.4f}), mean RMSF {s['mean_rmsf_A']:.2f} Å")
    return 0


def cmd_composite(args: argparse.Namespace) -> int:
    from emforge.composite import composite_map
    from emforge.maps import read_map, write_map
    from emforge.models import read_model

    maps = [read_map(path) for path in args.maps]
    if args.model and args.models:
        raise InputError("give either --model (one consensus model) or --models (one per map), not both")
    if not (args.model or args.models):
        raise InputError("give --model (one consensus model) or --models (one per map)")
    models = read_model(args.model) if args.model else [read_model(path) for path in args.models]
    result = composite_map(maps, models, resolution_A=args.resolution, n_iterations=args.iterations)
    write_map(args.output, result.map)
    _write_tsv(args.table, result.components.assign(map=[str(p) for p in args.maps]))
    kept = ", ".join(f"{p}: {n}" for p, n in zip(args.maps, result.components["n_kept"]))
    print(f"wrote {args.output}: composite of {len(maps)} maps on grid {list(result.map.shape_xyz)}; "
          f"atoms taken from each: {kept}")
    return 0


def _refine_gmm(args: argparse.Namespace, model, density_map) -> int:
    from emforge.models import write_model
    from emforge.refine.reff import refine_gmm

    def progress(iteration: int, total: int, ccc: float) -> None:
        if not args.quiet:
            print(f"  iteration {iteration}: CCC {ccc:.4f}", file=sys.stderr)

    try:
        result = refine_gmm(model, density_map, args.resolution, protocol=args.protocol, k_gmm_kj_per_mol=args.k_gmm,
                            max_iterations=args.max_iterations, seed=args.seed, progress=progress)
    except InputError as exc:
        raise _with_path(exc, args.model) from None
    write_model(args.output, result.model)
    _write_tsv(args.trajectory, result.trajectory, "%.6g")
    if args.summary:
        _write_json(args.summary, result.summary)
    s = result.summary
    print(f"wrote {args.output}: CCC {s['ccc_start']:.4f} -> {s['ccc_final']:.4f} (best of {s['n_iterations']} "
          f"iterations), protocol {s['protocol']}, {s['timings_s']['total']:.0f} s")
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    import pandas as pd

    from emforge.maps import read_map
    from emforge.models import read_model, write_model
    from emforge.refine.emrefiner.pipeline import fragments_from_table, refine_emrefiner

    model = read_model(args.model)
    density_map = read_map(args.map)
    if args.method == "gmm":
        if args.fragments or args.no_relax or args.preset != "fast":
            raise InputError("--fragments, --no-relax and --preset apply to --method emrefiner only "
                             "(gmm: --protocol, --k-gmm, --max-iterations)")
        return _refine_gmm(args, model, density_map)
    fragments = None
    if args.fragments:
        try:
            table = pd.read_csv(args.fragments, sep="\t")
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the fragment table ({exc})", args.fragments) from None
        n_res = model.without_hydrogens().protein().n_residues
        fragments = fragments_from_table(table, n_res, args.fragments)
    bar = {}

    def progress(stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage not in bar:
            for b in bar.values():
                b.close()
            bar[stage] = tqdm(total=total, desc=f"EM-Refiner {stage}", unit="T", delay=2.0, leave=False,
                              disable=None, file=sys.stderr)
        bar[stage].update(done - bar[stage].n)

    try:
        result = refine_emrefiner(model, density_map, args.resolution, preset=args.preset, seed=args.seed,
                                  fragments=fragments, relax=not args.no_relax, n_jobs=args.threads,
                                  progress=progress)
    except InputError as exc:
        raise _with_path(exc, args.model) from None
    finally:
        for b in bar.values():
            b.close()
    write_model(args.output, result.model)
    _write_tsv(args.trajectory, result.trajectory, "%.6g")
    if args.summary:
        _write_json(args.summary, result.summary)
    s = result.summary
    print(f"wrote {args.output}: CC {s['cc_start']:.4f} -> {s['cc_final']:.4f} (Step 2 {s['cc_step2']:.4f}, "
          f"Step 3 {s['cc_step3']:.4f}), preset {args.preset}, {s['timings_s']['total_s']:.0f} s")
    return 0


def cmd_cnn_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from emforge.cnn.infer import default_weights_path
    from emforge.cnn.predict import predict_calpha
    from emforge.cnn.sequence import sequence_length
    from emforge.cnn.train import load_weights
    from emforge.fileformats import check_file_type
    from emforge.maps import MAP_SUFFIXES, read_map, write_map
    from emforge.models import MODEL_SUFFIXES, write_model

    # every input and output name is checked before the work starts
    check_file_type(args.output, MODEL_SUFFIXES, "model")
    check_file_type(args.prob_map, MAP_SUFFIXES, "map")
    weights = args.weights or default_weights_path()
    if args.weights is None and not weights.is_file():
        raise InputError("no trained C-alpha network at the default path; train one with 'emforge cnn train' "
                         "and pass its calpha_net.pt with --weights", weights)
    n_residues = sequence_length(args.sequence) if args.sequence else None
    net = load_weights(weights)
    density_map = read_map(args.map)
    if not 1.0 <= args.resolution <= 15.0:
        log.warning("resolution %.3g Å is outside the 1-15 Å the network was trained for", args.resolution)
    with _steps(1, "cnn predict") as steps:
        try:
            result = predict_calpha(density_map, net, n_residues=n_residues, threshold=args.threshold,
                                    exclusion_A=args.exclusion, tile_vox=args.tile, device=args.device,
                                    batch_size=args.batch_size)
        except InputError as exc:
            raise _with_path(exc, args.map) from None
        steps.step("probability predicted, peaks picked")
    write_map(args.prob_map, result.probability)
    try:
        write_model(args.output, result.model)
    except BaseException:
        Path(args.prob_map).unlink(missing_ok=True)  # no partial output: both files or neither
        raise
    s = result.summary
    wanted = f" for {n_residues} residues" if n_residues else ""
    print(f"wrote {args.output}: {s['n_peaks']} C-alpha peaks{wanted} (probability {s['probability_min']:.2f}-"
          f"{s['probability_max']:.2f}), and {args.prob_map}")
    return 0


def cmd_cnn_train(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from emforge.cnn.release import train_release
    from emforge.cnn.train import checkpoint_paths

    out = Path(args.out_dir)
    checkpoints = out / "checkpoints"
    if checkpoint_paths(checkpoints) and not args.resume:
        raise InputError("folder holds the checkpoints of an earlier run; pass --resume to continue it "
                         "or choose a new --out-dir", out)

    def progress(epoch: int, row: dict) -> None:
        if not args.quiet:
            scores = " ".join(f"{k} {v:.3f}" for k, v in row.items() if k.startswith("crscore"))
            print(f"  epoch {epoch}: train loss {row['train_loss']:.4f}, validation loss {row['val_loss']:.4f}, "
                  f"{scores} ({row['wall_s']:.0f} s)", file=sys.stderr)

    command = "emforge " + " ".join(shlex.quote(a) for a in args.argv)
    paths = train_release(out, checkpoint_dir=checkpoints, epochs=args.epochs, command=command,
                          manifest=args.manifest, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                          lr=args.lr, crop_vox=args.crop, seed=args.seed,
                          resolution_range_A=(args.min_resolution, args.max_resolution),
                          network={"in_channels": args.in_channels, "channels": args.channels,
                                   "n_blocks": args.blocks},
                          val_maps_per_band=args.val_maps_per_band, device=args.device,
                          max_train_chains=args.max_train_chains, max_val_chains=args.max_val_chains,
                          progress=progress)
    print(f"wrote {paths['weights']} (best validation CRscore epoch), {paths['card']}, {paths['log_table']}")
    return 0


# -- parser -------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from emforge.simulate import KERNELS

    parser = argparse.ArgumentParser(
        prog="emforge", description="Build and refine atomic protein models in cryo-EM density maps.")
    parser.add_argument("--version", action="version", version=f"emforge {emforge.__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    common.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    p = sub.add_parser("simulate", parents=[common], help="simulate a density map from a model",
                       description="Simulate a density map from an atomic model (MRC output).")
    p.add_argument("model", help="model file (.pdb, .cif, optionally .gz)")
    p.add_argument("--resolution", "-r", type=_resolution, required=True, help="resolution in Å")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--voxel", type=_positive, help="voxel size in Å (default: resolution / 3)")
    grid.add_argument("--like", metavar="MAP", help="simulate on the grid of this map")
    p.add_argument("--margin", type=_positive, help="padding around the model in Å (with --voxel)")
    p.add_argument("--kernel", choices=KERNELS, default="emrefiner",
                   help="density kernel: emrefiner (paper 000 Eq. 4), crtasser (paper 003 Eq. 2), "
                        "gmm (paper 001, per-atom width) [default: emrefiner]")
    p.add_argument("-o", "--output", required=True, help="output map (.mrc, .map, .ccp4, optionally .gz)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("score", parents=[common], help="map-model correlation scores",
                       description="Correlation of a model with a map: whole grid (cc), within a mask "
                                   "around the model (cc_mask) and per residue (local CC, 8 Å).")
    p.add_argument("model")
    p.add_argument("map")
    p.add_argument("--resolution", "-r", type=_resolution, required=True, help="map resolution in Å")
    p.add_argument("--kernel", choices=KERNELS, default="emrefiner")
    p.add_argument("--mask-radius", type=_positive, help="mask radius in Å (default: max(3, R/2))")
    p.add_argument("--json", metavar="OUT", help="write the scores as JSON ('-' for stdout)")
    p.add_argument("--per-residue", metavar="TSV", help="write per-residue local CC as TSV")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("compare", parents=[common], help="compare a model with a reference structure",
                       description="TM-score, C-alpha RMSD after superposition and GDT-TS of a model "
                                   "against a reference (normalised by the reference length).")
    p.add_argument("model")
    p.add_argument("reference")
    p.add_argument("--correspondence", choices=("auto", "numbering", "alignment"), default="auto",
                   help="pair residues by chain + number, by sequence alignment, or decide [auto]")
    p.add_argument("--json", metavar="OUT", help="write the result as JSON ('-' for stdout)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("prepare", parents=[common], help="check a map and write it in the canonical frame",
                       description="Read a map in any axis order, check it, optionally resample, and "
                                   "write it with columns = X plus a statistics JSON.")
    p.add_argument("map")
    p.add_argument("--resolution", "-r", type=_resolution, required=True, help="map resolution in Å")
    p.add_argument("--voxel", type=_positive, help="resample to this voxel size in Å")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--json", metavar="OUT", help="write map statistics as JSON")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("fit", parents=[common], help="place a model into a map (rigid body)",
                       description="Rigid-body placement of a model in a map: FFT search over rotations "
                                   "with local correlation, replica-exchange Monte Carlo (EM-Refiner), "
                                   "or both (auto). Writes the fitted model and, with --poses, the ranked "
                                   "pose table (CC and its z-score over the search).")
    p.add_argument("model")
    p.add_argument("map")
    p.add_argument("--resolution", "-r", type=_resolution, required=True, help="map resolution in Å")
    p.add_argument("-o", "--output", required=True, help="fitted model (.cif or .pdb)")
    p.add_argument("--poses", metavar="TSV", help="write the ranked pose table")
    p.add_argument("--method", choices=("auto", "fft", "remc"), default="auto")
    p.add_argument("--angular-step", type=_positive, default=10.0, help="rotation step in degrees [10]")
    p.add_argument("--n-poses", type=int, default=10, help="poses to refine and report [10]")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("fragments", parents=[common], help="secondary-structure fragments for refinement",
                       description="EM-Refiner Step-2 fragments: helices and strands (DSSP rules) extended "
                                   "over neighbouring residues whose local CC in the map is below 0.05, with "
                                   "their hinge loops. Writes a TSV table.")
    p.add_argument("model")
    p.add_argument("map")
    p.add_argument("--resolution", "-r", type=_resolution, required=True, help="map resolution in Å")
    p.add_argument("-o", "--output", required=True, help="fragment table (.tsv)")
    p.set_defaults(func=cmd_fragments)

    p = sub.add_parser("bfactors", parents=[common], help="per-atom B-factors from the map (positions fixed)",
                       description="TEMPy-ReFF (paper 001) Gaussian-mixture width refinement: per-atom widths "
                                   "from responsibility-weighted map moments, averaged per residue, written "
                                   "as B = 8 pi^2 sigma^2 (Å^2).")
    p.add_argument("model")
    p.add_argument("map")
    p.add_argument("--resolution", "-r", type=_resolution, required=True, help="map resolution in Å")
    p.add_argument("-o", "--output", required=True, help="model with refined B-factors (.cif or .pdb)")
    p.add_argument("--iterations", type=int, default=25, help="E+M iterations [25, paper 001]")
    p.add_argument("--sigma-max", type=_positive, default=2.5, help="width cap in Å [2.5]")
    p.set_defaults(func=cmd_bfactors)

    p = sub.add_parser("ensemble", parents=[common], help="ensemble of models from the map's B-factors",
                       description="TEMPy-ReFF (paper 001) ensembles: members sampled from the refined "
                                   "per-atom widths, relaxed with ensemble and density forces in OpenMM "
                                   "(AMBER14/GBn2); members are added while the ensemble-map CCC rises.")
    p.add_argument("model")
    p.add_argument("map")
    p.add_argument("--resolution", "-r", type=_resolution, required=True, help="map resolution in Å")
    p.add_argument("-o", "--output", required=True, help="multi-model ensemble (.cif or .pdb)")
    p.add_argument("--map-out", required=True, help="ensemble map (.mrc): mean of the members' maps")
    p.add_argument("--rmsf", metavar="TSV", help="per-residue C-alpha RMSF table")
    p.add_argument("--curve", metavar="TSV", help="ensemble-map CCC per number of members")
    p.add_argument("--summary", metavar="JSON", help="write the run summary")
    p.add_argument("--max-members", type=int, default=20, help="largest ensemble [20]")
    p.add_argument("--k-ens", type=float, default=1000.0, help="Eq. 14 constant [1000, paper 001]")
    p.add_argument("--k-dens", type=float, default=50.0, help="density force, kJ/mol per map SD [50]")
    p.add_argument("--md-steps", type=int, default=2000, help="0.1 fs Langevin steps per member [2000; 0: minimise]")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("composite", parents=[common], help="combine aligned component maps into one",
                       description="TEMPy-ReFF (paper 001, Eq. 11-13) composite map: each component map is "
                                   "weighted by the Gaussian-mixture responsibility of the atoms it resolves "
                                   "best (lowest B), so the sum has no seams. Maps must share one frame.")
    p.add_argument("--maps", nargs="+", required=True, help="aligned component maps (2 or more)")
    p.add_argument("--model", help="consensus model fitted in all maps")
    p.add_argument("--models", nargs="+", help="one fitted model per map, in the order of --maps")
    p.add_argument("--resolution", "-r", type=_resolution, default=None,
                   help="resolution in Å for the starting widths [widths start at 1 Å]")
    p.add_argument("--iterations", type=int, default=25, help="width iterations per component [25]")
    p.add_argument("--table", metavar="TSV", help="write the per-component table")
    p.add_argument("-o", "--output", required=True, help="composite map (.mrc)")
    p.set_defaults(func=cmd_composite)

    p = sub.add_parser("refine", parents=[common], help="flexible refinement of a placed model in a map",
                       description="emrefiner (paper 000): fragment SAMC (Step 2) and atomic SAMC with "
                                   "moves M1-M6 (Step 3) on the knowledge-based energy with the map's CC, "
                                   "then restrained AMBER14/implicit-solvent minimisation. gmm (TEMPy-ReFF, "
                                   "paper 001): Gaussian-mixture B-factors, then mixture targets pulling the "
                                   "atoms in AMBER14/GBn2 (OpenMM). The model must already sit in the map "
                                   "(see 'emforge fit').")
    p.add_argument("model")
    p.add_argument("map")
    p.add_argument("--resolution", "-r", type=_resolution, required=True, help="map resolution in Å")
    p.add_argument("--method", choices=("emrefiner", "gmm"), default="emrefiner")
    p.add_argument("-o", "--output", required=True, help="refined model (.cif or .pdb)")
    p.add_argument("--preset", choices=("fast", "paper"), default="fast",
                   help="fast: short annealing, density-weighted energy; paper: paper 000's protocol [fast]")
    p.add_argument("--fragments", metavar="TSV", help="fragment table from 'emforge fragments'")
    p.add_argument("--trajectory", metavar="TSV", help="write energy/CC per annealing temperature")
    p.add_argument("--summary", metavar="JSON", help="write the run summary")
    p.add_argument("--no-relax", action="store_true", help="skip the final OpenMM minimisation")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for the independent Step-3 runs [one per run, up to the CPUs]")
    p.add_argument("--protocol", choices=("fast", "paper"), default="fast",
                   help="gmm: fast = L-BFGS per iteration; paper = 2000 Langevin steps of 0.1 fs [fast]")
    p.add_argument("--k-gmm", type=_positive, default=1e4, help="gmm: Eq. 10 well depth, kJ/mol per atom [1e4]")
    p.add_argument("--max-iterations", type=int, default=None, help="gmm: iteration cap [protocol's]")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_refine)

    p = sub.add_parser("validate", parents=[common], help="all validation metrics for a model",
                       description="Map fit (CC, CCC, MOC, FSC, SMOC/SMOCf, LoQFit, Q-score, local PCC) with "
                                   "--map, MolProbity-style geometry always, and TM-score/RMSD/GDT/lDDT/"
                                   "CRscore with --reference. Writes scores.json, per_residue.csv, fsc.csv "
                                   "and plots/*.png into --out-dir.")
    p.add_argument("model")
    p.add_argument("--map", help="experimental map (needs --resolution)")
    p.add_argument("--resolution", "-r", type=_resolution, help="map resolution in Å")
    p.add_argument("--reference", help="reference structure for TM-score/RMSD/GDT-TS/lDDT")
    p.add_argument("--kernel", choices=KERNELS, default="emrefiner")
    p.add_argument("--mask-radius", type=_positive)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoc-convention", choices=("emforge", "tempy"), default="emforge",
                   help="SMOC/SMOCf frame and model map; 'tempy' reproduces TEMPy 2.1.2's numbers [emforge]")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--out-dir", required=True, help="folder for scores.json, per_residue.csv, plots/")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("cnn", help="C-alpha prediction with a 3D CNN (CR-I-TASSER)",
                       description="C-alpha positions from a density map with CR-I-TASSER's 3D residual CNN "
                                   "(paper 003): 'predict' with trained weights, 'train' new weights on maps "
                                   "simulated from the shared chain set.")
    cnn = p.add_subparsers(dest="cnn_verb", metavar="ACTION", required=True)
    q = cnn.add_parser("predict", parents=[common], help="C-alpha model and probability map from a density map",
                       description="Predict the C-alpha probability of every voxel (tiled, 1.5 Å working grid, "
                                   "written on the input map's grid) and pick C-alpha peaks greedily with a "
                                   "3.3 Å exclusion: with --sequence at least L peaks and up to 1.2 L while the "
                                   "probability exceeds --threshold; without it, every peak above --threshold. "
                                   "Writes a C-alpha-only model (probability in the B-factor column).")
    q.add_argument("map")
    q.add_argument("--resolution", "-r", type=_resolution, required=True, help="map resolution in Å")
    q.add_argument("--sequence", metavar="FASTA", help="sequence(s) in the map: L = total residues")
    q.add_argument("--weights", metavar="PT", help="network weights (.pt with its .json sidecar) "
                                                   "[resources/cnn/calpha_net.pt]")
    q.add_argument("-o", "--output", required=True, help="C-alpha model (.cif or .pdb)")
    q.add_argument("--prob-map", required=True, help="C-alpha probability map (.mrc) on the input grid")
    q.add_argument("--threshold", type=float, default=0.9, help="peak probability threshold [0.9, paper 003]")
    q.add_argument("--exclusion", type=_positive, default=3.3, help="minimum peak distance in Å [3.3, paper 003]")
    q.add_argument("--tile", type=_count, default=TILE_VOX,
                   help=f"longest tile edge in 1.5 Å voxels, halos included (bounds memory) [{TILE_VOX}]")
    q.add_argument("--batch-size", type=_count, default=1, help="tiles per forward pass [1]")
    q.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda [auto]")
    q.set_defaults(func=cmd_cnn_predict)

    q = cnn.add_parser("train", parents=[common], help="train C-alpha network weights",
                       description="Train the network on maps simulated (paper 003 Eq. 2, B-factor blur, "
                                   "correlated noise) from the training split of the shared chains, validating "
                                   "on the clust40-disjoint validation split. Writes OUT/checkpoints/ (every "
                                   "epoch), OUT/train_log.tsv and OUT/calpha_net.pt (+ .json) from the epoch "
                                   "with the best validation CRscore.")
    q.add_argument("--out-dir", required=True, help="folder for checkpoints, log and weights")
    q.add_argument("--epochs", type=_count, required=True, help="total epochs")
    q.add_argument("--steps-per-epoch", type=_count, default=100, help="optimiser steps per epoch [100]")
    q.add_argument("--batch-size", type=_count, default=1, help="crops per step [1, paper 003]")
    q.add_argument("--lr", type=_positive, default=5e-4, help="Adam learning rate [5e-4, paper 003]")
    q.add_argument("--crop", type=_count, default=48, help="crop edge in 1.5 Å voxels [48]")
    q.add_argument("--min-resolution", type=_resolution, default=1.0, help="lowest training resolution Å [1]")
    q.add_argument("--max-resolution", type=_resolution, default=15.0, help="highest training resolution Å [15]")
    q.add_argument("--in-channels", type=int, choices=(1, 2), default=2,
                   help="1: density; 2: density and local standard deviation [2]")
    q.add_argument("--channels", type=_count, default=32, help="feature channels [32, paper 003]")
    q.add_argument("--blocks", type=int, default=10, help="residual blocks [10, paper 003]")
    q.add_argument("--manifest", help="chain manifest TSV [shared data chains/MANIFEST.tsv]")
    q.add_argument("--max-train-chains", type=_count, help="use a seeded random subset of the training chains")
    q.add_argument("--max-val-chains", type=_count, help="use a seeded random subset of the validation chains")
    q.add_argument("--val-maps-per-band", type=_count, default=2, help="validation maps per resolution band [2]")
    q.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda [auto]")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out-dir")
    q.set_defaults(func=cmd_cnn_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the exact command, for records such as model cards
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        if args.debug:
            raise
        print(f"emforge: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("emforge: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an emforge bug, not bad input: say so, keep it short
        if args.debug:
            raise
        print(f"emforge: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
              "traceback and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
