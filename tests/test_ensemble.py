"""Several Ms: 04 --member trains ensemble members beside M; 05 --dream --members dreams in all
of them and charges for their disagreement; members must belong with this V and with the search."""

from helpers import models_and_series, stage_error, untrained_vae, write_random_series

from worldmodels.checkpoints import fingerprint, load_model, save_model
from worldmodels.evolution import STATE_FILE
from worldmodels.mdrnn import MDNRNN

COLLECT, TRAIN_V, ENCODE, TRAIN_M, TRAIN_C = range(5)


def _train_m(tmp_path, member: int) -> list[str]:
    return ["--epochs", "1", "--batch-size", "2", "--seq-len", "5", "--hidden-size", "32", "--series-dir", str(tmp_path / "series"),
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--member", str(member)]


def _dream_search(tmp_path, *extra: str) -> list[str]:
    return ["--dream", "--series-dir", str(tmp_path / "series"), "--generations", "1", "--population", "2",
            "--episodes-per-candidate", "1", "--max-steps", "5", "--check-every", "1", "--check-episodes", "1", "--workers", "1",
            "--checkpoint-dir", str(tmp_path / "ckpt"), *extra]


def test_members_train_beside_m_from_their_own_seeds(tmp_path, scripts):
    write_random_series(tmp_path / "series", episodes=3, steps=12)
    for member in (0, 1, 2):
        scripts[TRAIN_M].main(_train_m(tmp_path, member))
    ckpt = tmp_path / "ckpt"
    assert {p.name for p in ckpt.glob("*_log.csv")} == {"mdrnn_log.csv", "mdrnn_member1_log.csv", "mdrnn_member2_log.csv"}
    assert (ckpt / "mdrnn_member1_curves.png").exists()
    models = [load_model(ckpt / name, "mdrnn") for name in ("mdrnn.pt", "mdrnn_member1.pt", "mdrnn_member2.pt")]
    assert len({fingerprint(m) for m in models}) == 3  # other seeds, other weights
    assert all(m.made_from == {"vae": fingerprint(untrained_vae())} for m in models)


def test_a_dream_search_runs_in_an_ensemble_and_records_its_members(tmp_path, scripts, capsys):
    models_and_series(tmp_path, scripts[ENCODE])
    vae_id = fingerprint(untrained_vae())
    save_model(tmp_path / "ckpt" / "mdrnn_member1.pt", "mdrnn", MDNRNN(hidden_size=16), made_from={"vae": vae_id})
    scripts[TRAIN_C].main(_dream_search(tmp_path, "--members", "2", "--disagreement", "1.0"))
    assert "of M and 1 members (reward: mean - 1.0 x std)" in capsys.readouterr().out
    assert (tmp_path / "ckpt" / STATE_FILE).exists()
    # the member retrained since: the search it steered is not resumed with another
    save_model(tmp_path / "ckpt" / "mdrnn_member1.pt", "mdrnn", MDNRNN(hidden_size=8), made_from={"vae": vae_id})
    message = stage_error(scripts[TRAIN_C], _dream_search(tmp_path, "--members", "2", "--disagreement", "1.0", "--generations", "2"))
    assert "cma_state.npz: started with other settings (--members " in message and "pass --restart" in message


def test_a_dream_search_charges_for_z_disagreement_above_the_recorded_episodes_quantile(tmp_path, scripts, capsys):
    models_and_series(tmp_path, scripts[ENCODE])
    save_model(tmp_path / "ckpt" / "mdrnn_member1.pt", "mdrnn", MDNRNN(hidden_size=16), made_from={"vae": fingerprint(untrained_vae())})
    scripts[TRAIN_C].main(_dream_search(tmp_path, "--members", "2", "--z-disagreement", "50", "--z-quantile", "0.5"))
    assert " - 50 x max(0, their z disagreement - 0." in capsys.readouterr().out
    message = stage_error(scripts[TRAIN_C], _dream_search(tmp_path, "--members", "2", "--z-disagreement", "50", "--generations", "2"))
    assert "cma_state.npz: started with other settings (--z-disagreement and --z-quantile " in message  # another quantile, another threshold


def test_dreams_refuse_missing_members_and_members_of_another_v(tmp_path, scripts):
    models_and_series(tmp_path, scripts[ENCODE])
    message = stage_error(scripts[TRAIN_C], _dream_search(tmp_path, "--members", "2"))
    assert "mdrnn_member1.pt: not found; train it with 04_train_rnn.py --member 1 (or use fewer --members)" in message
    save_model(tmp_path / "ckpt" / "mdrnn_member1.pt", "mdrnn", MDNRNN(hidden_size=32), made_from={"vae": "aaaaaaaaaaaa"})
    message = stage_error(scripts[TRAIN_C], _dream_search(tmp_path, "--members", "2"))
    assert "mdrnn_member1.pt: made from other models than these" in message and "--member 1 on this V's series" in message

