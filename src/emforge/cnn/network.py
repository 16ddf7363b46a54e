"""The 3D residual CNN of CR-I-TASSER (paper 003, Methods and Supplementary Fig. 10a).

Input ``(B, C_in, D, H, W)`` float on the 1.5 Å working grid (:mod:`emforge.cnn.features`),
output ``(B, 2, D, H, W)`` logits (class 0 background, class 1 C-alpha); the softmax of class 1
is the C-alpha probability of each voxel.

Layers (paper 003): a 3x3x3 convolution -> instance normalisation -> ReLU to 32 channels, ten
residual blocks (conv -> IN -> ReLU -> dropout 0.2 -> conv -> IN, plus the block input, ReLU), a
1x1x1 convolution to 2 logits. Every convolution is zero-padded to keep the grid size, so the
network is fully convolutional: any input size, output on the same voxels.

Instance normalisation with running statistics
----------------------------------------------
The normalisation layers are :class:`torch.nn.InstanceNorm3d` with learnable affine parameters
and ``track_running_stats=True``. In training mode each crop is normalised by its own statistics
(the paper's instance normalisation); in evaluation mode the running averages collected during
training are used. That makes the evaluated network a strictly local operator with a finite
receptive field (:func:`receptive_field_vox`): its prediction for a voxel depends only on the
input within ``halo`` voxels, never on the box size, the solvent fraction of the box or the
tiling, so tiled inference reproduces untiled inference exactly (:mod:`emforge.cnn.infer`).
With per-map instance statistics at inference time, every output voxel would depend on the
whole map and no tiling could be exact.
"""

from __future__ import annotations

import torch
from torch import nn

#: Channels of the input: "density" (robustly normalised map) and "local_std" (its local
#: standard deviation); see :func:`emforge.cnn.features.input_channels`.
CHANNEL_NAMES = ("density", "local_std")


def receptive_field_vox(n_blocks: int) -> int:
    """Edge in voxels of the cube of input voxels that one output voxel depends on.

    One 3x3x3 stem convolution plus two per residual block, each widening the field by 2
    voxels; the final 1x1x1 convolution adds nothing: ``1 + 2 (1 + 2 n_blocks)``
    (43 voxels = 64.5 Å at 1.5 Å for the paper's 10 blocks).
    """
    if n_blocks < 0:
        raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
    return 1 + 2 * (1 + 2 * int(n_blocks))


def halo_vox(n_blocks: int) -> int:
    """Overlap in voxels a tile needs on each side: ``ceil(receptive_field / 2)`` (>= RF / 2)."""
    return (receptive_field_vox(n_blocks) + 1) // 2


def _norm(channels: int) -> nn.InstanceNorm3d:
    return nn.InstanceNorm3d(channels, affine=True, track_running_stats=True)


class ResidualBlock(nn.Module):
    """conv3 -> IN -> ReLU -> dropout -> conv3 -> IN, plus the input, ReLU; (B, C, D, H, W) -> same."""

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm1 = _norm(channels)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm2 = _norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(torch.relu(self.norm1(self.conv1(x))))
        y = self.norm2(self.conv2(y))
        return torch.relu(y + x)


class CAlphaNet(nn.Module):
    """3D residual CNN mapping density channels to C-alpha / background logits.

    Parameters
    ----------
    in_channels : int
        2 (default): normalised density and local standard deviation, as ModelAngelo feeds
        its network; 1: density only (:data:`CHANNEL_NAMES` in that order).
    channels : int
        Feature channels of every layer (32 in paper 003).
    n_blocks : int
        Residual blocks (10 in paper 003).
    dropout : float
        Dropout probability inside each block (0.2 in paper 003).

    Shapes: ``forward(x)`` with ``x`` (B, in_channels, D, H, W) float32 returns logits
    (B, 2, D, H, W); :meth:`probability` returns the C-alpha probability (B, D, H, W).
    About 0.56 M parameters at the paper's size (2.2 MB of float32 weights).
    """

    def __init__(self, in_channels: int = 2, channels: int = 32, n_blocks: int = 10, dropout: float = 0.2):
        super().__init__()
        if in_channels not in (1, 2):
            raise ValueError(f"in_channels must be 1 (density) or 2 (density, local std), got {in_channels}")
        if channels < 1 or n_blocks < 0 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"bad architecture: channels={channels}, n_blocks={n_blocks}, dropout={dropout}")
        self.in_channels = int(in_channels)
        self.channels = int(channels)
        self.n_blocks = int(n_blocks)
        self.dropout = float(dropout)
        self.stem = nn.Sequential(nn.Conv3d(in_channels, channels, 3, padding=1), _norm(channels), nn.ReLU())
        self.blocks = nn.Sequential(*[ResidualBlock(channels, dropout) for _ in range(n_blocks)])
        self.head = nn.Conv3d(channels, 2, 1)

    @property
    def architecture(self) -> dict:
        """Constructor arguments, enough to rebuild the network: ``CAlphaNet(**net.architecture)``."""
        return {"in_channels": self.in_channels, "channels": self.channels, "n_blocks": self.n_blocks,
                "dropout": self.dropout}

    @property
    def receptive_field_vox(self) -> int:
        """Edge of the input cube (voxels) one output voxel depends on; see :func:`receptive_field_vox`."""
        return receptive_field_vox(self.n_blocks)

    @property
    def halo_vox(self) -> int:
        """Tile overlap needed on each side for exact tiled inference (voxels); see :func:`halo_vox`."""
        return halo_vox(self.n_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, D, H, W), got {tuple(x.shape)}")
        return self.head(self.blocks(self.stem(x)))

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probability of the C-alpha class, (B, D, H, W), computed in float32."""
        return torch.softmax(self.forward(x).float(), dim=1)[:, 1]

    def folded(self) -> FoldedCAlphaNet:
        """The eval-mode network with norms folded into the convolutions (:class:`FoldedCAlphaNet`)."""
        return FoldedCAlphaNet(self)


def _fold(conv: nn.Conv3d, norm: nn.InstanceNorm3d) -> nn.Conv3d:
    """One convolution equal to ``norm(conv(x))`` with ``norm`` in eval mode (running statistics)."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)  # (C,)
    fused = nn.Conv3d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding)
    fused.weight.copy_(conv.weight * scale[:, None, None, None, None])
    fused.bias.copy_((conv.bias - norm.running_mean) * scale + norm.bias)
    return fused


class FoldedCAlphaNet(nn.Module):
    """Inference-only twin of a :class:`CAlphaNet` in eval mode: each convolution and the
    instance norm after it (an affine map of its running statistics in eval mode) folded into one
    convolution, dropout dropped, ReLUs and residual sums in place. Same logits to float rounding,
    about a fifth less time and fewer live activations. Build with :meth:`CAlphaNet.folded`."""

    def __init__(self, net: CAlphaNet):
        super().__init__()
        self.in_channels = net.in_channels
        self.halo_vox = net.halo_vox
        with torch.no_grad():
            self.stem = _fold(net.stem[0], net.stem[1])
            self.blocks = nn.ModuleList(nn.ModuleList([_fold(b.conv1, b.norm1), _fold(b.conv2, b.norm2)])
                                        for b in net.blocks)
            self.head = nn.Conv3d(net.channels, 2, 1)
            self.head.load_state_dict(net.head.state_dict())
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu_(self.stem(x))
        for conv1, conv2 in self.blocks:
            x = torch.relu_(conv2(torch.relu_(conv1(x))).add_(x))
        return self.head(x)

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probability of the C-alpha class, (B, D, H, W)."""
        return torch.softmax(self.forward(x).float(), dim=1)[:, 1]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
