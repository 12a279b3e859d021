"""The paper's ImageNet space: a chain of MBConv blocks (arch.py: the space as data and its genotype;
ops.py: the modules; net.py: the network, generic over what sits in a searchable block)."""
from .arch import (DEFAULT_MACRO, NAMED, OP_CODES, PRIMITIVES, STRIDES, BlockSpec, MBConvGenotype, block_plan,
                   check_image_size, check_macro, expand_of, fixed_layers, kernel_of, stage_strides)
from .net import Block, MBConvNet, Skip, build_derived
from .ops import ConvBN, ConvBNReLU6, MBConv, Zero, make_op

__all__ = ["DEFAULT_MACRO", "NAMED", "OP_CODES", "PRIMITIVES", "STRIDES", "BlockSpec", "MBConvGenotype", "block_plan",
           "check_image_size", "check_macro", "expand_of", "fixed_layers", "kernel_of", "stage_strides", "Block",
           "MBConvNet", "Skip", "build_derived", "ConvBN", "ConvBNReLU6", "MBConv", "Zero", "make_op"]
