"""What the CLIs offer: the choices and the defaults their help states, declared once and
importable without torch, so `--help` stays fast. The modules that own each idea check against
these (runtime.tasks registers exactly TASK_NAMES; runtime.adapters applies ADAPTER_KINDS;
runtime.heads pools by POOLINGS; runtime.config's TrainConfig defaults to the learning rates)."""

TASK_NAMES = ("seq-cls", "token-cls", "qa")
MODES = ("recycled", "full", "frozen")
ADAPTER_KINDS = ("lora", "bottleneck", "finetune", "none")
LORA_TARGETS = ("attention", "all")  # attention: query and value only; all: every linear
POOLINGS = ("pooler", "cls", "mean")  # seq-cls heads; the CLI also offers "auto"
CLASS_WEIGHTINGS = ("none", "sqrt")
# The default recipe's peak learning rates, chosen by the runs in docs/RECIPE.md.
ADAPTER_LR = 1e-3  # LoRA / bottleneck adapters (and head-only runs)
FINETUNE_LR = 1e-4  # when the layers themselves are fine-tuned
