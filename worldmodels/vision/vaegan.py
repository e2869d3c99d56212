"""A VAE-GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity
metric"): the VAE's encoder, latents and decoder, trained against a discriminator whose
hidden layer measures the reconstruction instead of pixels.

- encoder: KL (with the VAE's free bits) + the feature reconstruction error;
- decoder: GAMMA x the feature reconstruction error + its GAN loss (non-saturating: it
  wants D to call its reconstructions and its decodings of prior samples real);
- discriminator: the GAN loss alone, on real frames, reconstructions and decoded prior
  samples; it never minimises the feature error, and no GAN gradient reaches the encoder
  (each part's gradient is taken of its own loss only).

Stabilisers, each because of what it prevents:
- spectral norm on every layer of D bounds how fast its features (the decoder's and
  encoder's target) can move and keeps its logits from saturating;
- the authors' balance: D's update is skipped while it is clearly winning and the
  decoder's while D is clearly losing (D's mean BCE on real or on fake frames outside
  BALANCE_EQUILIBRIUM +- BALANCE_MARGIN); never both;
- a pixel warm-up with a floor: the VAE's pixel error on encoder and decoder, with a weight
  stage 02 lowers from 1 to PIXEL_WEIGHT_FLOOR (0.25) over the first epoch. D's features
  start from frames that already look like the road rather than noise, and the floor stays
  because with the weight at 0 every run here collapsed within 300 batches: the decoder drew
  one grass texture whatever z was (the README's VAE-GAN section shows it).
"""

import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce
from torch.nn.utils.parametrizations import spectral_norm

from worldmodels.frames import PAPER_FRAME
from worldmodels.vision.base import Z_SIZE, TrainingSettings
from worldmodels.vision.vae import ConvVAE, kl_divergence, row_weights, sample_latent, squared_error

BALANCE_EQUILIBRIUM, BALANCE_MARGIN = 0.68, 0.35  # the authors' values (BCE per frame)


