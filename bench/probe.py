"""The linear probe: logistic regression on frozen final-layer states, the floor a recipe must beat.

For seq-cls the features are the mean of the real tokens' final-layer states (what a
sentence-transformers checkpoint was trained to produce); for token-cls, each labelled token's
final-layer state. Final-layer states come from the cache through the frozen upper stack
(`runtime.load_upper`), so the probe sees exactly what a recycled run starts from.

The classifier is multinomial logistic regression fitted full-batch with L-BFGS
(`runtime.head_init.fit_linear`, what `--head-init probe` starts a run's head from); its L2
strength is chosen on the dev split's metric from the same grid, then the test split is scored
with the same metric functions as `runtime.train` (accuracy / entity F1).
"""
from __future__ import annotations

import numpy as np
import torch

from runtime.head_init import L2_GRID, fit_linear


@torch.no_grad()
def final_states(reader, upper, keys: list, device: str = "cpu") -> dict:
    """key -> float32 [T, H] final-layer states of each cached record."""
    out = {}
    for key in keys:
        # An fp32 cache stored raw reads as a read-only view of the mmap, which torch warns
        # about; copy only then.
        stored = np.require(reader.get(key), np.float32, ["C", "W"])
        hidden = torch.from_numpy(stored).to(device)[None]  # (1, T, H)
        mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=device)  # (1, T)
        out[key] = upper(hidden, mask)[0].float().cpu().numpy()
    return out


def features(task: str, examples: list, states: dict):
    """(X [n, H], y [n]) for seq-cls (mean-pooled) or token-cls (labelled tokens)."""
    from runtime.tasks import task_named

    if not task_named(task).per_token:
        x = np.stack([states[e.key].mean(axis=0) for e in examples])
        return x, np.array([e.target for e in examples], dtype=np.int64)
    xs, ys = [], []
    for e in examples:
        keep = np.asarray(e.target) >= 0
        xs.append(states[e.key][keep])
        ys.append(np.asarray(e.target)[keep])
    return np.concatenate(xs), np.concatenate(ys)


def fit_logistic(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float,
                 steps: int = 200) -> torch.nn.Linear:
    """Multinomial logistic regression on standardised features (L-BFGS, full batch)."""
    return fit_linear(torch.from_numpy(x).float(), torch.from_numpy(y), num_classes, l2,
                      steps=steps)


def probe(task: str, data, states: dict, train: list, dev: list, test: list) -> dict:
    """Fit on `train`, pick L2 on `dev`, score `test`; returns {"l2", "dev", "test"}."""
    x, y = features(task, train, states)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6  # standardise with train statistics only
    best = None
    for l2 in L2_GRID:
        linear = fit_logistic((x - mean) / std, y, len(data.label_names), l2)
        score = _score(task, data, linear, dev, states, mean, std)
        if best is None or score > best[1]:
            best = (l2, score, linear)
    l2, dev_score, linear = best
    return {"l2": l2, "dev": dev_score, "test": _score(task, data, linear, test, states, mean, std)}


@torch.no_grad()
def _score(task, data, linear, examples, states, mean, std) -> float:
    from runtime import metrics

    def predict(x):
        return linear(torch.from_numpy((x - mean) / std).float()).argmax(-1).numpy()

    from runtime.tasks import task_named

    if not task_named(task).per_token:
        x, y = features(task, examples, states)
        return metrics.accuracy(list(y), list(predict(x)))
    names = data.label_names
    gold, pred = [], []
    for e in examples:
        keep = np.asarray(e.target) >= 0
        gold.append([names[i] for i in np.asarray(e.target)[keep]])
        pred.append([names[i] for i in predict(states[e.key][keep])])
    return metrics.entity_f1(gold, pred)
