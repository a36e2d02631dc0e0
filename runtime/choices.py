"""The names the CLIs offer as choices, declared once and importable without torch, so
`--help` stays fast. The modules that own each idea check against these names (runtime.tasks
registers exactly TASK_NAMES; runtime.adapters applies ADAPTER_KINDS; runtime.heads pools
by POOLINGS)."""

TASK_NAMES = ("seq-cls", "token-cls", "qa")
MODES = ("recycled", "full", "frozen")
ADAPTER_KINDS = ("lora", "bottleneck", "finetune", "none")
LORA_TARGETS = ("attention", "all")  # attention: query and value only; all: every linear
POOLINGS = ("pooler", "cls", "mean")  # seq-cls heads; the CLI also offers "auto"
CLASS_WEIGHTINGS = ("none", "sqrt")
