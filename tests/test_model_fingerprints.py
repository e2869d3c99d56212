"""Stale latents and mismatched models: series files, M and C record the fingerprints of the
models they were made from; 03 encodes again what another V encoded, and 04 and 05 refuse
V, M and C that do not belong together, with one line naming the stage to re-run."""

import shutil

import torch
from helpers import save_untrained_models, stage_error, untrained_vae, write_random_rollouts, write_random_series

from worldmodels.checkpoints import fingerprint, load_model, save_model
from worldmodels.episodes import list_episodes, read_initial_latents, read_series
from worldmodels.mdrnn import MDNRNN
from worldmodels.vision import ConvVAE

COLLECT, TRAIN_V, ENCODE, TRAIN_M, TRAIN_C = range(5)


def _another_vae(z_size: int = 32) -> ConvVAE:
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return ConvVAE(z_size)


def _search_args(ckpt, generations: int = 1) -> list[str]:
    return ["--generations", str(generations), "--population", "2", "--episodes-per-candidate", "1", "--max-steps", "5",
            "--check-every", "1", "--check-episodes", "1", "--workers", "1", "--checkpoint-dir", str(ckpt)]


def test_fingerprints_follow_the_weights_not_the_file(tmp_path):
    vae = untrained_vae()
    save_model(tmp_path / "a.pt", "vae", vae)
    save_model(tmp_path / "b.pt", "vae", vae, made_from={"x": "y"}, epoch=3)
    assert fingerprint(load_model(tmp_path / "a.pt", "vae")) == fingerprint(load_model(tmp_path / "b.pt", "vae")) == fingerprint(vae)
    assert fingerprint(_another_vae()) != fingerprint(vae)


def test_stage_03_encodes_again_what_another_v_encoded(tmp_path, scripts, capsys):
    write_random_rollouts(tmp_path / "rollout", episodes=3, steps=6)
    argv = ["--rollout-dir", str(tmp_path / "rollout"), "--series-dir", str(tmp_path / "series"), "--checkpoint-dir", str(tmp_path / "ckpt")]
    save_model(tmp_path / "ckpt" / "vae.pt", "vae", untrained_vae())
    scripts[ENCODE].main(argv)
    scripts[ENCODE].main(argv)
    assert "encoding 0 of 3 episodes" in capsys.readouterr().out  # nothing to do for the same V
    retrained = _another_vae()
    save_model(tmp_path / "ckpt" / "vae.pt", "vae", retrained)  # V retrained since
    scripts[ENCODE].main(argv)
    printed = capsys.readouterr().out
    assert "encoding 3 of 3 episodes" in printed and "3 encoded by another V are encoded again" in printed
    for path in list_episodes(tmp_path / "series"):
        assert read_series(path)["vae"] == fingerprint(retrained)
    assert read_initial_latents(tmp_path / "series" / "initial_latents.npz", 32, fingerprint(retrained))["mu"].shape == (3, 32)


