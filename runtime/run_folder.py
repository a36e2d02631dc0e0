"""The run folder: what `runtime.train` writes and everything that reads it back.

    config.json      RunConfig: the TrainConfig (pooling resolved, never "auto") plus the label
                     names and the cache fingerprint, saved and loaded as one dataclass
    weights.pt       the trainable parameters (adapters, head, fine-tuned layers) of the best epoch
    checkpoint.pt    the latest epoch's weights, optimizer, schedule, TrainingState and every
                     rank's RNG states
    steps.jsonl      one line per step: loss, cache wait seconds, compute seconds
    metrics.json     test-split metrics of the best epoch plus train_seconds

Files are written to a temporary name and renamed, so a run killed mid-write keeps the last
complete one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import random

import numpy as np
import torch

from runtime import distributed
from runtime.config import TrainConfig
from runtime.errors import RuntimeConfigError

# What a run config.json written before a TrainConfig field existed meant by its absence: the
# fields that shape the model, whose new defaults would build another model than was trained.
LEGACY_DEFAULTS = {"pooling": "pooler", "lora_targets": "attention"}


def recorded_train_fields(saved: dict) -> dict:
    """A recorded TrainConfig's fields as the run used them: a key the record lacks means what
    it meant when the run was made (LEGACY_DEFAULTS: the defaults that have changed since),
    else the field's default (a field added later keeps the old behaviour by default)."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                if f.default is not dataclasses.MISSING}
    return {**defaults, **LEGACY_DEFAULTS, **saved}
FINGERPRINT_KEYS = ("model", "layer", "weights_sha256", "tokenizer_sha256", "dtype",
                    "hidden_size", "max_length", "stride", "corpus")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """RUN/config.json as one typed object. On disk it is flat: the TrainConfig's fields plus
    `label_names` and `cache_fingerprint`, as runs have always written it."""

    train: TrainConfig  # pooling resolved (runtime.pooling.resolve_pooling), never "auto"
    label_names: list
    cache_fingerprint: dict  # the manifest fields the run's cache must still have

    @classmethod
    def of_training(cls, config: TrainConfig, manifest: dict, label_names: list,
                    pooling: str) -> "RunConfig":
        return cls(dataclasses.replace(config, pooling=pooling), list(label_names),
                   {k: manifest.get(k) for k in FINGERPRINT_KEYS})

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self.train), "label_names": self.label_names,
                "cache_fingerprint": self.cache_fingerprint}

    @classmethod
    def from_json(cls, saved: dict, path: str) -> "RunConfig":
        """From a config.json's dict; keys it lacks mean what they meant then (LEGACY_DEFAULTS)."""
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        values = recorded_train_fields(saved)
        try:
            train = TrainConfig(**{k: v for k, v in values.items() if k in fields})
        except TypeError as exc:
            raise RuntimeConfigError(f"{path} does not describe a run ({exc}); the run folder is "
                                     "damaged or from another version: train it again") from None
        return cls(train, list(saved["label_names"]), dict(saved.get("cache_fingerprint") or {}))

    def save(self) -> None:
        write_json(os.path.join(self.train.out, "config.json"), self.to_json())


def load_run_config(run: str) -> RunConfig:
    """RUN/config.json of a finished run folder; refuses a folder that is not one."""
    path = os.path.join(run, "config.json")
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(run, "weights.pt")):
        raise RuntimeConfigError(f"{run!r} is not a finished run folder (config.json and "
                                 "weights.pt expected); pass the --out of `python -m runtime.train`")
    return _read_run_config(path, "train the run again")


def _read_run_config(path: str, remedy: str) -> RunConfig:
    """RunConfig of a config.json; a damaged or foreign one is one error ending in `remedy`."""
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except ValueError as exc:  # half-written, or not UTF-8
        raise RuntimeConfigError(f"{path} is damaged ({exc}); the run did not finish writing "
                                 f"it: {remedy}") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("label_names"), list):
        raise RuntimeConfigError(f"{path} is not a run config (no label_names); {remedy}")
    return RunConfig.from_json(saved, path)


