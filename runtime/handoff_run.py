"""A run folder rebuilt in memory for the hand-off, from its checkpoint (no cache needed)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from runtime.errors import RuntimeConfigError
from runtime.inputs import model_path_of
from runtime.models import Built, build_model
from runtime.run_folder import RunConfig, load_run_config, load_weights_into
from runtime.tasks import task_named


@dataclasses.dataclass
class TrainedRun:
    """A run folder rebuilt in memory, without its cache."""

    path: str
    run_config: RunConfig  # RUN/config.json
    built: Built  # best weights loaded, eval mode
    metrics: dict  # RUN/metrics.json ({} if absent)

    @property
    def config(self):
        """The run's TrainConfig."""
        return self.run_config.train

    @property
    def label_names(self) -> list:
        return self.run_config.label_names

    @property
    def pooling(self) -> str:
        """The resolved seq-cls pooling ("pooler" for runs older than the option)."""
        return self.run_config.train.pooling

    @property
    def task(self):
        """The run's Task (runtime.tasks)."""
        return task_named(self.config.task)

    @property
    def stack(self):
        return self.built.model.encoder

    @property
    def remote_code(self) -> bool:
        """True when transformers' own classes cannot express the model (see module doc)."""
        pooled = self.task.pools and self.pooling in ("cls", "mean")
        return pooled or self.stack.adapter_config.has_bottlenecks


def load_trained_run(run: str) -> TrainedRun:
    """Rebuild run folder `run` (config.json, weights.pt) from its checkpoint, no cache needed."""
    saved = load_run_config(run)
    saved = dataclasses.replace(saved, train=dataclasses.replace(saved.train, device="cpu"))
    config, fingerprint = saved.train, saved.cache_fingerprint
    manifest = {"model": fingerprint.get("model"), "layer": fingerprint.get("layer")}
    if manifest["layer"] is None:
        raise RuntimeConfigError(f"{run}/config.json has no cache_fingerprint.layer; the run "
                                 "is from an older version: train it again")
    _check_weights(run, model_path_of(config, manifest), fingerprint)
    built = build_model(config, manifest, saved.label_names)
    weights = load_weights_into(run, built)
    stray = [k for k in weights if not k.startswith(("encoder.layers.", "head."))]
    if stray:
        raise RuntimeConfigError(f"{run}/weights.pt trains {stray[0]!r}, outside the layers and "
                                 "the head; export does not know where it goes in the checkpoint")
    metrics_path = os.path.join(run, "metrics.json")
    metrics = json.loads(Path(metrics_path).read_text()) if os.path.isfile(metrics_path) else {}
    return TrainedRun(run, saved, built, metrics)


def _check_weights(run: str, model_path: str, fingerprint: dict) -> None:
    from export.fingerprint import weights_sha256

    expected = fingerprint.get("weights_sha256")
    if expected and weights_sha256(model_path) != expected:
        raise RuntimeConfigError(f"checkpoint {model_path!r} has other weights than the one run "
                                 f"{run!r} was trained on (weights_sha256 differs); restore it")


# --- the whole model as transformers modules -------------------------------------------------
