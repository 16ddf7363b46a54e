"""Rule simulate_map: simulate a density map from the dataset's reference model."""

from emforge.maps import write_map
from emforge.models import read_model
from emforge.simulate import simulate_map
from emforge.workflow_support import rule_log, write_provenance

smk = snakemake  # noqa: F821 - injected by Snakemake's script directive
settings = dict(smk.params.simulate)
resolution_A = float(smk.params.resolution_A)

with rule_log(smk.log[0], "simulate_map", smk.threads) as log:
    model = read_model(smk.input.reference)
    log.info("%s: %d atoms, %d residues; simulating at %g Å with the %s kernel",
             smk.input.reference, model.n_atoms, model.n_residues, resolution_A, settings["kernel"])
    density_map = simulate_map(model, None, resolution_A, kernel=settings["kernel"],
                               voxel_size_A=settings["voxel_size_A"], margin_A=settings["margin_A"])
    log.info("grid %s (z, y, x), voxel %s Å", density_map.shape, density_map.voxel_size.tolist())
    write_map(smk.output.map, density_map, label=f"emforge simulate_map {settings['kernel']} {resolution_A:g} A")
    write_provenance(smk.output.provenance, "simulate_map",
                     parameters={**settings, "resolution_A": resolution_A},
                     inputs={"reference": smk.input.reference}, seed=smk.params.seed)
