"""StyleGAN2 in plain PyTorch: models, checkpoints (ours and rosinality's), training, sampling.

    from partseg.gan import load_generator, sample_images
    G = load_generator("results/train_gan/generator.pt")
    out = sample_images(G, 10, seed=0)          # images uint8 [10,H,W,3], z, wplus
"""

from partseg.gan.checkpoint import load_discriminator, load_generator, save_checkpoint
from partseg.gan.discriminator import Discriminator
from partseg.gan.generator import Generator
from partseg.gan.sampling import images_to_uint8, sample_images, seeded_z

__all__ = [
    "Discriminator", "Generator", "images_to_uint8", "load_discriminator", "load_generator",
    "sample_images", "save_checkpoint", "seeded_z", "train_gan",
]


def __getattr__(name):
    # Training pulls in more code; import it only when asked for.
    if name == "train_gan":
        from partseg.gan.train import train_gan
        return train_gan
    raise AttributeError(f"module 'partseg.gan' has no attribute {name!r}")