@dataclasses.dataclass
class TrainingState:
    """Where a run is: saved in its checkpoint, so --resume continues from there."""

    epoch: int = 0  # next epoch to run
    best: float = -1.0  # best dev score so far
    bad_epochs: int = 0  # epochs since the dev score last improved
    train_seconds: float = 0.0


def trainable_state(model) -> dict:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {n: t.detach().cpu().clone() for n, t in model.state_dict().items() if n in names}


def save_checkpoint(config, model, optimizer, schedule, state: TrainingState, rank: int,
                    world: int = 1) -> None:
    # Each rank's generators part ways (their batches differ in shape), so every rank's state
    # is kept; rank 0 alone writes. Every rank must call this: the gather is collective.
    rng = distributed.gather(_rng_states(config.device), world)
    if rank != 0:
        return
    path = os.path.join(config.out, "checkpoint.pt")
    torch.save({"weights": trainable_state(model), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "state": dataclasses.asdict(state),
                "rng": rng}, path + ".tmp")
    os.replace(path + ".tmp", path)  # a crash mid-save keeps the previous checkpoint


def load_checkpoint(config, model, optimizer, schedule, rank: int = 0) -> TrainingState:
    path = os.path.join(config.out, "checkpoint.pt")
    if not os.path.isfile(path):
        raise RuntimeConfigError(f"--resume given but {path!r} does not exist; "
                                 "drop --resume to start a new run")
    try:
        ckpt = torch.load(path, weights_only=False)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError):
        raise RuntimeConfigError(f"{path} is truncated or damaged (a run killed while saving "
                                 "it?); drop --resume to start the run again") from None
    model.load_state_dict(ckpt["weights"], strict=False)
    optimizer.load_state_dict(ckpt["optimizer"])
    schedule.load_state_dict(ckpt["schedule"])
    _restore_rng_states(_rank_rng(ckpt["rng"], rank), config.device)
    return TrainingState(**ckpt["state"])


def _rank_rng(saved, rank: int) -> dict:
    # Checkpoints written before every rank's state was kept hold one dict (rank 0's). A run
    # resumed on more ranks than it saved is not bit for bit anyway: its batches are sharded
    # anew; those ranks go on from rank 0's state.
    if isinstance(saved, dict):
        return saved
    return saved[rank] if rank < len(saved) else saved[0]


def _rng_states(device: str) -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
              "python": random.getstate()}
    # Dropout on a GPU draws from that device's generator, not the CPU one: without its state
    # a resumed GPU run drops other units than an uninterrupted one would.
    if torch.device(device).type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _restore_rng_states(states: dict, device: str) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    # A checkpoint of a CPU run resumed on a GPU has no GPU state: that run goes on, seeded
    # as it started, but not bit for bit as an uninterrupted GPU run would.
    if "cuda" in states and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


# What a resumed run may change: where things are and how fast they load. Every other field
# shapes the training, and a run resumed with another value would be half one recipe, half the
# other, under a config.json naming only the second. The cache may move: its fingerprint (part
# of the comparison) says whether it holds the same states.
RESUME_MAY_CHANGE = frozenset({"resume", "overwrite", "out", "cache", "device", "prefetch_depth"})


def check_resumable(run: RunConfig) -> None:
    """Refuse --resume when RUN/config.json was written for other settings than `run`'s."""
    path = os.path.join(run.train.out, "config.json")
    if not os.path.isfile(path):
        raise RuntimeConfigError(f"--resume given but {path!r} does not exist; drop --resume "
                                 "to start a new run")
    old = _read_run_config(path, "drop --resume to start the run again").to_json()
    changed = changed_settings(old, run.to_json())
    if changed:
        raise RuntimeConfigError(f"--resume: {run.train.out!r} was trained with "
                                 f"{', '.join(changed)}; a resumed run keeps its own settings: "
                                 "drop the changed options, or start a new run in another --out")


