"""C-alpha prediction from density maps with a 3D residual CNN (CR-I-TASSER, paper 003).

Modules, one job each:

* :mod:`~emforge.cnn.network`  -- :class:`CAlphaNet`, the fully convolutional network, and its receptive field;
* :mod:`~emforge.cnn.features` -- the 1.5 Å working grid and the network's input channels;
* :mod:`~emforge.cnn.data`     -- training examples simulated from real chains (paper 003 Eq. 2);
* :mod:`~emforge.cnn.train`    -- training loop, checkpoints, and the shipped weight files;
* :mod:`~emforge.cnn.infer`    -- tiled prediction of the C-alpha probability map;
* :mod:`~emforge.cnn.peaks`    -- greedy C-alpha peak picking (3.3 Å exclusion, L..1.2 L peaks);
* :mod:`~emforge.cnn.sequence` -- FASTA sequences (their length L sets the number of peaks).

Only :mod:`torch` users import the submodules; ``import emforge.cnn`` itself is light.
"""

#: Default longest inference tile edge in 1.5 Å voxels, halos included (:mod:`~emforge.cnn.infer`).
#: Peak memory with the shipped 16-channel network is about 240 bytes per window voxel on the CPU
#: (1.9 GB for one 200^3 window, 0.9 GB for 122^3 ones; twice that with 32 channels), and every
#: split adds two halos of 22 voxels per axis: 208 runs a 300 Å box in one pass, under 2 GB.
#: benchmarks/results/cnn.md times the choices on a 200^3 map.
TILE_VOX = 208
