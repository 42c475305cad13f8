"""StyleGAN2 in plain PyTorch: models, checkpoints (ours and rosinality's), training, sampling.

    from partseg.gan import load_generator, sample_images
    G = load_generator("results/train_gan/generator.pt")
    out = sample_images(G, 10, seed=0)          # images uint8 [10,H,W,3], z, wplus
"""

from partseg import lazy_exports

# name -> submodule; imported on first use (see partseg.lazy_exports)
_EXPORTS = {
    "Discriminator": "discriminator",
    "Generator": "generator",
    "load_discriminator": "checkpoint",
    "load_generator": "checkpoint",
    "sample_images": "sampling",
    "save_checkpoint": "checkpoint",
    "seeded_z": "sampling",
    "train_gan": "train",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
