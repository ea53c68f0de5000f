"""Augmentation presets for training images (validation and test data are never augmented).

- ``none``: no augmentation.
- ``light``: horizontal flip; rotation up to 10 degrees; shift up to 10%; zoom 0.9-1.1.
- ``strong``: horizontal flip; rotation up to 20 degrees; shift up to 15%; zoom 0.8-1.2;
  shear up to 10 degrees; brightness, contrast and saturation jitter 0.3, hue 0.05.
- ``shift``: shift up to 12.5%, nothing else (FixMatch's weak view, without the flip that
  would change digits or text).
- ``randaugment``: RandAugment (2 operations at magnitude 10) then a shift up to 12.5%
  (FixMatch's strong view).

Each preset maps an RGB PIL image to an RGB PIL image of the same size and runs before the
backbone's own preprocessing. Randomness comes from torch's global RNG, so seeding torch
makes it reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

AUGMENT_PRESETS: tuple[str, ...] = ("none", "light", "strong", "shift", "randaugment")


def augment_transform(preset: str) -> Callable[[Image.Image], Image.Image] | None:
    """The PIL -> PIL transform of a preset (None for ``"none"``)."""
    from torchvision.transforms import v2

    if preset not in AUGMENT_PRESETS:
        raise ValueError(f"--augment {preset!r}: choose one of {', '.join(AUGMENT_PRESETS)}")
    if preset == "none":
        return None
    if preset == "light":
        return v2.Compose([v2.RandomHorizontalFlip(),
                           v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1),
                                           fill=0)])
    if preset == "shift":
        return v2.RandomAffine(degrees=0, translate=(0.125, 0.125), fill=0)
    if preset == "randaugment":
        return v2.Compose([v2.RandAugment(num_ops=2, magnitude=10),
                           v2.RandomAffine(degrees=0, translate=(0.125, 0.125), fill=0)])
    return v2.Compose([v2.RandomHorizontalFlip(),
                       v2.RandomAffine(degrees=20, translate=(0.15, 0.15), scale=(0.8, 1.2),
                                       shear=10, fill=0),
                       v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05)])
