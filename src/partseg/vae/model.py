"""A VAE whose decoder is this project's StyleGAN2 generator (the representations experiment's
model: partseg.vae.train trains it, partseg.vae.checkpoint saves and loads it).

The question it answers: are the GAN's pixel features good for few-shot segmentation because
of adversarial training, or would any generator trained on the same images do? So the decoder
is `partseg.gan.Generator` with exactly the demo GAN's config (same widths, same layers, same
`layer_table()`), and its activations are read by the same `FeatureExtractor`.

    encoder  a convolutional net of the discriminator's shape (1x1 fromRGB, residual blocks
             halving the resolution down to 4x4, a 3x3 conv, two linear layers) that outputs
             mu and log-variance of z [N, style_dim];
    decoder  Generator(**config): z -> mapping -> w broadcast to W+ -> synthesis, with the
             generator's constant (stored) noise maps, so an image is a function of z alone.

Loss per image (negative ELBO, in nats), averaged over the batch and divided by the number of
pixel values so that the learning rate does not depend on the resolution:
    sum (x - x_hat)^2 / (2 sigma^2)  +  kl_weight * KL(q(z|x) || N(0, I)),
with x in [-1, 1] and a fixed sigma (default 0.1, i.e. 5 % of the pixel range: small enough
that the reconstructions are sharp, large enough that the KL term still organises z).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from partseg.gan.discriminator import ConvLayer, residual_trunk
from partseg.gan.generator import Generator
from partseg.gan.layers import EqualLinear
from partseg.imaging import psnr_db

GENERATOR_KEYS = ("size", "style_dim", "n_mlp", "channel_base", "channel_max")


class Encoder(nn.Module):
    """Image [N, 3, size, size] in [-1, 1] -> (mu, logvar), each [N, style_dim]."""

    def __init__(self, size: int, style_dim: int, channel_base: int, channel_max: int,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        # The discriminator's trunk (same modules, names and order of initialisation).
        self.convs, width = residual_trunk(size, channel_base, channel_max, blur_kernel)
        self.final_conv = ConvLayer(width[4], width[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(width[4] * 4 * 4, width[4], activation=True),
            EqualLinear(width[4], 2 * style_dim),
        )
        self.style_dim = style_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.final_conv(self.convs(x))
        out = self.final_linear(x.reshape(x.shape[0], -1))
        return out[:, :self.style_dim], out[:, self.style_dim:]


class GeneratorVAE(nn.Module):
    """Encoder + StyleGAN2 decoder. `config` is a Generator config (Generator.config)."""

    def __init__(self, config: dict, sigma: float = 0.1, kl_weight: float = 1.0):
        super().__init__()
        arch = {k: config[k] for k in GENERATOR_KEYS}
        self.config = dict(arch, sigma=float(sigma), kl_weight=float(kl_weight))
        self.encoder = Encoder(arch["size"], arch["style_dim"], arch["channel_base"],
                               arch["channel_max"])
        self.decoder = Generator(**arch)
        self.sigma = float(sigma)
        self.kl_weight = float(kl_weight)

    @classmethod
    def from_options(cls, options: dict) -> "GeneratorVAE":
        """The model of a training run's options (partseg.vae.train.training_options)."""
        return cls(options, sigma=options["sigma"], kl_weight=options["kl_weight"])

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(images)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z, noise="const")

    def wplus(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, style_dim] -> the decoder's W+ latents [N, n_latent, style_dim]."""
        w = self.decoder.mapping(z)
        return w.unsqueeze(1).repeat(1, self.decoder.n_latent, 1)

    def loss(self, images: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Negative ELBO per pixel value (see the module docstring) and its parts."""
        mu, logvar = self.encode(images)
        # Clamped: an early step with a huge log-variance would overflow exp().
        logvar = logvar.clamp(-30.0, 20.0)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        recon = self.decode(z)
        squared = (recon - images).square().flatten(1).sum(1)
        nll = squared / (2 * self.sigma ** 2)
        kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(1)
        values = images[0].numel()
        loss = (nll + self.kl_weight * kl).mean() / values
        mse = squared.mean() / values
        parts = {"loss": loss.detach(), "nll": nll.mean().detach(), "kl": kl.mean().detach(),
                 "psnr": psnr_db(mse.detach(), 2.0, 1e-12)}
        return loss, parts

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Decode the posterior means: the deterministic reconstruction."""
        mu, _ = self.encode(images)
        return self.decode(mu)
