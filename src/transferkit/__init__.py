"""transferkit: transfer learning from pretrained models to small, shifted or unlabeled data."""

__version__ = "0.1.0"
