"""Makes ``torch_reference`` (the tests' PyTorch reference models) importable."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