def changed_settings(old: dict, new: dict, unchecked: frozenset = frozenset()) -> list:
    """'key=old (now new)' for each setting of config.json `old` that `new` changes and a
    resumed run may not (RESUME_MAY_CHANGE and `unchecked` are left out)."""
    return [f"{k}={_shown(old.get(k))} (now {_shown(new.get(k))})"
            for k in sorted(set(old) | set(new))
            if k not in RESUME_MAY_CHANGE | unchecked and old.get(k) != new.get(k)]


def read_train_config(run: str, remedy: str) -> TrainConfig:
    """The TrainConfig RUN/config.json was trained with (pooling resolved); a damaged one is one
    error ending in `remedy`."""
    return _read_run_config(os.path.join(run, "config.json"), remedy).train


def _shown(value) -> str:
    return "default" if value is None else json.dumps(value)  # None is each field's default


def prepare_run_folder(config: TrainConfig) -> None:
    """Refuse a folder holding another task's run, or a finished run, unless told otherwise."""
    path = os.path.join(config.out, "config.json")
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                old = json.load(f)
        except ValueError:
            raise RuntimeConfigError(f"{path} is damaged (half-written?); pick another --out or "
                                     "delete that run folder") from None
        if not isinstance(old, dict):
            old = {}
        if old.get("task") != config.task:
            raise RuntimeConfigError(
                f"run folder {config.out!r} holds a {old.get('task')!r} run, not {config.task!r}; "
                "pick another --out")
        done = os.path.isfile(os.path.join(config.out, "metrics.json"))
        if done and not (config.resume or config.overwrite):
            raise RuntimeConfigError(f"run folder {config.out!r} already holds a finished run; "
                                     "pick another --out, or pass --overwrite to replace it")
    os.makedirs(config.out, exist_ok=True)
    if not config.resume:
        for name in ("steps.jsonl", "metrics.json"):
            if os.path.exists(os.path.join(config.out, name)):
                os.remove(os.path.join(config.out, name))


def write_json(path: str, obj: dict) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(path + ".tmp", path)


def _load_weights(run: str) -> dict:
    path = os.path.join(run, "weights.pt")
    try:
        weights = torch.load(path, weights_only=True, map_location="cpu")
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as exc:
        reason = " ".join(str(exc).split())[:120]
        raise RuntimeConfigError(f"{path} cannot be loaded ({reason}); it is truncated or "
                                 "damaged: train the run again") from None
    if not isinstance(weights, dict):
        raise RuntimeConfigError(f"{path} does not hold a state dict; train the run again")
    return weights


def load_weights_into(run: str, built) -> dict:
    """Load RUN/weights.pt into `built.model` (eval mode); refuse weights that miss a trained
    parameter. Returns the loaded state dict."""
    weights = _load_weights(run)
    missing = [n for n, p in built.model.named_parameters() if p.requires_grad and n not in weights]
    if missing:
        raise RuntimeConfigError(f"{run}/weights.pt lacks {missing[0]!r}; the run folder is "
                                 "incomplete or from another version: train it again")
    built.model.load_state_dict(weights, strict=False)
    built.model.eval()
    return weights


# What a run config.json written before a TrainConfig field existed meant by its absence: the
# fields that shape the model, whose new defaults would build another model than was trained.


def check_fingerprint(run: str, saved: dict, manifest: dict) -> None:
    for key in ("weights_sha256", "layer", "tokenizer_sha256"):
        if saved.get(key) is not None and manifest.get(key) != saved[key]:
            raise RuntimeConfigError(
                f"the cache's {key} ({manifest.get(key)}) differs from the one run {run!r} was "
                f"trained on ({saved[key]}); pass --cache with the cache the run was trained on")
