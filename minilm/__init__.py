"""minilm: transformer language models from scratch, to be read beside the lectures in lectures/.

The public surface: the config, the backbone and its three heads. Nothing here prints or does work at import time.
"""

from .classifier import SequenceClassifier
from .config import IGNORE_INDEX, ModelConfig
from .model import CausalLM, MaskedLM, Transformer

__all__ = ["ModelConfig", "IGNORE_INDEX", "Transformer", "CausalLM", "MaskedLM", "SequenceClassifier"]
__version__ = "0.1.0"