class Discriminator(nn.Module):
    """Frames [B, 3, 64, 64] -> (features [B, 256, 8, 8], real-vs-fake logit [B]).

    4 spectrally normalised convs (32/64/128 channels, kernel 4, stride 2: 64 -> 32 -> 16 ->
    8; then 256, kernel 3, stride 1); the features are the 4th conv's output before its
    activation, the layer the authors measured reconstructions on."""

    def __init__(self):
        super().__init__()
        act = lambda: nn.LeakyReLU(0.2)
        self.features = nn.Sequential(
            spectral_norm(nn.Conv2d(3, 32, 4, stride=2, padding=1)), act(),
            spectral_norm(nn.Conv2d(32, 64, 4, stride=2, padding=1)), act(),
            spectral_norm(nn.Conv2d(64, 128, 4, stride=2, padding=1)), act(),
            spectral_norm(nn.Conv2d(128, 256, 3, stride=1, padding=1)),
        )
        self.to_logit = nn.Sequential(act(), nn.Flatten(), spectral_norm(nn.Linear(256 * 8 * 8, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return features, self.to_logit(features).squeeze(1)


class VAEGAN(ConvVAE):
    """The VAE's encoder and decoder (so the same latents, decoding and acting encoder) plus
    a Discriminator, used only in training."""

    kind = "vaegan"
    loss_terms = ("loss", "recon", "kl", "feature", "d_loss", "g_loss", "d_real", "d_fake", "d_updates", "decoder_updates")

    def __init__(self, z_size: int = Z_SIZE, frame_kind: str = PAPER_FRAME):
        super().__init__(z_size, frame_kind)
        self.discriminator = Discriminator()

    def parts(self) -> dict[str, list[nn.Parameter]]:
        """Each loss's parameters: encoder, decoder and discriminator."""
        encoder = [*self.encoder.parameters(), *self.to_mu.parameters(), *self.to_logvar.parameters()]
        decoder = [*self.from_z.parameters(), *self.decoder.parameters()]
        return {"encoder": encoder, "decoder": decoder, "discriminator": list(self.discriminator.parameters())}

    def make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """One Adam over all three parts (one state to save); D with the betas GANs train with."""
        parts = self.parts()
        return torch.optim.Adam([{"params": parts["encoder"]}, {"params": parts["decoder"]},
                                 {"params": parts["discriminator"], "betas": (0.5, 0.999)}], lr=lr)

    def losses(self, x: torch.Tensor, settings: TrainingSettings) -> dict[str, torch.Tensor]:
        """Each part's loss and the terms for the log, batch means (scalars)."""
        mu, logvar = self.encode(x)
        recon = self.decode(sample_latent(mu, logvar))
        prior = self.decode(torch.randn_like(mu))
        real_features, real_logit = self.discriminator(x)
        recon_features, recon_logit = self.discriminator(recon)
        _, prior_logit = self.discriminator(prior)
        feature = squared_error(recon_features, real_features.detach()).mean()
        pixel = squared_error(recon, x, row_weights(self.frame_kind, settings.bar_weight)).mean()
        kl = kl_divergence(mu, logvar)
        ones, zeros = torch.ones_like(real_logit), torch.zeros_like(real_logit)
        d_real = bce(real_logit, ones)
        d_fake = (bce(recon_logit, zeros) + bce(prior_logit, zeros)) / 2
        g_loss = bce(recon_logit, ones) + bce(prior_logit, ones)
        encoder_loss = kl.clamp(min=settings.kl_tolerance * self.z_size).mean() + feature + settings.pixel_weight * pixel
        return {"encoder": encoder_loss, "decoder": settings.gamma * feature + g_loss + settings.pixel_weight * pixel,
                "discriminator": d_real + 2 * d_fake, "recon": pixel, "kl": kl.mean(), "feature": feature,
                "g_loss": g_loss, "d_real": d_real, "d_fake": d_fake}

    @staticmethod
    def balance(d_real: float, d_fake: float) -> tuple[bool, bool]:
        """(update D, update the decoder): D rests while clearly winning (low BCE), the
        decoder while D is clearly losing (high BCE); if both would rest, both train."""
        low, high = BALANCE_EQUILIBRIUM - BALANCE_MARGIN, BALANCE_EQUILIBRIUM + BALANCE_MARGIN
        update_d = not (d_real < low or d_fake < low)
        update_decoder = not (d_real > high or d_fake > high)
        return (True, True) if not (update_d or update_decoder) else (update_d, update_decoder)

    def _log(self, losses: dict[str, torch.Tensor], update_d: bool, update_decoder: bool) -> dict[str, float]:
        values = {"loss": losses["encoder"].item(), "d_loss": losses["discriminator"].item(),
                  "d_updates": float(update_d), "decoder_updates": float(update_decoder)}
        return {name: values[name] if name in values else losses[name].item() for name in self.loss_terms}

    def train_step(self, x: torch.Tensor, optimizer: torch.optim.Optimizer, settings: TrainingSettings) -> dict[str, float]:
        losses = self.losses(x, settings)
        update_d, update_decoder = self.balance(losses["d_real"].item(), losses["d_fake"].item())
        optimizer.zero_grad(set_to_none=True)
        for part, params in self.parts().items():
            if (part == "discriminator" and not update_d) or (part == "decoder" and not update_decoder):
                continue  # no gradient: Adam leaves these weights (and their moments) as they are
            grads = torch.autograd.grad(losses[part], params, retain_graph=True, allow_unused=True)
            for param, grad in zip(params, grads):
                param.grad = grad
        optimizer.step()
        return self._log(losses, update_d, update_decoder)

    def evaluate(self, x: torch.Tensor, settings: TrainingSettings) -> dict[str, float]:
        losses = self.losses(x, settings)
        return self._log(losses, *self.balance(losses["d_real"].item(), losses["d_fake"].item()))
