"""The paper's CIFAR-10 tree-cell space: its data (arch.py), genotype (genotype.py), candidate ops (ops.py), cells
(cells.py), network (net.py), SearchSpace (space.py), pictures (pictures.py); the released network
``proxyless_cifar`` is named in genotypes.py."""
