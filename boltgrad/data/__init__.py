"""boltgrad.data: datasets and a seeded, resumable DataLoader (as torch.utils.data), and MNIST loaders.

``boltgrad.data.mnist`` reads MNIST and Fashion-MNIST from their IDX files.
"""

from . import mnist
from .dataset import Dataset, TensorDataset
from .loader import DataLoader, default_collate

__all__ = ["Dataset", "TensorDataset", "DataLoader", "default_collate", "mnist"]
