"""What kept `bench.fidelity` runs say: the table of means over seeds, each configuration's gap
to full fine-tuning paired seed by seed (with its standard error and 95% interval), each side's
pick by dev score, the largest K within a point of full, and the K-sweep figure.

It reads run records (JSON lines, one per trained run) and never trains: `bench.fidelity` runs
and appends them, and `--summary` hands the files here. A record's recipe is its TrainConfig
as run (`runtime.run_folder` reads old records), so that no mean pools two recipes and no pair
compares two unawares.
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics


def _metric(metrics: dict) -> str:
    """The score a run is judged by: accuracy for sequence tasks, entity F1 for token tasks."""
    return "accuracy" if "accuracy" in metrics else "f1"


def _counterpart(config: str, mode: str = "full") -> str:
    """recycled-lora / frozen-lora -> full-lora (the same adapter on all N layers), or with
    mode="frozen", recycled-lora -> frozen-lora (the same run without the cache)."""
    return f"{mode}-" + config.split("-", 1)[1]


def _cpu_label(record: dict) -> str | None:
    """"name (family F model M)" of the CPU a run recorded, "+ GPU name" for a GPU run, None
    for runs from before the field."""
    cpu = record.get("cpu")
    if not cpu:
        return None
    label = f"{cpu.get('model_name')} (family {cpu.get('family')} model {cpu.get('model')})"
    return f"{label} + {record['gpu']}" if record.get("gpu") else label


def _lr_key(record: dict):
    """(learning rate, head learning rate) a run trained with, as resolved from its TrainConfig;
    None for records without them (the probe, hand-made test records)."""
    if record.get("learning_rate") is None:
        return None
    return (record["learning_rate"], record.get("head_learning_rate"))


def _rates_label(lr) -> str:
    """"lr/head 1e-03/1e-02" as a message names a run's rates (the tables' lr/head column)."""
    return f"{'lr/head' if lr and lr[1] else 'lr'} {_lr_label(lr)}"


def _lr_label(lr) -> str:
    if lr is None:
        return "-"
    return f"{lr[0]:.0e}/{lr[1]:.0e}" if lr[1] else f"{lr[0]:.0e}"


def _variant_label(variant: tuple) -> str:
    """"bottleneck_size=128, epochs=10" for the recipe fields that set a run apart."""
    return ", ".join(f"{field}={_shown(value, field)}" for field, value in variant
                     if not (field in _CACHE_FIELDS and value == "null"))  # full: no cache


def _shown(value: str, field: str = "") -> str:
    """A recipe field's JSON value as the tables print it; None is the field's default, or
    for a recycled-only field, a run that has none ("-")."""
    value = json.loads(value)
    if value is None:
        return "-" if field in _CACHE_FIELDS else "default"
    return str(value)


# TrainConfig fields that name the run rather than its recipe, or that the lr key stands for.
# The device is not among them: a GPU run of a seed draws other dropout masks and rounds
# otherwise than the CPU run of that seed, so the two are kept apart, never averaged as one.
_RUN_FIELDS = {"seed", "mode", "adapter", "layer", "overwrite", "resume", "corpus",
               "lr", "head_lr", "prefetch_depth"}


# fields only one adapter kind reads: a fine-tuning run's lora_r is not part of its recipe
_ADAPTER_FIELDS = {"lora_r": "lora", "lora_alpha": "lora", "lora_targets": "lora",
                   "bottleneck_size": "bottleneck"}


def recipe_conflicts(runs: list) -> dict:
    """{TrainConfig field: its values} for the fields that these runs set to different values;
    None (the recipe's default) matches anything here, since old records kept defaults
    unresolved, and the name of a run (seed, mode, layer, learning rates) is not its recipe."""
    values = {}
    for r in runs:
        config = _train_config(r)
        adapter = config.get("adapter")
        for key, value in config.items():
            if key in _RUN_FIELDS or value is None or _ADAPTER_FIELDS.get(key, adapter) != adapter:
                continue
            values.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    return {k: sorted(v) for k, v in values.items() if len(v) > 1}


def reads_stored_states(config: str) -> bool:
    """Whether configuration `config` starts from the cache's stored states: a recycled run,
    and the linear probe (the frozen upper layers run over them); full and frozen runs read
    only the cache's splits and compute layers 0..K-1 themselves."""
    return config.startswith("recycled-") or config == "linear-probe"


def cache_dtype(record: dict) -> str | None:
    """The stored precision a recycled run or the probe read (int8 for runs recorded before the
    field: the only one there was), None for runs that read no stored states (full, frozen)."""
    if not reads_stored_states(record["config"]):
        return None
    return record.get("cache_dtype") or "int8"


# Recipe fields only recycled runs have: full runs pair with each of their values alike.
_CACHE_FIELDS = ("cache_dtype",)


def _train_config(record: dict) -> dict:
    """The run's TrainConfig fields as it used them (runtime.run_folder's reading of a record
    that predates a field), so a run of a new non-default value (`head_init=probe`) never
    pools with the old ones."""
    from runtime.adapters import AdapterConfig
    from runtime.run_folder import recorded_train_fields

    config = record.get("train_config")
    stored = cache_dtype(record)
    if not config:  # the probe: no training recipe, only the states it read
        return {"cache_dtype": stored} if stored is not None else {}
    fields = recorded_train_fields(config)
    if fields.get("input_adapter"):
        # the width the run used (AdapterConfig owns the None -> bottleneck_size rule), so that
        # width 384 and the default never pool: a None would match any width in recipe_conflicts
        fields["input_adapter_size"] = AdapterConfig(
            kind=fields["adapter"], bottleneck_size=fields["bottleneck_size"], input_adapter=True,
            input_size=fields["input_adapter_size"]).input_width
        # its own rate, or "lr" for the encoder's: a None would pool a run at 3e-4 with them all
        own = fields.get("input_adapter_lr")
        fields["input_adapter_lr"] = "lr" if own in (None, record.get("learning_rate")) else own
    if fields.get("max_grad_norm") is None:  # None is no clipping, not "any clipping"
        fields["max_grad_norm"] = "off"
    if stored is not None:  # so that an fp16 and an int8 recycled run never pool
        fields["cache_dtype"] = stored
    return fields


def _recipe_group(record: dict) -> tuple:
    """Runs whose recipes are compared: one model, task and subset, one adapter kind (full,
    frozen and recycled together, so that a pair sees the fields either side varies)."""
    return (record["model"], record["task"], record.get("max_train_examples"),
            record["config"].split("-", 1)[-1])


def varying_fields(records: list) -> dict:
    """{recipe group: the TrainConfig fields its runs set to more than one value}. Rows and
    pairs are kept apart by these as by the learning rate, so that no mean pools two recipes
    (4 and 10 epochs, bottleneck widths 64 and 128) and no pair compares two unawares."""
    groups = {}
    for r in records:
        groups.setdefault(_recipe_group(r), []).append(r)
    return {key: tuple(sorted(recipe_conflicts(runs))) for key, runs in groups.items()}


def _recipe_key(record: dict, varying: dict) -> tuple:
    """(lr key, ((field, JSON value), ...)) of the fields that vary in the run's group; a run
    that left one at its default (None) is its own recipe, shown as field=default."""
    config = _train_config(record)
    fields = varying.get(_recipe_group(record), ())
    return (_lr_key(record),
            tuple((f, json.dumps(config.get(f), sort_keys=True)) for f in fields))


def summarize(records: list) -> list:
    """Rows (model, task, K, config, learning rates, n, mean, std, train s/epoch, the CPUs the
    runs recorded) over seeds, in first-seen order. Full runs are one row whatever K they were
    launched at (K None: the cache only sets their splits, and `paired_gaps` pools them too).
    Runs at different learning rates, or with another value of a field that varies among their
    group's runs (`varying_fields`), are different rows, so that files kept per rate or recipe
    can be read together."""
    varying = varying_fields(records)
    groups = {}
    for r in records:
        layer = None if r["config"].startswith("full") else r["layer"]  # pooled as paired
        key = (r["model"], r["task"], layer, r["config"], r.get("max_train_examples"),
               _recipe_key(r, varying))
        groups.setdefault(key, []).append(r)
    rows = []
    for (model, task, k, name, subset, (lr, variant)), runs in groups.items():
        metric = _metric(runs[0]["metrics"])
        scores = [100 * r["metrics"][metric] for r in runs]
        per_epoch = [r["metrics"]["train_seconds"] / r["metrics"]["epochs_run"]
                     for r in runs if "train_seconds" in r["metrics"]]
        rows.append({"model": model, "task": task, "layer": k, "config": name,
                     "subset": subset, "lr": lr, "variant": variant, "metric": metric,
                     "n": len(scores),
                     "mean": statistics.fmean(scores),
                     "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                     "seconds_per_epoch": statistics.fmean(per_epoch) if per_epoch else None,
                     "cpus": _cpus(runs)})
    return rows


UNRECORDED_CPU = "unrecorded"


def _cpus(runs: list) -> list:
    """The CPU labels of a row's runs; "unrecorded" among them where some runs, from before
    the field, name none while others do, since those may have run elsewhere. Empty where no
    run names one."""
    labels = {_cpu_label(r) or UNRECORDED_CPU for r in runs}
    return [] if labels == {UNRECORDED_CPU} else sorted(labels)


def format_table(rows: list) -> str:
    recipes = any(r.get("variant") for r in rows)
    header = (f"{'model':<18} {'task':<9} {'K':>2} {'config':<20} {'lr/head':<11} {'n':>2} "
              f"{'metric':<8} {'mean':>6} {'std':>5} {'s/epoch':>8}")
    lines = [header + ("  recipe" if recipes else "")]
    mixed = False
    for r in rows:
        spe = f"{r['seconds_per_epoch']:.1f}" if r["seconds_per_epoch"] else "-"
        if len(r.get("cpus", ())) > 1:
            spe, mixed = spe + "*", True
        label = _variant_label(r.get("variant") or ())
        variant = f"  {label}" if label else ""
        layer = "-" if r["layer"] is None else r["layer"]
        lines.append(f"{r['model']:<18} {r['task']:<9} {layer:>2} {r['config']:<20} "
                     f"{_lr_label(r.get('lr')):<11} {r['n']:>2} {r['metric']:<8} "
                     f"{r['mean']:>6.2f} {r['std']:>5.2f} {spe:>8}{variant}")
    if mixed:
        lines.append("* s/epoch averages runs on more than one CPU (or some that recorded none): "
                     "not a speed figure")
    return "\n".join(lines)


def largest_k_within(paired: list, margin: float = 1.0) -> list:
    """Per recycled/frozen configuration (same model, task, subset and learning rates, or any
    rates dev picked), from `paired_gaps`: the largest K whose mean gap to the full counterpart,
    over the seeds both sides ran, is at least -`margin` (None if no K is). Judged on shared
    seeds, so that a K run with other seeds than full (or with more of them) is never compared
    against another set of runs."""
    groups = {}
    for f in paired:
        rates = "dev" if f["picked"] else (f["recipe"], f["full_recipe"])
        groups.setdefault((f["model"], f["task"], f["subset"], f["config"], rates), []).append(f)
    found = []
    for (model, task, subset, name, _), at_k in groups.items():
        by_k = {f["layer"]: f for f in at_k}
        # a tolerance of float rounding: a gap of exactly -margin in percent points counts
        best = max((k for k, f in by_k.items() if f["mean_gap"] >= -margin - 1e-9), default=None)
        chosen = by_k.get(best)
        found.append({"model": model, "task": task, "config": name,
                      "full_config": at_k[0]["full_config"], "picked": at_k[0]["picked"],
                      "recipe": at_k[0]["recipe"], "full_recipe": at_k[0]["full_recipe"],
                      "layers": sorted(by_k),
                      "largest_k": best, "gap": chosen and chosen["mean_gap"],
                      "mean": chosen and chosen["mean"],
                      "full_mean": chosen and chosen["full_mean"],
                      "seeds": chosen and chosen["seeds"],
                      "seeds_per_k": {k: f["seeds"] for k, f in sorted(by_k.items())}})
    return found


def _seed_note(seeds_per_k: dict) -> str:
    """Where the K were run on different seeds, say so: each K is judged on its own seeds, so a
    K with two lucky extra seeds can pass where its neighbours on three do not."""
    if len({tuple(s) for s in seeds_per_k.values()}) < 2:
        return ""
    counts = sorted({len(s) for s in seeds_per_k.values()})
    shared = sorted(set.intersection(*(set(s) for s in seeds_per_k.values())))
    span = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    hint = (f"a --summary with --seeds {' '.join(map(str, shared))} judges every K on the same "
            "ones" if shared else "no seed is shared by every K")
    return f"; the K ran on different seeds ({span} each): {hint}"


def format_largest_k(found: list, margin: float = 1.0) -> str:
    lines = []
    for f in found:
        if f["picked"]:
            pair = f"{f['config']} against {f['full_config']}, each at the recipe dev picks"
        else:
            pair = (f"{f['config']}{_at(f['recipe'])} against "
                    f"{f['full_config']}{_at(f['full_recipe'])}")
        head = f"{f['model']} {f['task']}: {pair}, K run {f['layers']}: "
        lines.append(head + (f"largest K within {margin:g} is {f['largest_k']} ({f['gap']:+.2f}: "
                             f"{f['mean']:.2f} against {f['full_mean']:.2f} on seeds {f['seeds']})"
                             if f["largest_k"] is not None else f"no K within {margin:g}")
                     + _seed_note(f["seeds_per_k"]))
    return "\n".join(lines)


def _seed_scores(records: list) -> dict:
    """{(model, task, subset, config, K or None for full, recipe key): {seed: [(score, best
    dev)]}}. Full runs are pooled over K: the cache only sets their splits."""
    varying = varying_fields(records)
    scores = {}
    for r in records:
        metric = _metric(r["metrics"])
        layer = None if r["config"].startswith("full") else r["layer"]
        key = (r["model"], r["task"], r.get("max_train_examples"), r["config"], layer,
               _recipe_key(r, varying))
        scores.setdefault(key, {}).setdefault(r["seed"], []).append(
            (100 * r["metrics"][metric], r["metrics"].get("dev_best")))
    return scores


# The targets are means of 3 seeds: a dev pick over fewer shared seeds is rechecked.
MIN_DEV_SEEDS = 3


@dataclasses.dataclass(frozen=True)
class DevPick:
    """One side's choice among the recipes it ran, by mean best dev score."""
    recipe: tuple  # the recipe key picked
    means: dict  # {recipe key: mean best dev, over `seeds`}
    seeds: list | None  # the seeds every recipe ran; None where they share none
    # Where those seeds are fewer than MIN_DEV_SEEDS: the pick again among only the recipes
    # that share MIN_DEV_SEEDS seeds or more, so a user sees whether a recipe run on one or
    # two seeds narrowed the pick onto them. None where there was nothing to recheck.
    recheck: DevPick | None = None

    @property
    def left_out(self) -> tuple:
        """The recipe keys the recheck leaves out (none without a recheck)."""
        if self.recheck is None:
            return ()
        return tuple(r for r in self.means if r not in self.recheck.means)


def _best_dev(devs_by_recipe: dict) -> DevPick:
    """Each recipe's mean over the seeds every recipe ran (its own seeds where they share
    none), so that more seeds at one never decide the pick; a tie (common on BBC's
    near-perfect dev accuracy) goes to the recipe read first."""
    shared = set.intersection(*(set(d) for d in devs_by_recipe.values()))
    means = {recipe: 100 * statistics.fmean([d[s] for s in (shared or d)])
             for recipe, d in devs_by_recipe.items()}
    return DevPick(max(means, key=means.get), means, sorted(shared) or None)  # max: first of a tie


def _recheck(devs_by_recipe: dict, pick: DevPick) -> DevPick:
    if len(pick.seeds or ()) >= MIN_DEV_SEEDS:
        return pick
    seeded = {r: d for r, d in devs_by_recipe.items() if len(d) >= MIN_DEV_SEEDS}
    if len(seeded) < 2 or len(seeded) == len(devs_by_recipe):  # one left is no choice
        return pick
    again = _best_dev(seeded)
    if len(again.seeds or ()) < MIN_DEV_SEEDS:
        return pick
    return dataclasses.replace(pick, recheck=again)


def pick_by_dev(scores: dict) -> dict:
    """{key without recipe: DevPick} per configuration and K run at more than one learning
    rate or recipe, as a user tuning them on the dev split would choose (`_best_dev`). Runs
    without a dev score do not take part."""
    devs_by_key = {}
    for key, by_seed in scores.items():
        devs = {s: [d for _, d in runs if d is not None] for s, runs in by_seed.items()}
        devs = {s: statistics.fmean(d) for s, d in devs.items() if d}
        if devs:
            devs_by_key.setdefault(key[:-1], {})[key[-1]] = devs
    return {key: _recheck(by_recipe, _best_dev(by_recipe))
            for key, by_recipe in devs_by_key.items()}


def paired_gaps(records: list, by_dev: bool = False) -> list:
    """Per recycled/frozen configuration and K with a full counterpart (same model, task and
    subset): score - full score seed by seed, over the seeds both sides ran, so that a side with
    more seeds never moves the comparison. A seed run more than once is averaged; full runs
    are pooled over K (the cache only sets their splits). Each side is paired at the same
    learning rates and recipe (`varying_fields`), or with `by_dev` each at the ones its own
    dev score picks."""
    scores = _seed_scores(records)
    picked = pick_by_dev(scores) if by_dev else {}
    found = []
    for (model, task, subset, name, layer, recipe), by_seed in scores.items():
        full_name = _counterpart(name)
        full_recipe, dev_picks = _as_full(recipe), {}
        if by_dev:
            our_pick = picked.get((model, task, subset, name, layer), DevPick(recipe, {}, None))
            if our_pick.recipe != recipe:
                continue
            full_pick = picked.get((model, task, subset, full_name, None),
                                   DevPick(full_recipe, {}, None))
            full_recipe, dev_picks = full_pick.recipe, {"ours": our_pick, "full": full_pick}
        full = scores.get((model, task, subset, full_name, None, full_recipe))
        if layer is None or not set(by_seed) & set(full or ()):
            continue
        found.append({"model": model, "task": task, "subset": subset, "layer": layer,
                      "config": name, "full_config": full_name, "recipe": recipe,
                      "full_recipe": full_recipe, "lr": recipe[0], "full_lr": full_recipe[0],
                      "picked": by_dev, "dev_picks": dev_picks, **_seed_gaps(by_seed, full)})
    return found


def cache_shares(records: list) -> list:
    """Per recycled configuration, K and recipe with frozen runs of that configuration, K and
    recipe: recycled - frozen seed by seed, in `paired_gaps`' form (the frozen side in its
    full_* fields). A frozen run is the method without the cache (layers 0..K-1 run from the
    text in PyTorch, untrained), so this is what storing layer K's states costs: the rounding
    of the stored precision, the one thing the two runs do not share."""
    scores = _seed_scores(records)
    found = []
    for (model, task, subset, name, layer, recipe), by_seed in scores.items():
        if not name.startswith("recycled-"):
            continue
        frozen_name, frozen_recipe = _counterpart(name, "frozen"), _as_full(recipe)
        frozen = scores.get((model, task, subset, frozen_name, layer, frozen_recipe))
        if not set(by_seed) & set(frozen or ()):
            continue
        found.append({"model": model, "task": task, "subset": subset, "layer": layer,
                      "config": name, "full_config": frozen_name, "recipe": recipe,
                      "full_recipe": frozen_recipe, "lr": recipe[0], "full_lr": recipe[0],
                      "picked": False, "dev_picks": {}, **_seed_gaps(by_seed, frozen)})
    return found


def _seed_gaps(ours_by_seed: dict, theirs_by_seed: dict) -> dict:
    """ours - theirs over the seeds both ran (a seed run more than once averaged): the gaps,
    their mean, standard error and 95% interval, and each side's mean over those seeds."""
    seeds = sorted(set(ours_by_seed) & set(theirs_by_seed))
    ours = [statistics.fmean(s for s, _ in ours_by_seed[seed]) for seed in seeds]
    theirs = [statistics.fmean(s for s, _ in theirs_by_seed[seed]) for seed in seeds]
    gaps = [a - b for a, b in zip(ours, theirs)]
    mean_gap, error = statistics.fmean(gaps), _standard_error(gaps)
    return {"seeds": seeds, "mean": statistics.fmean(ours), "full_mean": statistics.fmean(theirs),
            "gaps": gaps, "mean_gap": mean_gap, "standard_error": error,
            "interval_95": interval_95(mean_gap, error, len(gaps))}


def _as_full(recipe: tuple) -> tuple:
    """The recipe key a full (or frozen) run of `recipe` has: a recycled-only field (the
    cache's stored precision) reads None there, as their records have no such field."""
    lr, variant = recipe
    return lr, tuple((f, "null" if f in _CACHE_FIELDS else v) for f, v in variant)


def _standard_error(values: list):
    # Of the mean. Single seeds move WNUT-16 F1 by points, so a gap set against a 1-point target
    # means little without the spread that three or five seeds leave on it.
    if len(values) < 2:
        return None
    return statistics.stdev(values) / math.sqrt(len(values))


# Student's t, two-sided 95% (the 0.975 quantile), degrees of freedom 1..30, to 3 decimals.
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
          2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
          2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """Student's t 0.975 quantile: a table to 30 degrees of freedom, then the Cornish-Fisher
    expansion about the normal one (off by under 2e-4 from 31 on), so bench needs no scipy."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if df <= len(_T_975):
        return _T_975[df - 1]
    z = statistics.NormalDist().inv_cdf(0.975)
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def interval_95(mean: float, standard_error, seeds: int):
    """(low, high) of the 95% t interval of a mean gap over `seeds` seeds, or None where one
    seed leaves no standard error. On a few seeds it is wide: with a standard error near 1
    point, ten seeds cannot place a gap on either side of a 1-point bound, and the interval
    says so where the mean alone cannot."""
    if standard_error is None:
        return None
    half = t_quantile_975(seeds - 1) * standard_error
    return mean - half, mean + half


def _at(recipe) -> str:
    """" (lr 3e-03/3e-02; bottleneck_size=128)", or "" for runs that recorded neither."""
    lr, variant = recipe
    parts = [f"lr {_lr_label(lr)}"] if lr else []
    label = _variant_label(variant or ())
    parts += [label] if label else []
    return f" ({'; '.join(parts)})" if parts else ""


def dev_table(side: str, pick: DevPick) -> list:
    """One side's recipes ranked by mean best dev, as lines of a table: a column for the
    learning rates and one per recipe field whose value tells this side's recipes apart, so
    that a dozen recipes read as rows, not as one line of thousands of characters."""
    ranked = sorted(pick.means.items(), key=lambda item: -item[1])  # stable: ties keep order
    if not ranked:  # a side whose runs recorded no dev score
        return []
    if len(ranked) == 1:
        return [f"  {side}: one recipe, mean best dev {ranked[0][1]:.2f} over seeds {pick.seeds}"]
    variants = [dict(variant) for (_, variant), _ in ranked]
    fields = [f for f in variants[0] if len({v.get(f) for v in variants}) > 1]
    cells = [[_lr_label(lr)] + [_shown(variant[f], f) for f in fields]
             for ((lr, _), _), variant in zip(ranked, variants)]
    header = ["lr/head"] + fields
    widths = [max(len(row[i]) for row in cells + [header]) for i in range(len(header))]
    over = (f"over seeds {pick.seeds}, the seeds every recipe ran" if pick.seeds
            else "each over its own seeds, since the recipes share none")
    lines = [f"  {side}: mean best dev by recipe, {over}",
             "    " + "  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  best dev"]
    for row, (recipe, dev) in zip(cells, ranked):
        mark = ("  picked" if recipe == pick.recipe
                else f"  < {MIN_DEV_SEEDS} seeds" if recipe in pick.left_out else "")
        lines.append("    " + "  ".join(c.ljust(w) for c, w in zip(row, widths))
                     + f"  {dev:8.2f}{mark}")
    return lines + _recheck_lines(pick)


def _recheck_lines(pick: DevPick) -> list:
    again = pick.recheck
    if again is None:
        return []
    picks = ("the same recipe" if again.recipe == pick.recipe
             else f"another{_at(again.recipe)}")
    return [f"    rechecked without the recipes marked < {MIN_DEV_SEEDS} seeds: the other "
            f"{len(again.means)} share seeds {again.seeds}, and over those dev picks {picks}, "
            f"best dev {again.means[again.recipe]:.2f}"]


def format_paired_gaps(found: list) -> str:
    lines = []
    for f in found:
        per_seed = ", ".join(f"{g:+.2f}" for g in f["gaps"])
        spread = ("" if f["standard_error"] is None
                  else f"standard error {f['standard_error']:.2f}, 95% interval "
                       f"{f['interval_95'][0]:+.2f} to {f['interval_95'][1]:+.2f}; ")
        lines.append(f"{f['model']} {f['task']} K={f['layer']}: {f['config']}{_at(f['recipe'])} "
                     f"- {f['full_config']}{_at(f['full_recipe'])} on seeds {f['seeds']}: "
                     f"{f['mean_gap']:+.2f} ({spread}{f['mean']:.2f} against "
                     f"{f['full_mean']:.2f}; per seed {per_seed})")
        if f["picked"] and f["dev_picks"]:
            for side, name in (("ours", f["config"]), ("full", f["full_config"])):
                lines += dev_table(name, f["dev_picks"][side])
    return "\n".join(lines)


def report_speedups(path: str) -> dict:
    """{K: training speedup} from a bench.report JSON: full's median time per example over the
    K it timed, over recycled's at each K, all timed in one run, each K's modes interleaved
    step by step (a fair ratio, unlike the seconds per epoch of fidelity runs that ran under
    whatever else the machine did). The median, not the full run beside each K: full is the
    same model at every K, and its runs spread by 30% on a quiet machine (bench.table)."""
    from bench.table import speedups_by_layer
    from runtime.errors import RuntimeConfigError

    try:
        with open(path, encoding="utf-8") as f:
            return speedups_by_layer(json.load(f)["steps"], "train", against="median")
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as e:
        raise RuntimeConfigError(f"--speedups {path}: not a bench.report JSON with per-K training "
                                 f"steps ({type(e).__name__}: {e})") from None


_SWEPT = ("recycled-", "frozen-")  # the configurations a K sweep moves; not the probe


def sweep_series(records: list) -> list:
    """What the K-sweep figure draws, per recycled or frozen configuration: its mean score at
    each K over the seeds that K ran (`n`), its full counterpart's mean over full's seeds, and
    the gap to full at each K paired over the seeds both ran (`paired_gaps`, with its 95%
    interval). The gap is what the largest K within a point is judged on; the means alone
    would compare a K run on one seed against full on five. A configuration run at one K is
    left out where another was run at several: a point is no sweep, and files kept for one K
    (LoRA and bottleneck beside a fine-tuning sweep) would crowd the figure."""
    return _sweep_series(summarize(records), paired_gaps(records))


def _sweep_series(rows: list, gaps: list) -> list:
    series = []
    for name in sorted({r["config"] for r in rows if r["config"].startswith(_SWEPT)}):
        full = next((r for r in rows if r["config"] == _counterpart(name)), None)
        series.append({
            "config": name,
            "points": sorted(({"layer": r["layer"], "n": r["n"], "mean": r["mean"],
                               "seconds_per_epoch": r["seconds_per_epoch"]}
                              for r in rows if r["config"] == name), key=lambda p: p["layer"]),
            "full": full,
            "gaps": sorted((g for g in gaps if g["config"] == name), key=lambda g: g["layer"])})
    swept = [s for s in series if len(s["points"]) > 1]
    return swept or series


def _refuse_unplottable(records: list, rows: list) -> None:
    """One clear line where the runs would not make one figure: none of a recycled or frozen
    configuration, two tasks, models or train subsets (their curves would read as one), or one
    configuration at two recipes."""
    from runtime.errors import RuntimeConfigError

    if not any(r["config"].startswith(_SWEPT) for r in records):
        raise RuntimeConfigError("--plot: no recycled or frozen runs of this task in these files "
                                 "(--task names the task to draw)")
    for field, what, fix in (("task", "tasks", "name one with --task"),
                             ("model", "models", "plot one at a time"),
                             ("max_train_examples", "train subsets", "plot one at a time")):
        seen = sorted({str(r.get(field)) for r in records})
        if len(seen) > 1:
            raise RuntimeConfigError(f"--plot: these runs hold {len(seen)} {what} "
                                     f"({', '.join(seen)}); {fix}")
    recipes = {}
    for r in rows:
        recipes.setdefault(r["config"], set()).add((r.get("lr"), r.get("variant")))
    mixed = sorted(name for name, seen in recipes.items() if len(seen) > 1)
    if mixed:
        # one line per configuration: points of two recipes would read as one curve
        seen = sorted("; ".join(filter(None, (_rates_label(lr), _variant_label(variant))))
                      for lr, variant in recipes[mixed[0]])
        raise RuntimeConfigError(f"--plot: {mixed[0]} was run with {len(seen)} recipes "
                                 f"({' | '.join(seen)}); plot one recipe's runs at a time")


def plot_sweep(records: list, path: str, speedups: dict | None = None) -> None:
    """Two panels against K. Above: each configuration's test score (mean of the seeds each K
    ran, n beside each point), full's mean as a dotted line of its colour, and the speedup on a
    second axis: `speedups` ({K: x}, see report_speedups) where given, else each
    configuration's full / recycled s per epoch. Below: the gap to full paired seed by seed,
    with its 95% interval where two or more seeds were shared, against the -1 line."""
    records = [r for r in records if r["config"].startswith(_SWEPT + ("full-",))]
    rows = summarize(records)
    _refuse_unplottable(records, rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, gap_ax) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True,
                                     gridspec_kw={"height_ratios": (3, 2)})
    speed_ax = ax.twinx()
    series = _sweep_series(rows, paired_gaps(records))
    for s in series:
        color = _draw_scores(ax, speed_ax, s, own_speedups=speedups is None)
        if s["gaps"]:
            _draw_gaps(gap_ax, s, color)
    if speedups is not None:
        ks = sorted(speedups)
        speed_ax.plot(ks, [speedups[k] for k in ks], "s--", color="black", alpha=0.6,
                      label="training speedup (bench.report: full's median over K / recycled)")
    if not any(s["gaps"] for s in series):
        gap_ax.text(0.5, 0.5, "no full run shares a seed with these runs", ha="center",
                    va="center", transform=gap_ax.transAxes)
    ax.margins(y=0.1)  # room for the n= labels of the top points
    gap_ax.axhline(0.0, color="grey", lw=0.8, ls=":")
    gap_ax.axhline(-1.0, color="red", lw=0.8, ls=":")
    swept = {p["layer"] for s in series for p in s["points"]}
    ticks = sorted(swept | set(speedups or ()))
    gap_ax.set_xticks(ticks)
    # n= labels sit right of their point: the last K needs more room than the first
    gap_ax.set_xlim(ticks[0] - 0.3, ticks[-1] + 0.6)
    gap_ax.set_xlabel("K (layers recycled from the cache)")
    ax.set_ylabel(f"test {_metric(records[0]['metrics'])} (mean of seeds)")
    gap_ax.set_ylabel("gap to full, by seed\n(bar: 95% interval)")
    speed_ax.set_ylabel("training speedup, full / recycled")
    handles = [h for a in (ax, speed_ax) for h in a.get_legend_handles_labels()[0]]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=7)  # below, off the curves
    ax.set_title(f"{records[0]['model']} on {records[0]['task']}: K sweep "
                 "(below: gap to full on the seeds both ran; red: -1)", fontsize=10)
    fig.tight_layout(rect=(0, 0.02 + 0.025 * math.ceil(len(handles) / 2), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draw_scores(ax, speed_ax, s: dict, own_speedups: bool) -> str:
    """One configuration's scores per K (n beside each), full's mean as a dotted line, and with
    `own_speedups` its full / recycled s per epoch; returns the colour its line took."""
    pts = s["points"]
    line, = ax.plot([p["layer"] for p in pts], [p["mean"] for p in pts], "o-",
                    label=f"{s['config']} (score)")
    for p in pts:
        ax.annotate(f"n={p['n']}", (p["layer"], p["mean"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=7, color=line.get_color())
    full = s["full"]
    if full is None:
        return line.get_color()
    ax.axhline(full["mean"], color=line.get_color(), lw=0.8, ls=":",
               label=f"{full['config']} (score, n={full['n']})")
    sp = [(p["layer"], full["seconds_per_epoch"] / p["seconds_per_epoch"])
          for p in pts if own_speedups and full["seconds_per_epoch"] and p["seconds_per_epoch"]]
    if sp:
        speed_ax.plot([k for k, _ in sp], [x for _, x in sp], "s--", alpha=0.6,
                      label=f"{s['config']} (speedup, s/epoch of these runs)")
    return line.get_color()


def _draw_gaps(ax, s: dict, color: str) -> None:
    ax.plot([g["layer"] for g in s["gaps"]], [g["mean_gap"] for g in s["gaps"]], "o-",
            color=color, lw=1)
    # a one-seed gap has no interval: a bare point, never a bar of zero width that reads as exact
    spread = [g for g in s["gaps"] if g["interval_95"]]
    if spread:
        ax.errorbar([g["layer"] for g in spread], [g["mean_gap"] for g in spread], fmt="none",
                    yerr=[[g["mean_gap"] - g["interval_95"][0] for g in spread],
                          [g["interval_95"][1] - g["mean_gap"] for g in spread]],
                    ecolor=color, capsize=3, lw=1)
    for g in s["gaps"]:
        ax.annotate(f"n={len(g['seeds'])}", (g["layer"], g["mean_gap"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)


def select_runs(records: list, task: str | None = None, configs: tuple = (),
                layer: int | None = None, seeds: tuple = ()) -> list:
    """The runs a --summary shows: those of `task` where one is named; where `configs` are
    named, those configurations with the full and frozen runs they pair with (a recycled row
    without its full run would print no gap); at `layer`, with the full runs of any K (they
    pool over K); of `seeds`, on every side, so that gaps pair over those seeds alone. None
    left (or only full runs of other K) is one clear line, never an empty table that reads as
    "no runs were made"."""
    from runtime.errors import RuntimeConfigError

    if task:
        records = [r for r in records if r["task"] == task]
    if configs:
        wanted = set(configs) | {_counterpart(c, m) for c in configs for m in ("full", "frozen")}
        records = [r for r in records if r["config"] in wanted]
    if layer is not None:
        records = [r for r in records if r["layer"] == layer or r["config"].startswith("full-")]
    if seeds:
        records = [r for r in records if r["seed"] in seeds]
    if not records or (layer is not None and all(r["layer"] != layer for r in records)):
        named = " and ".join(filter(None, (
            task and f"--task {task}", configs and f"--configs {','.join(configs)}",
            layer is not None and f"--layer {layer}",
            seeds and f"--seeds {' '.join(map(str, seeds))}")))
        raise RuntimeConfigError(f"no runs of {named or 'any kind'} in these files")
    return records


def read_runs(paths: list) -> list:
    """The run records of JSON-lines files, in order; a line that is not a run record is one
    clear error naming its file and line, never a table over part of the runs."""
    from runtime.errors import RuntimeConfigError

    records = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    _check_run(record)
                except (ValueError, KeyError, TypeError) as e:
                    raise RuntimeConfigError(f"{path} line {number}: not a bench.fidelity run "
                                             f"record ({type(e).__name__}: {e})") from None
                records.append(record)
    return records


def _check_run(record: dict) -> None:
    missing = [k for k in ("model", "task", "layer", "config", "seed", "metrics")
               if k not in record]
    if missing:
        raise KeyError(missing[0])
    metrics = record["metrics"]
    if not isinstance(metrics, dict) or _metric(metrics) not in metrics:
        raise ValueError("metrics carry neither accuracy nor f1")
