"""Rule train_cnn: train (or resume) the C-alpha network and release its weights with a model card."""

from emforge.cnn.release import train_release
from emforge.workflow_support import rule_log

smk = snakemake  # noqa: F821 - injected by Snakemake's script directive
settings = dict(smk.params.train)
out_dir = smk.params.output_dir

with rule_log(smk.log[0], "train_cnn", smk.threads) as log:

    def progress(epoch, row):
        scores = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k.startswith("crscore"))
        log.info("epoch %d of %d: train loss %.4f, validation loss %.4f, %s (%.0f s)", epoch, settings["epochs"],
                 row["train_loss"], row["val_loss"], scores, row["wall_s"])

    command = f"snakemake --cores {smk.threads} train_cnn"
    note = "the workflow config's train_cnn section: " + ", ".join(
        f"{k}: {v}" for k, v in settings.items() if k not in ("output_dir", "checkpoint_dir"))
    train_release(out_dir, checkpoint_dir=smk.params.checkpoint_dir, epochs=settings["epochs"], command=command,
                  manifest=smk.input.manifest, steps_per_epoch=settings["steps_per_epoch"],
                  batch_size=settings["batch_size"], crop_vox=settings["crop_vox"], seed=settings["seed"],
                  network={"channels": settings["channels"], "n_blocks": settings["n_blocks"]},
                  val_maps_per_band=settings["val_maps_per_band"], device=settings["device"],
                  settings_note=note, progress=progress)
