"""The representations experiment's VAE: a conv encoder with this project's StyleGAN2 generator
as decoder, so its activations are read like the GAN's. Model, file, training, shipping:

    model       GeneratorVAE (encode, decode, wplus, loss, reconstruct)
    checkpoint  vae.pt: save_vae, load_vae, adopt_vae (a shipped VAE checked, then copied)
    train       train_vae: resumable training under a wall-clock budget
    evaluate    reconstruction PSNR and pictures
    flops       training compute beside the GAN's
    ship        ship_vae: the newest snapshot -> a folder with record.yaml
    __main__    `python -m partseg.vae ...`: train and ship the demo VAE

    from partseg.vae import load_vae
    vae, info = load_vae("data/pretrained/demo_vae/vae.pt")
    wplus = vae.wplus(vae.encode(images)[0])     # images [N, 3, H, W] in [-1, 1]
"""

from partseg import lazy_exports

# name -> submodule; imported on first use (see partseg.lazy_exports)
_EXPORTS = {
    "GENERATOR_KEYS": "model",
    "GeneratorVAE": "model",
    "VAETraining": "train",
    "adopt_vae": "checkpoint",
    "load_vae": "checkpoint",
    "reconstruction_report": "evaluate",
    "save_vae": "checkpoint",
    "ship_vae": "ship",
    "step_flops": "flops",
    "train_vae": "train",
    "training_options": "train",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
