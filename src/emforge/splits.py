"""Train/validation split of the shared chain set by 40% sequence cluster (``clust40``).

One rule for every learned or knowledge-based table (CNN weights, EM-Refiner statistics): a
chain belongs to the validation split when the CRC-32 of its ``clust40`` id falls in the lowest
``validation_fraction`` of the 32-bit range. Chains of one cluster always share a split, the rule
needs no random state, and adding chains never moves existing ones between splits.
"""

from __future__ import annotations

import zlib

VALIDATION_FRACTION = 0.2


def split_of(clust40: str, validation_fraction: float = VALIDATION_FRACTION) -> str:
    """``"validation"`` or ``"train"`` for a ``clust40`` cluster id."""
    if not 0.0 <= validation_fraction <= 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1], got {validation_fraction}")
    h = zlib.crc32(clust40.encode("utf-8")) & 0xFFFFFFFF
    return "validation" if h < validation_fraction * 2 ** 32 else "train"
