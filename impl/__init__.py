"""verified-optim's optimizers: drop-in replacements for their ``torch.optim`` namesakes.

Same constructor arguments, defaults, errors, state keys and ``state_dict`` layout; on CPU in
float32/float64 bitwise identical to torch.optim 2.13's for-loop and foreach paths.
"""

from impl.adadelta import Adadelta
from impl.adafactor import Adafactor
from impl.adagrad import Adagrad
from impl.adam import Adam, AdamW
from impl.adamax import Adamax
from impl.asgd import ASGD
from impl.lbfgs import LBFGS
from impl.muon import Muon
from impl.nadam import NAdam
from impl.radam import RAdam
from impl.rmsprop import RMSprop
from impl.rprop import Rprop
from impl.sgd import SGD
from impl.sparse_adam import SparseAdam

__all__ = [
    "ASGD",
    "LBFGS",
    "SGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Muon",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
    "SparseAdam",
]
