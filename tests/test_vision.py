"""The vision family: the VAE-GAN's shapes and loss terms, which parameters each loss moves,
and checkpoints that load only as the kind they are."""

import pytest
import torch
from PIL import Image

from worldmodels.checkpoints import VISION, TrainingProgress, fingerprint, load_model, save_model, save_training
from worldmodels.errors import DataError
from worldmodels.logs import read_csv
from helpers import write_random_rollouts
from worldmodels.vision import VAEGAN, VISION_MODELS, ConvVAE, TrainingSettings, decode_frames

SETTINGS = TrainingSettings(kl_tolerance=0.5, gamma=1.0, pixel_weight=0.5)


def _sgd_step(model: VAEGAN, seed: int = 0, settings: TrainingSettings = SETTINGS) -> dict[str, torch.Tensor]:
    """One train_step with plain SGD (update = -gradient) on a fixed batch; the parameters after it."""
    torch.manual_seed(seed)
    x = torch.rand(4, 3, 64, 64)
    model.train_step(x, torch.optim.SGD(model.parameters(), lr=1.0), settings)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _twins(seed: int = 0) -> tuple[VAEGAN, VAEGAN]:
    torch.manual_seed(seed)
    a = VAEGAN(8)
    b = VAEGAN(8)
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("batch", [1, 3])
def test_vaegan_keeps_the_vae_interface_and_reports_every_term(batch):
    model = VAEGAN(32)
    x = torch.rand(batch, 3, 64, 64)
    recon, mu, logvar = model(x)
    assert recon.shape == x.shape and mu.shape == logvar.shape == (batch, 32)
    features, logit = model.discriminator(x)
    assert features.shape == (batch, 256, 8, 8) and logit.shape == (batch,)
    terms = model.train_step(x, model.make_optimizer(1e-4), SETTINGS)
    assert list(terms) == list(VAEGAN.loss_terms) and all(torch.isfinite(torch.tensor(v)) for v in terms.values())
    with torch.no_grad():
        assert list(model.evaluate(x, SETTINGS)) == list(VAEGAN.loss_terms)
    assert decode_frames(model, mu.detach()).shape == (batch, 64, 64, 3)


def test_no_gan_gradient_reaches_the_encoder():
    a, b = _twins()
    with torch.no_grad():  # moves D's logit only: the GAN losses change, D's features (the encoder's target) do not
        b.discriminator.to_logit[2].bias += 3.0
    after_a, after_b = _sgd_step(a), _sgd_step(b)
    encoder = [n for n in after_a if n.startswith(("encoder.", "to_mu.", "to_logvar."))]
    decoder = [n for n in after_a if n.startswith(("from_z.", "decoder."))]
    assert all(torch.equal(after_a[n], after_b[n]) for n in encoder)
    assert not all(torch.equal(after_a[n], after_b[n]) for n in decoder)  # the decoder does learn from the GAN loss


def test_the_discriminator_learns_from_the_gan_loss_alone():
    a, b = _twins()  # b: a's weights and spectral-norm vectors, before any forward
    before = {n: p.detach().clone() for n, p in a.named_parameters()}
    torch.manual_seed(0)  # the batch and z samples _sgd_step will draw
    losses = a.losses(torch.rand(4, 3, 64, 64), SETTINGS)
    names = [n for n, _ in a.named_parameters() if n.startswith("discriminator.")]
    params = [p for n, p in a.named_parameters() if n.startswith("discriminator.")]
    gan_only = torch.autograd.grad(losses["discriminator"], params, retain_graph=True)
    with_feature = torch.autograd.grad(losses["discriminator"] + losses["feature"], params)
    assert not all(torch.allclose(g, h) for g, h in zip(with_feature, gan_only))  # the feature loss could move D
    after = _sgd_step(b)  # the same forward, then SGD: D's update is exactly minus its GAN gradient
    for name, grad in zip(names, gan_only):
        assert torch.allclose(after[name], before[name] - grad, atol=1e-6), name


def test_balance_rests_the_winner_and_never_both():
    assert VAEGAN.balance(0.7, 0.7) == (True, True)
    assert VAEGAN.balance(0.1, 0.7) == (False, True)  # D clearly winning on real frames: D rests
    assert VAEGAN.balance(0.7, 1.5) == (True, False)  # D clearly losing: the decoder rests
    assert VAEGAN.balance(0.1, 1.5) == (True, True)  # both would rest: both train


