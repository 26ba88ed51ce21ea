"""The study's design as the issue on inference asks: seeds are independent reruns."""
import pytest

from kdcal import config, study
from kdcal.data import noisy_labels
from kdcal.train import make_engine
import torch


@pytest.fixture
def engine():
    return make_engine("cpu", "off")


def test_teachers_never_start_from_a_students_weights(engine):
    cfg = config.resolve("smoke")
    for seed in cfg.seeds:
        rc = study.teacher_run_config(cfg, "resnet8", seed, engine)
        assert rc["init_seed"] == study.teacher_seed(seed)
        assert study.teacher_seed(seed) not in cfg.seeds  # students seed with `seed` itself


def test_split_follows_the_seed_when_asked(engine):
    cfg = config.resolve("smoke", {"split_per_seed": "true"})
    splits = {study.student_run_config(cfg, s, "baseline", None, None, engine)["data"]["split_seed"]
              for s in cfg.seeds}
    assert splits == {cfg.split_seed + s for s in cfg.seeds}
    shared = config.resolve("smoke", {"split_per_seed": "false"})
    assert {study.student_run_config(shared, s, "baseline", None, None, engine)["data"]["split_seed"]
            for s in shared.seeds} == {shared.split_seed}
    a, b = (study.load_splits(study.for_seed(cfg, s), engine) for s in cfg.seeds)
    assert not torch.equal(a.val_x, b.val_x)  # different validation images per seed


def test_label_noise_is_drawn_per_seed():
    cfg = config.resolve("smoke", {"label_noise": "0.2"})
    draws = {study.label_noise_seed(cfg, s) for s in (0, 1, 2)}
    assert len(draws) == 3
    y = torch.arange(10).repeat(20)
    flips = [noisy_labels(y, 0.2, 10, d) for d in sorted(draws)]
    assert not torch.equal(flips[0], flips[1])


def test_paper_and_evidence_profiles_use_independent_splits():
    for name in ("quick", "evidence", "paper-fmnist", "paper-cifar10", "paper-cifar100",
                 "tutorial", "regimes-full"):
        assert config.PROFILES[name]["split_per_seed"], name
    ev = config.resolve("evidence")
    from kdcal.models import count_params

    sizes = [count_params(a, 1, 10) for a in ev.teachers]
    assert len(ev.teachers) >= 6 and max(sizes) / min(sizes) >= 20 and len(ev.seeds) >= 5
    assert ev.tau_grid and not ev.control_seeds  # the tau control on every seed
