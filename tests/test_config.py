"""Profiles, --set parsing, validation messages."""
from __future__ import annotations

import pytest
import torch

from kdcal import config
from kdcal.config import PROFILES, ConfigError, StudyConfig, parse_sets, resolve
from kdcal.models import count_params

HAS_CUDA = torch.cuda.is_available()


def test_resolve_smoke():
    cfg = resolve("smoke")
    assert isinstance(cfg, StudyConfig)
    assert cfg.dataset == "synthetic" and cfg.teachers == ["resnet8", "resnet14"]
    assert cfg.seeds == [0, 1] and cfg.device == "cpu"
    assert cfg.to_dict()["teachers"] == ["resnet8", "resnet14"]


def test_unknown_profile_lists_valid():
    with pytest.raises(ConfigError) as info:
        resolve("fast")
    msg = str(info.value)
    assert "fast" in msg and "quick" in msg and "smoke" in msg


def test_unknown_key_lists_valid():
    with pytest.raises(ConfigError) as info:
        resolve("smoke", {"learning_rate": "0.1"})
    msg = str(info.value)
    assert "learning_rate" in msg and "lr" in msg and "teachers" in msg


@pytest.mark.parametrize("key,value", [
    ("lr", "abc"),             # not a number
    ("lr", "-1"),              # out of range
    ("lr", "0"),               # open interval
    ("alpha", "2"),
    ("tau", "0"),
    ("seeds", "[-1]"),
    ("seeds", "0,0"),          # duplicates
    ("val_size", "0"),
    ("batch_size", "0"),
    ("teacher_epochs", "1.5"),  # wrong type
    ("augment", "maybe"),
    ("teachers", "resnet9"),   # unknown architecture
    ("teachers", "resnet8,resnet8"),
    ("student", "resnet7"),
    ("modes", "calibrated"),   # unknown mode
    ("dataset", "mnist"),
    ("schedule", "linear"),
    ("milestones", "[5,3]"),
    ("val_size", "600"),       # >= synthetic_train in smoke
])
def test_bad_values_name_the_offender(key, value):
    with pytest.raises(ConfigError) as info:
        resolve("smoke", {key: value})
    msg = str(info.value)
    offender = {"teachers": value.split(",")[0], "student": value, "modes": value,
                "dataset": value, "schedule": value}.get(key, key)
    assert offender in msg


def test_device_cuda_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="cuda"):
        resolve("smoke", {"device": "cuda"})


def test_parse_sets():
    sets = parse_sets(["seeds=0,1", "teachers=resnet8,resnet20", "tau=2", "augment=True",
                       " lr = 0.05 "])
    assert sets == {"seeds": "0,1", "teachers": "resnet8,resnet20", "tau": "2",
                    "augment": "True", "lr": "0.05"}
    cfg = resolve("quick", sets)
    assert cfg.seeds == [0, 1]
    assert cfg.teachers == ["resnet8", "resnet20"]
    assert cfg.tau == 2.0 and isinstance(cfg.tau, float)
    assert cfg.augment is True
    assert cfg.lr == 0.05
    assert parse_sets(None) == {} and parse_sets([]) == {}
    assert parse_sets(["note=a=b"]) == {"note": "a=b"}


def test_parse_sets_single_and_list_literals():
    cfg = resolve("smoke", parse_sets(["seeds=3", "teachers=resnet20", "modes=['compose']",
                                       "milestones=[1]"]))
    assert cfg.seeds == [3] and cfg.teachers == ["resnet20"] and cfg.modes == ["compose"]
    assert cfg.milestones == [1]


def test_parse_sets_needs_equals():
    with pytest.raises(ConfigError, match="key=value"):
        parse_sets(["seeds"])


def test_typed_values_pass_through():
    cfg = resolve("smoke", {"seeds": [4, 5], "lr": 1, "augment": False})
    assert cfg.seeds == [4, 5] and cfg.lr == 1.0 and isinstance(cfg.lr, float)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_profile_resolves(profile):
    needs_cuda = PROFILES[profile].get("device") == "cuda"
    if needs_cuda and not HAS_CUDA:
        with pytest.raises(ConfigError, match="cuda"):
            resolve(profile)
    else:
        cfg = resolve(profile)
        assert cfg.dataset == PROFILES[profile]["dataset"]


@pytest.mark.parametrize("profile", [p for p, v in PROFILES.items() if v.get("device") == "cuda"])
def test_cuda_profiles_resolve_on_cpu_with_override(profile):
    cfg = resolve(profile, {"device": "cpu"})
    assert cfg.device == "cpu"


def test_quick_profile_spans_model_sizes():
    cfg = resolve("quick")
    assert len(cfg.teachers) >= 4 and len(cfg.seeds) >= 3
    params = [count_params(t, in_channels=1, num_classes=10) for t in cfg.teachers]
    assert max(params) >= 8 * min(params)
    assert cfg.student in config.ARCHS


def test_to_json_roundtrip():
    import json

    cfg = resolve("smoke")
    assert json.loads(cfg.to_json()) == cfg.to_dict()


def test_calibrator_target_modes_need_the_calibrator_and_fixed_inputs():
    cfg = resolve("quick", {"modes": ["uncalibrated", "cal-histogram"]})
    assert cfg.modes == ["uncalibrated", "cal-histogram"]
    with pytest.raises(ConfigError, match="mode='cal-isotonic' is not valid"):
        resolve("quick", {"modes": ["cal-isotonic"]})  # isotonic is not among quick's calibrators
    with pytest.raises(ConfigError, match="needs augment=false"):
        resolve("quick", {"modes": ["cal-histogram"], "augment": True})


def test_compile_mode_is_checked_and_never_enters_run_ids():
    from kdcal import study

    with pytest.raises(ConfigError, match="^compile_mode='graphs' is not valid; valid: default, "
                                          "reduce-overhead, max-autotune$"):
        resolve("smoke", {"compile_mode": "graphs"})
    plain = resolve("smoke")
    graphs = resolve("smoke", {"compile": True, "compile_mode": "reduce-overhead"})
    assert study.engine_for(graphs).compile_mode == "reduce-overhead"
    assert study.teacher_runs(plain) == study.teacher_runs(graphs)