def test_stage_04_refuses_series_of_another_v_than_its_folders(tmp_path, scripts):
    write_random_series(tmp_path / "series", episodes=2, steps=10)  # encoded by the untrained V
    save_model(tmp_path / "ckpt" / "vae.pt", "vae", _another_vae())
    message = stage_error(scripts[TRAIN_M], ["--series-dir", str(tmp_path / "series"), "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert f"series: encoded by V {fingerprint(untrained_vae())}, but {tmp_path / 'ckpt' / 'vae.pt'} is another V; " \
           "re-run 03_generate_rnn_data.py with it first" in message


def test_stage_04_does_not_resume_an_m_trained_on_another_vs_latents(tmp_path, scripts):
    argv = ["--epochs", "1", "--batch-size", "2", "--seq-len", "5", "--hidden-size", "8", "--series-dir", str(tmp_path / "series"),
            "--checkpoint-dir", str(tmp_path / "ckpt")]
    write_random_series(tmp_path / "series", episodes=2, steps=10, vae="aaaaaaaaaaaa")
    scripts[TRAIN_M].main(argv)
    write_random_series(tmp_path / "series", episodes=2, steps=10, vae="bbbbbbbbbbbb")  # encoded again by a new V
    message = stage_error(scripts[TRAIN_M], argv[:1] + ["2"] + argv[2:])
    assert "mdrnn.pt: trained on data from other models (vae aaaaaaaaaaaa not bbbbbbbbbbbb); pass --restart" in message
    scripts[TRAIN_M].main(argv + ["--restart"])
    assert load_model(tmp_path / "ckpt" / "mdrnn.pt", "mdrnn").made_from == {"vae": "bbbbbbbbbbbb"}


def test_stage_05_refuses_an_m_made_for_another_v(tmp_path, scripts):
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)
    save_model(ckpt / "vae.pt", "vae", _another_vae())  # V retrained; M not
    message = stage_error(scripts[TRAIN_C], _search_args(ckpt))
    assert f"mdrnn.pt: made from other models than these (vae {fingerprint(untrained_vae())} not {fingerprint(_another_vae())}); " \
           "M was trained on another V's latents: re-run 03_generate_rnn_data.py and 04_train_rnn.py" in message


def test_stage_05_refuses_a_controller_or_search_made_for_another_m(tmp_path, scripts):
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)
    scripts[TRAIN_C].main(_search_args(ckpt))
    shutil.copytree(ckpt, tmp_path / "first")
    vae_id = fingerprint(untrained_vae())
    save_model(ckpt / "mdrnn.pt", "mdrnn", MDNRNN(hidden_size=32), made_from={"vae": vae_id})  # M retrained, same sizes
    message = stage_error(scripts[TRAIN_C], ["--evaluate", "1", "--max-steps", "5", "--checkpoint-dir", str(ckpt)])
    assert "controller.pt: made for other models than these (mdrnn" in message and "05_train_controller.py --restart" in message
    message = stage_error(scripts[TRAIN_C], _search_args(ckpt, 2))
    assert "cma_state.npz: started with other settings (M " in message and "pass --restart" in message
    # a controller of other models of the same sizes may start a new search
    scripts[TRAIN_C].main(_search_args(ckpt) + ["--restart", "--init-from", str(tmp_path / "first" / "controller.pt")])


def test_dreams_refuse_first_latents_of_another_v(tmp_path, scripts):
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=6)
    save_model(tmp_path / "other" / "vae.pt", "vae", _another_vae())
    scripts[ENCODE].main(["--rollout-dir", str(tmp_path / "rollout"), "--series-dir", str(tmp_path / "series"),
                          "--checkpoint-dir", str(tmp_path / "other")])
    message = stage_error(scripts[TRAIN_C], _search_args(ckpt) + ["--dream", "--series-dir", str(tmp_path / "series")])
    assert f"initial_latents.npz: encoded by V {fingerprint(_another_vae())}, but M was trained on V " \
           f"{fingerprint(untrained_vae())}'s latents; re-run 03_generate_rnn_data.py with the V that M was trained on" in message


def test_a_new_m_can_start_from_an_m_of_another_vs_latents(tmp_path, scripts, capsys):
    argv = lambda series, ckpt: ["--epochs", "1", "--batch-size", "2", "--seq-len", "5", "--hidden-size", "8",
                                 "--series-dir", str(tmp_path / series), "--checkpoint-dir", str(tmp_path / ckpt)]
    write_random_series(tmp_path / "old", episodes=2, steps=10, vae="aaaaaaaaaaaa")
    write_random_series(tmp_path / "new", episodes=2, steps=10, vae="bbbbbbbbbbbb")
    scripts[TRAIN_M].main(argv("old", "round1"))
    scripts[TRAIN_M].main(argv("new", "round2") + ["--init-from", str(tmp_path / "round1" / "mdrnn.pt")])
    assert f"starting from the weights of {tmp_path / 'round1' / 'mdrnn.pt'}" in capsys.readouterr().out
    assert load_model(tmp_path / "round2" / "mdrnn.pt", "mdrnn").made_from == {"vae": "bbbbbbbbbbbb"}
    other_size = [a.replace("8", "16") if a == "8" else a for a in argv("new", "round3")]  # --hidden-size 16
    message = stage_error(scripts[TRAIN_M], other_size + ["--init-from", str(tmp_path / "round1" / "mdrnn.pt")])
    assert "round1/mdrnn.pt: built with hidden_size=8, not hidden_size=16; choose a --init-from built the same way" in message
