"""runtime.head_init: the task head's starting weights, random or fitted on frozen features.

`--head-init probe` is linear probing then fine-tuning (LP-FT; Kumar et al., "Fine-Tuning can
Distort Pretrained Features and Underperform Out-of-Distribution", ICLR 2022): before the first
step, the head's classifier is fitted as a logistic regression on the features the untrained
model gives the train split (the pooled states for seq-cls, each labelled token's state for
token-cls), with the run's class weights and an L2 strength chosen by dev loss. Training then
starts from a head that already separates the classes instead of a random one, so the first
steps do not push random-head gradients into the adapters. Before the first step LoRA (B = 0),
fine-tuning and head-only runs compute the frozen model's states, so the fitted head is the kind
of classifier `bench.probe` fits (that one picks its L2 by dev score and has no class weights).
Measured in docs/RECIPE.md; `random` stays the default.

Only a head whose last layer is one linear map over those features can be fitted so: seq-cls
with `--pooling mean` or `cls` (the sentence-transformers checkpoints' auto choice) and
token-cls on architectures without a prediction head. Others are refused with the fix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runtime.batches import model_inputs
from runtime.config import batch_plan
from runtime.errors import RuntimeConfigError
from runtime.loader import plan_cache_batches
from runtime.prefetch import Prefetcher
from runtime.tasks import task_named

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)  # per-weight L2 strengths tried (the bench's probe's grid)
LBFGS_STEPS = 200


def check_head_init(config, head) -> None:
    """Refuse `--head-init probe` on a head it cannot fit, before any work."""
    if config.head_init == "random":
        return
    kind = task_named(config.task).probe_features
    linear = (kind == "pooled" and getattr(head, "kind", "") == "linear") or (
        kind == "tokens" and not head.arch.prediction_head)
    if not linear or head.num_labels < 2:
        what = getattr(head, "kind", None) or ("prediction head" if kind else "no classes")
        raise RuntimeConfigError(
            f"--head-init probe fits a linear classifier on pooled or token states; this "
            f"{config.task} head ({what}, {head.num_labels} label(s)) is not one: pass "
            "--pooling mean or cls for seq-cls, or --head-init random")


def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float,
               weights: torch.Tensor | None = None, steps: int = LBFGS_STEPS) -> torch.nn.Linear:
    """Multinomial logistic regression, full batch with L-BFGS from zero weights:
    minimises (weighted) cross-entropy + l2 * |W|^2. x float [n, H], y long [n]."""
    # nn.Linear draws initial weights from the global generator before they are zeroed, so a
    # probe-initialised run's later dropout draws differ from a random-head run's of the same
    # seed; the kept runs (docs/RECIPE.md) were made so, and each run stays deterministic.
    linear = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(linear(x), y, weight=weights) + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return linear


@torch.no_grad()
def features(config, built, source, reader, examples: list) -> tuple:
    """(x float32 [n, H], y long [n]) in the order of `examples`: what the head's classifier
    sees, in eval mode (no dropout): the pooled states for seq-cls, each labelled token's state
    for token-cls."""
    head, rows = built.head, {}
    pooled = task_named(config.task).probe_features == "pooled"
    batches = plan_cache_batches(reader, [e.key for e in examples], batch_plan(config),
                                 shuffle=False)
    was_training = built.model.training
    built.model.eval()
    with Prefetcher(batches, source, device=config.device) as pf:
        for batch in pf:
            hidden = built.model.encoder(*model_inputs(batch))
            pools = head._pool(hidden, batch["attention_mask"]) if pooled else None
            for i, key in enumerate(batch["keys"]):
                labels = batch["labels"][i]
                if pooled:
                    rows[key] = (pools[i:i + 1], labels.reshape(1))
                else:
                    keep = labels != -100
                    rows[key] = (hidden[i][keep], labels[keep])
    built.model.train(was_training)
    x = torch.cat([rows[e.key][0] for e in examples]).float().cpu()
    return x, torch.cat([rows[e.key][1] for e in examples]).long().cpu()


def fit_head(config, built, source, reader, data, weights: torch.Tensor | None) -> dict:
    """Fit the head's classifier on the train split's features (L2 picked by dev loss) and
    write it into the head; returns {"l2", "dev_loss", "train_examples"} for the log.

    The train and dev features are held in memory: rows x hidden size x 4 bytes (all of
    WNUT-16's labelled tokens on MiniLM: 37,188 x 384, 57 MB)."""
    x, y = features(config, built, source, reader, data.split("train"))
    dev = data.split("dev")  # tiny data sets may have none: then L2 is picked on train
    x_dev, y_dev = features(config, built, source, reader, dev) if dev else (x, y)
    mean, std = x.mean(0), x.std(0) + 1e-6  # standardised: one L2 grid fits every model's scale
    num_classes = built.head.num_labels
    best = None
    for l2 in L2_GRID:
        linear = fit_linear((x - mean) / std, y, num_classes, l2, weights)
        with torch.no_grad():
            loss = F.cross_entropy(linear((x_dev - mean) / std), y_dev, weight=weights).item()
        if best is None or loss < best[1]:
            best = (l2, loss, linear)
    l2, dev_loss, linear = best
    _load_unstandardised(built.head.classifier, linear, mean, std)
    return {"l2": l2, "dev_loss": round(dev_loss, 5), "train_examples": len(y)}


@torch.no_grad()
def _load_unstandardised(classifier: torch.nn.Linear, fitted: torch.nn.Linear,
                         mean: torch.Tensor, std: torch.Tensor) -> None:
    """classifier(x) = fitted((x - mean) / std), folded into one linear map on raw features."""
    weight = fitted.weight / std  # (C, H)
    bias = fitted.bias - weight @ mean
    classifier.weight.copy_(weight.to(classifier.weight))
    classifier.bias.copy_(bias.to(classifier.bias))
