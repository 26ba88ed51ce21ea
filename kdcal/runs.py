"""What a run is, shared by every stage: a seed's config and split, the engine, the recipes, the
run configs and ids of the teachers, and how a trained model is finished (logits, metrics) and
loaded back. The stage modules (teachers, teacher_calibration, students, results) build on it.
"""
from __future__ import annotations

import dataclasses
import json
from functools import lru_cache

import torch

from . import budget, metrics
from .config import StudyConfig, training_threads
from .data import Splits, load_dataset, make_splits
from .models import build_model, forward_macs
from .store import Study, atomic_torch_save, run_id, safe_torch_load, save_arrays, write_json
from .train import Engine, Recipe, make_engine, predict

# ---------------------------------------------------------------- shared set-up
def data_config(cfg: StudyConfig) -> dict:
    keys = ["dataset", "train_size", "val_size", "test_size", "split_seed"]
    if cfg.dataset == "synthetic":
        keys += ["synthetic_size", "synthetic_train", "synthetic_test", "synthetic_channels",
                 "synthetic_classes"]
    return {k: getattr(cfg, k) for k in keys}


# Teachers start from other weights, and see batches in another order, than the students of
# the same seed: the resnet8 teacher must not be its own student's starting point.
TEACHER_SEED_OFFSET = 10_000


def teacher_seed(seed: int) -> int:
    """The initialisation and batch-order seed of the teachers of study seed ``seed``."""
    return seed + TEACHER_SEED_OFFSET


def for_seed(cfg: StudyConfig, seed: int) -> StudyConfig:
    """The config as seen by one seed: its own split when ``split_per_seed`` is on."""
    if not cfg.split_per_seed:
        return cfg
    return dataclasses.replace(cfg, split_seed=cfg.split_seed + seed, split_per_seed=False)


def label_noise_seed(cfg: StudyConfig, seed: int) -> int:
    """Each seed draws its own noisy labels (a seed is an independent rerun)."""
    return cfg.split_seed * 100_003 + seed


def teacher_data_config(cfg: StudyConfig) -> dict:
    """The teachers' data: label noise enters only when on, so existing run ids stay."""
    return {**data_config(cfg), **({"label_noise": cfg.label_noise, "noise_draw": "per-seed"}
                                   if cfg.label_noise else {})}


def student_data_config(cfg: StudyConfig) -> dict:
    """The students' data: a transfer split, when on, replaces the teachers' training images."""
    return {**data_config(cfg), **({"transfer_size": cfg.transfer_size} if cfg.transfer_size else {})}


@lru_cache(maxsize=2)
def _splits(data_json: str, root: str, download: bool, device: str) -> Splits:
    d = json.loads(data_json)
    if d["dataset"] == "synthetic":
        ds = load_dataset("synthetic", n_train=d["synthetic_train"], n_test=d["synthetic_test"],
                          size=d["synthetic_size"], channels=d["synthetic_channels"],
                          num_classes=d["synthetic_classes"], seed=d["split_seed"])
    else:
        ds = load_dataset(d["dataset"], root or None, download)
    return make_splits(ds, d["val_size"], d["split_seed"], d["train_size"], d["test_size"], device,
                       d.get("transfer_size", 0))


def load_splits(cfg: StudyConfig, engine: Engine | None = None) -> Splits:
    engine = engine or engine_for(cfg)
    return _splits(json.dumps(student_data_config(cfg), sort_keys=True), cfg.data_root, cfg.download,
                   str(engine.device))


def engine_for(cfg: StudyConfig) -> Engine:
    if training_threads(cfg):
        torch.set_num_threads(training_threads(cfg))
    return make_engine(cfg.device, cfg.amp, cfg.channels_last, cfg.compile, cfg.pack_students,
                       cfg.compile_mode)


def amp_name(engine: Engine) -> str:
    return "bf16" if engine.amp_dtype is torch.bfloat16 else "fp32"


def teacher_recipe(cfg: StudyConfig) -> Recipe:
    decay = cfg.weight_decay if cfg.teacher_weight_decay < 0 else cfg.teacher_weight_decay
    return Recipe(cfg.teacher_epochs, cfg.batch_size, cfg.lr, cfg.momentum, decay,
                  cfg.schedule, list(cfg.milestones), cfg.gamma, cfg.augment)


