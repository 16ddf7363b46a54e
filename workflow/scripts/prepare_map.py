"""Rule prepare_map: canonical frame, sanity checks, statistics and contour estimates of a map."""

from emforge.maps import write_map
from emforge.models import read_model
from emforge.prepare import prepare_map
from emforge.workflow_support import rule_log, write_json, write_provenance

smk = snakemake  # noqa: F821 - injected by Snakemake's script directive
settings = dict(smk.params.prepare)
resolution_A = float(smk.params.resolution_A)
mass_model = smk.input.mass_model[0] if len(smk.input.mass_model) else None

with rule_log(smk.log[0], "prepare_map", smk.threads) as log:
    expected_mass_Da = float(read_model(mass_model).mass.sum()) if mass_model else None
    if expected_mass_Da:
        log.info("expected mass %.0f Da (atoms of %s) for the volume-based contour", expected_mass_Da, mass_model)
    density_map, stats = prepare_map(smk.input.map, resolution_A, voxel_size_A=settings["voxel_size_A"],
                                     expected_mass_Da=expected_mass_Da)
    log.info("grid %s (z, y, x), voxel %s Å, mean %.4g, std %.4g", density_map.shape,
             density_map.voxel_size.tolist(), stats["mean"], stats["std"])
    write_map(smk.output.map, density_map)
    write_json(smk.output.stats, stats)
    write_provenance(smk.output.provenance, "prepare_map",
                     parameters={**settings, "resolution_A": resolution_A, "expected_mass_Da": expected_mass_Da},
                     inputs={"map": smk.input.map, "mass_model": mass_model})
