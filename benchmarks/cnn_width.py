"""Benchmark: width of the C-alpha network at equal training time (32 channels, paper 003, vs fewer).

The question: on the hardware emforge trains on (2 CPU cores), which network validates better after
the same training wall time? Each run is a training log written by ``train_cnn`` / ``emforge cnn
train`` (``train_log.tsv``: one row per epoch with the validation CRscore per resolution band and
the epoch's wall time, training plus validation). Runs compared here must share the seed, the chain
split and the validation set (all fixed by ``seed`` and the manifest in ``emforge.cnn.train``), so
that their CRscores are measured on the same held-out maps.

For each training-time budget the table gives, per run, the last epoch finished within the budget
(cumulative ``wall_s``) and its validation scores; "-" where a run had not finished an epoch by
then. The per-step cost of each width (forward + backward + Adam step on one 40^3 crop, best of 3,
after a warm-up, in this process) is measured here as well.

Run: ``.venv/bin/python benchmarks/cnn_width.py --run "32 ch=LOG32.tsv:32" --run "16 ch=LOG16.tsv:16"
[--budgets 1100,2200]``; writes ``benchmarks/results/cnn_width.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_s, git_commit, machine, versions, write_markdown  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "cnn_width.md"
BANDS = ("crscore_2_5A", "crscore_5_10A", "crscore_10_15A")


def parse_run(text: str) -> tuple[str, Path, int]:
    """``"LABEL=PATH:CHANNELS"`` -> (label, path, channels)."""
    try:
        label, rest = text.split("=", 1)
        path, channels = rest.rsplit(":", 1)
        return label.strip(), Path(path), int(channels)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--run wants LABEL=PATH:CHANNELS, got {text!r}") from None


def step_seconds(channels: int, crop_vox: int = 40) -> float:
    """Best-of-3 wall time of one training step (forward, weighted CE, backward, Adam) on one crop."""
    import torch

    from emforge.cnn.network import CAlphaNet

    torch.manual_seed(0)
    net = CAlphaNet(channels=channels)
    opt = torch.optim.Adam(net.parameters(), 5e-4)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 50.0]))
    x = torch.randn(1, 2, crop_vox, crop_vox, crop_vox)
    y = (torch.rand(1, crop_vox, crop_vox, crop_vox) < 0.02).long()

    def step():
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    return best_s(3, step)[0]


def at_budget(log, budget_s: float) -> dict | None:
    """The last row of a training log whose cumulative wall time is within ``budget_s``."""
    done = log[log["cumulative_s"] <= budget_s]
    return None if done.empty else done.iloc[-1].to_dict()


def main(argv=None) -> int:
    import pandas as pd
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=parse_run, action="append", required=True,
                    help="LABEL=PATH:CHANNELS, a training log and its network width (repeat)")
    ap.add_argument("--budgets", default="1100", help="comma-separated training-time budgets in s [1100]")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    budgets = [float(b) for b in args.budgets.split(",")]

    runs = []
    for label, path, channels in args.run:
        log = pd.read_csv(path, sep="\t")
        log["cumulative_s"] = log["wall_s"].cumsum()
        runs.append((label, path, channels, log, step_seconds(channels)))

    lines = [
        "# C-alpha network width at equal training time (2 CPU cores)", "",
        f"- command: `.venv/bin/python benchmarks/cnn_width.py {shlex.join(sys.argv[1:])}`",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: {machine()}",
        f"- emforge commit: {git_commit(['src/emforge/cnn'], ' (with uncommitted changes in src/emforge/cnn)')}",
        f"- versions: {versions(['emforge', 'torch', 'numpy'])}",
        "- validation: the training runs' own per-epoch validation (whole held-out chains of the clust40 "
        "validation split, seed 0: the same maps for every run at the same number of maps per band); CRscore of "
        "paper 003 Eq. 1; compare runs only at equal maps per band",
        "", "## Training logs", "",
        "| run | log | channels | parameters | epochs | training s | step s (40^3 crop, this run) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    from emforge.cnn.network import CAlphaNet, count_parameters

    for label, path, channels, log, step_s in runs:
        lines.append(f"| {label} | `{path}` | {channels} | {count_parameters(CAlphaNet(channels=channels))} | "
                     f"{len(log)} | {log['cumulative_s'].iloc[-1]:.0f} | {step_s:.2f} |")
    lines += ["", "## Validation CRscore at equal training time", "",
              "| budget s | run | epoch | cumulative s | validation maps per band | 2-5 Å | 5-10 Å | 10-15 Å | mean |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for budget in budgets:
        for label, _, _, log, _ in runs:
            row = at_budget(log, budget)
            if row is None:
                lines.append(f"| {budget:.0f} | {label} | - | - | - | - | - | - | - |")
                continue
            scores = [row[b] for b in BANDS]
            maps = row.get("val_maps_per_band", math.nan)
            maps = "n/a" if pd.isna(maps) else int(maps)
            lines.append(f"| {budget:.0f} | {label} | {int(row['epoch'])} | {row['cumulative_s']:.0f} | {maps} | "
                         + " | ".join(f"{s:.3f}" for s in scores) + f" | {np.mean(scores):.3f} |")
    write_markdown(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