def student_recipe(cfg: StudyConfig) -> Recipe:
    return Recipe(budget.student_epochs(cfg), cfg.student_batch_size or cfg.batch_size, cfg.student_lr, cfg.momentum,
                  cfg.weight_decay, cfg.schedule, list(cfg.student_milestones), cfg.gamma,
                  cfg.augment)


def recipe_config(recipe: Recipe) -> dict:
    """The recipe as it enters run ids. Options added later are left out at their default
    (off), so adding an option never changes the ids, nor reruns, of existing studies."""
    config = dict(vars(recipe))
    for key in ("mixup_alpha", "stop_epoch"):
        if not config[key]:
            del config[key]
    return config


def teacher_run_config(cfg: StudyConfig, arch: str, seed: int, engine: Engine) -> dict:
    cfg = for_seed(cfg, seed)
    return {"role": "teacher", "arch": arch, "seed": seed, "init_seed": teacher_seed(seed),
            "data": teacher_data_config(cfg),
            "recipe": recipe_config(teacher_recipe(cfg)), "amp": amp_name(engine),
            **({"norm": cfg.teacher_norm} if cfg.teacher_norm != "batch" else {})}


def teacher_runs(cfg: StudyConfig, engine: Engine | None = None) -> list[tuple[str, str, int]]:
    """(run id, arch, seed) of every teacher the config asks for."""
    engine = engine or engine_for(cfg)
    return [(run_id("teacher", f"{a}-s{s}", teacher_run_config(cfg, a, s, engine)), a, s)
            for s in cfg.seeds for a in cfg.teachers]


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)

@lru_cache(maxsize=None)
def relative_macs(arch: str) -> int:
    """Forward multiply-accumulates on a 28x28 grey image: only the ratios between archs matter."""
    return forward_macs(arch, 1, 10, 28)


def training_cost(arch: str, epochs: int, models: int = 1) -> float:
    """Relative work of training ``models`` copies of ``arch`` for ``epochs`` (task ordering)."""
    return float(relative_macs(arch) * epochs * models)


def train_checkpoint(rid: str) -> str:
    """A teacher's epoch checkpoint, relative to the study folder."""
    return f"runs/{rid}/train.pt"

def finish_model(study: Study, rid: str, model, splits: Splits, engine: Engine,
                  cfg: StudyConfig, info: dict, keep_train_logits: bool = False,
                  teacher_logits: dict | None = None) -> dict:
    run = study.run_dir(rid)
    logits = {"val": predict(model, splits.val_x, splits, engine, cfg.eval_batch_size),
              "test": predict(model, splits.test_x, splits, engine, cfg.eval_batch_size)}
    if keep_train_logits:
        logits["train"] = predict(model, splits.train_x, splits, engine, cfg.eval_batch_size)
    model_cpu = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"model": model_cpu, "arch": info["arch"], "norm": getattr(model, "norm", "batch")},
                      run / "model.pt")
    labels = {"val_labels": splits.val_y.cpu(), "test_labels": splits.test_y.cpu()}
    if keep_train_logits:  # the (clean) labels of the images students learn from
        labels["train_labels"] = splits.train_y.cpu()
    save_arrays({**{f"{k}_logits": v for k, v in logits.items()}, **labels}, run / "logits.npz")
    test_y = splits.test_y.cpu()
    row = {**info, "run_id": rid, **metrics.summarize(logits["test"], test_y, cfg.ece_bins),
           "val_acc": metrics.accuracy(logits["val"], splits.val_y.cpu())}
    if keep_train_logits:  # does the teacher fit its training set, and how confidently?
        train = metrics.summarize(logits["train"], labels["train_labels"], cfg.ece_bins)
        row.update({f"train_{k}": train[k] for k in ("acc", "ece", "nll")})
    if teacher_logits is not None:
        row["agreement"] = metrics.agreement(logits["test"], teacher_logits["test"])
        row["kl_teacher"] = metrics.kl_teacher_student(logits["test"], teacher_logits["test"])
    write_json(row, run / "metrics.json")  # written last: marks the run done
    (run / "train.pt").unlink(missing_ok=True)
    return row

def load_model(study: Study, rid: str, splits: Splits) -> torch.nn.Module:
    """A finished run's model, rebuilt from its checkpoint (weights only, no pickle)."""
    state = safe_torch_load(study.run_dir(rid) / "model.pt")
    model = build_model(state["arch"], splits.in_channels, splits.num_classes,
                        state.get("norm", "batch"))
    model.load_state_dict(state["model"])
    return model