def test_a_resting_part_keeps_its_weights(monkeypatch):
    a, _ = _twins()
    before = {n: p.detach().clone() for n, p in a.named_parameters()}
    monkeypatch.setattr(VAEGAN, "balance", staticmethod(lambda d_real, d_fake: (False, True)))
    after = _sgd_step(a)
    assert all(torch.equal(after[n], before[n]) for n in after if n.startswith("discriminator."))
    assert not all(torch.equal(after[n], before[n]) for n in after if n.startswith("decoder."))
    assert a.train_step(torch.rand(2, 3, 64, 64), a.make_optimizer(1e-4), SETTINGS)["d_updates"] == 0.0


@pytest.mark.parametrize("kind", sorted(VISION_MODELS))
def test_a_checkpoint_loads_only_as_the_kind_it_is(tmp_path, kind):
    model = VISION_MODELS[kind](8)
    save_model(tmp_path / "vae.pt", kind, model)
    loaded = load_model(tmp_path / "vae.pt", VISION)
    assert type(loaded) is VISION_MODELS[kind] and fingerprint(loaded) == fingerprint(model)
    other = next(k for k in VISION_MODELS if k != kind)
    with pytest.raises(DataError, match=f"not a {other} checkpoint but a '{kind}' one"):
        load_model(tmp_path / "vae.pt", other)


def test_stage_02_refuses_to_go_on_training_a_vaegan_as_a_vae(tmp_path, scripts):
    _, train_vae, *_ = scripts
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=10)
    model = VAEGAN(32)
    save_training(tmp_path / "vae.pt", "vaegan", model, model.make_optimizer(1e-4), TrainingProgress())
    with pytest.raises(DataError, match=r"a vaegan checkpoint, not a vae one; go on training it with 02_train_vae.py --vision vaegan"):
        train_vae.main(["--epochs", "1", "--data-dir", str(tmp_path / "rollout"), "--checkpoint-dir", str(tmp_path)])


def test_the_vae_and_vaegan_share_encoder_and_decoder_shapes():
    vae, gan = ConvVAE(32).state_dict(), VAEGAN(32).state_dict()
    assert {k: v.shape for k, v in vae.items()} == {k: v.shape for k, v in gan.items() if not k.startswith("discriminator.")}


def test_a_tiny_vaegan_goes_through_stages_02_to_05_the_dream_and_the_evaluation(tmp_path, scripts, capsys):
    generate, train_vae, encode, train_rnn, train_controller = scripts
    rollout, series, ckpt = tmp_path / "rollout", tmp_path / "series", tmp_path / "ckpt"
    generate.main(["--episodes", "3", "--max-steps", "40", "--out-dir", str(rollout), "--workers", "1"])
    train_vae.main(["--vision", "vaegan", "--epochs", "2", "--batch-size", "20", "--pixel-warmup-epochs", "1",
                    "--data-dir", str(rollout), "--checkpoint-dir", str(ckpt)])
    log = read_csv(ckpt / "vae_log.csv")
    assert len(log) == 2 and {"train_d_real", "held_out_feature", "train_decoder_updates"} <= set(log[0])
    assert Image.open(ckpt / "vae_curves.png").size == (1000, 320)
    assert type(load_model(ckpt / "vae.pt", VISION)) is VAEGAN
    encode.main(["--rollout-dir", str(rollout), "--series-dir", str(series), "--checkpoint-dir", str(ckpt)])
    train_rnn.main(["--epochs", "1", "--batch-size", "4", "--seq-len", "20", "--series-dir", str(series), "--checkpoint-dir", str(ckpt)])
    common = ["--max-steps", "20", "--workers", "1", "--checkpoint-dir", str(ckpt)]
    train_controller.main(["--generations", "1", "--population", "3", "--episodes-per-candidate", "1", "--check-every", "1",
                           "--check-episodes", "1", *common])
    train_controller.main(["--evaluate", "2", *common])
    assert len(read_csv(ckpt / "evaluation.csv")) == 2 and Image.open(ckpt / "drive_best.gif").n_frames == 10
    train_controller.main(["--dream", "--restart", "--series-dir", str(series), "--generations", "1", "--population", "3",
                           "--episodes-per-candidate", "1", "--check-every", "1", "--check-episodes", "1", "--gif-steps", "4", *common])
    assert Image.open(ckpt / "dream_vs_real.gif").n_frames == 2
