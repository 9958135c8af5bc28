"""The EmoNet-Face benchmark: HQ agreement protocol, transfer evaluation and BINARY vote analysis;
and the yardsticks of the speed benchmarks (:mod:`~emonet_face.bench.flops`: an encoder's FLOPs per
image, :mod:`~emonet_face.bench.hardware`: the CPU's nominal peak).

Each module is small and importable on its own; the CLI (`emonet-face bench ...`) wires them together.
"""

from emonet_face.bench.agreement import krippendorff_alpha_interval, pairwise_quadratic_kappa, spearman_columns
from emonet_face.bench.binary import analyse_binary
from emonet_face.bench.hq import HQData, load_hq
from emonet_face.bench.protocol import run_hq_protocol
from emonet_face.bench.transfer import evaluate_transfer

__all__ = [
    "HQData",
    "analyse_binary",
    "evaluate_transfer",
    "krippendorff_alpha_interval",
    "load_hq",
    "pairwise_quadratic_kappa",
    "run_hq_protocol",
    "spearman_columns",
]
