"""verified-optim's optimizers: drop-in replacements for their ``torch.optim`` namesakes.

Same constructor arguments, defaults, errors, state keys and ``state_dict`` layout; on CPU in
float32/float64 bitwise identical to torch.optim 2.13's for-loop and foreach paths.
"""

from impl.adagrad import Adagrad
from impl.adam import Adam, AdamW
from impl.rmsprop import RMSprop
from impl.sgd import SGD

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "RMSprop"]
