"""What the CLIs offer: the choices and the defaults their help states, declared once and
importable without torch, so `--help` stays fast. The modules that own each idea check against
these (runtime.tasks registers exactly TASK_NAMES; runtime.datasets exactly BUILTIN_TASK_NAMES;
runtime.adapters applies ADAPTER_KINDS; runtime.pooling checks POOLINGS; runtime.config's
TrainConfig takes its defaults from TRAIN_DEFAULTS and the learning rates)."""

TASK_NAMES = ("seq-cls", "token-cls", "qa")
BUILTIN_TASK_NAMES = ("bbc-news", "wnut16")  # the built-in data sets (runtime.datasets)
MODES = ("recycled", "full", "frozen")
ADAPTER_KINDS = ("lora", "bottleneck", "finetune", "none")
INPUT_ADAPTER_KINDS = ("lora", "bottleneck")  # the kinds --input-adapter goes with
LORA_TARGETS = ("attention", "all")  # attention: query and value only; all: every linear
POOLINGS = ("pooler", "cls", "mean")  # seq-cls heads; the CLI also offers "auto"
CLASS_WEIGHTINGS = ("none", "sqrt")
HEAD_INITS = ("random", "probe")  # probe: fitted on the untrained model's features (LP-FT)
# The default recipe's peak learning rates, chosen by the runs in docs/RECIPE.md.
ADAPTER_LR = 1e-3  # LoRA / bottleneck adapters (and head-only runs)
FINETUNE_LR = 1e-4  # when the layers themselves are fine-tuned
HEAD_LR_FACTOR = 10.0  # head learning rate / encoder learning rate
MIN_STEPS = 600  # epochs=None trains at least this many optimizer steps ...
MIN_AUTO_EPOCHS, MAX_AUTO_EPOCHS = 3, 20  # ... in this many epochs

# TrainConfig's defaults for the options `python -m runtime.train` offers (its --help shows them).
# The batch-plan defaults live with the plan (runtime.loader), the lr rule above.
TRAIN_DEFAULTS = {
    "mode": "recycled", "adapter": "lora", "seed": 0, "weight_decay": 0.01,
    "warmup_ratio": 0.1,  # share of all steps spent warming the learning rate up
    "patience": 3,  # epochs without dev improvement before stopping early
    "lora_r": 8, "lora_alpha": 16,
    "lora_targets": "all",  # every linear of a layer: the recipe's (docs/RECIPE.md)
    "bottleneck_size": 64, "pooling": "auto",
    "input_adapter": False,  # also adapt the states entering layer K (docs/RECIPE.md)
    "input_adapter_size": None,  # the input adapter's width; None: bottleneck_size
    "class_weighting": "sqrt",  # 1/sqrt(class frequency): the recipe's
    "min_epochs": 1,  # early stopping never stops before this many epochs
    "head_init": "random",
    "id_field": "id", "label_field": "label", "words_field": "words", "device": "cpu",
}
