"""Rule cnn_predict: C-alpha probability map and peaks of a dataset's map (paper 003)."""

from pathlib import Path

from emforge.atomic import atomic_path
from emforge.cnn.predict import predict_calpha, reference_calphas, score_against_reference
from emforge.cnn.sequence import sequence_length
from emforge.cnn.train import load_weights
from emforge.errors import InputError
from emforge.maps import read_map, write_map
from emforge.models import read_model, write_model
from emforge.plots import calpha_slices_plot
from emforge.workflow_support import rule_log, write_json, write_provenance

smk = snakemake  # noqa: F821 - injected by Snakemake's script directive
settings = dict(smk.params.cnn)
resolution_A = float(smk.params.resolution_A)

with rule_log(smk.log[0], "cnn_predict", smk.threads) as log:
    n_residues = sequence_length(smk.input.sequence) if "sequence" in smk.input.keys() else None
    net = load_weights(settings["weights"])
    density = read_map(smk.input.map)
    if not 1.0 <= resolution_A <= 15.0:
        log.warning("resolution %.3g Å is outside the 1-15 Å the network was trained for", resolution_A)
    try:
        result = predict_calpha(density, net, n_residues=n_residues, threshold=settings["threshold"],
                                exclusion_A=settings["exclusion_A"], tile_vox=settings["tile_vox"],
                                device=settings["device"])
    except InputError as exc:
        raise InputError(str(exc), smk.input.map) from None
    summary = {"dataset": smk.wildcards.dataset, "resolution_A": resolution_A,
               "weights_sha256": smk.params.weights_sha256, **result.summary}
    reference_ca = None
    if "reference" in smk.input.keys():
        reference = read_model(smk.input.reference)
        reference_ca = reference_calphas(reference)
        summary["reference"] = score_against_reference(result.peaks.xyz_A, reference)
        log.info("CRscore %.3f against the reference (%d C-alphas); %d within %.1f Å", summary["reference"]["crscore"],
                 summary["reference"]["n_reference"], summary["reference"]["n_matched"],
                 summary["reference"]["match_distance_A"])
    write_model(smk.output.model, result.model)
    write_map(smk.output.probability, result.probability)
    with atomic_path(smk.output.slices) as tmp:
        Path(tmp).write_bytes(calpha_slices_plot(density, result.probability, result.peaks.xyz_A, reference_ca))
    write_json(smk.output.summary, summary)
    write_provenance(smk.output.provenance, "cnn_predict", parameters={**settings, "resolution_A": resolution_A},
                     inputs={"map": smk.input.map, "weights": settings["weights"],
                             **{k: smk.input[k] for k in ("sequence", "reference") if k in smk.input.keys()}},
                     device=summary["device"])
