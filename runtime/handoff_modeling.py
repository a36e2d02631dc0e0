"""Modeling code that an exported model folder carries as `modeling_recycled.py`.

`python -m runtime.export --format hf` copies this file, unchanged, into folders whose model
transformers' own classes cannot express: a seq-cls head that pools by [CLS] or by the mean of
the real tokens (dropout + one linear layer), or Houlsby bottleneck adapters in the encoder
(with, optionally, an InputAdapter on the states entering the lowest adapted layer).
The folder's config.json names these classes in `auto_map`, so

    AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)

builds them. It imports only torch and transformers, never this project, so the folder works
wherever transformers does. The config's `model_type` is "recycled-encoder": loading the folder
without `trust_remote_code=True` fails loudly instead of silently dropping the head.

State-dict layout: `model.*` is the architecture's own transformers model (AutoModelFor<Task>,
or AutoModel under a cls/mean head), `classifier.*` the cls/mean head's linear layer. A wrapped
projection keeps its weights as `<path>.base_layer.*` beside `<path>.adapter_down.*` and
`<path>.adapter_up.*`.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from transformers import (CONFIG_MAPPING, AutoModel, AutoModelForQuestionAnswering,
                          AutoModelForSequenceClassification, AutoModelForTokenClassification,
                          PretrainedConfig, PreTrainedModel)
from transformers.modeling_outputs import SequenceClassifierOutput

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


class RecycledEncoderConfig(PretrainedConfig):
    """The task model's config: labels here, the encoder's own config nested as a dict.

    encoder: the checkpoint's config as `to_dict()` gives it (with its `model_type`).
    pooling: seq-cls head: "pooler" (the architecture's own), "cls" or "mean".
    classifier_dropout: dropout before the cls/mean head's linear layer.
    bottleneck: None, or {"size", "activation", "dropout", "layers" (absolute layer numbers),
        "layers_path" (the layer list inside the base model), "targets" (layer-relative paths
        of the wrapped Linear projections), "input_layer" (None, or the layer whose input
        states pass through an InputAdapter first), "input_size" (that adapter's width;
        absent in folders from before it could differ from "size")}.
    """

    model_type = "recycled-encoder"

    def __init__(self, encoder=None, pooling="pooler", classifier_dropout=0.1, bottleneck=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.encoder = dict(encoder or {})
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        self.bottleneck = bottleneck

    def encoder_config(self):
        """The nested encoder config as its transformers class, with this config's labels."""
        data = {k: v for k, v in self.encoder.items() if k not in ("id2label", "label2id")}
        config = CONFIG_MAPPING[data["model_type"]].from_dict(data)
        config.id2label = {int(k): v for k, v in self.id2label.items()}
        config.label2id = dict(self.label2id)
        return config


class BottleneckAdapter(nn.Module):
    """Houlsby adapter around a Linear: y = base(x); y + up(act(down(dropout(y))))."""

    def __init__(self, base_layer: nn.Linear, size: int, activation: str, dropout: float):
        super().__init__()
        self.base_layer = base_layer
        width = base_layer.out_features
        self.adapter_down = nn.Linear(width, size)
        self.adapter_act = ACTIVATIONS[activation]()
        self.adapter_dropout = nn.Dropout(dropout)
        self.adapter_up = nn.Linear(size, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        return y + self.adapter_up(self.adapter_act(self.adapter_down(self.adapter_dropout(y))))


class InputAdapter(nn.Module):
    """A bottleneck on the states entering a layer: h + up(act(down(dropout(h)))).

    In a recycled run it adapts the cached layer-K states themselves, the one place below the
    trained layers an adapter can reach without running the lower layers again.
    """

    def __init__(self, width: int, size: int, activation: str, dropout: float):
        super().__init__()
        self.adapter_down = nn.Linear(width, size)
        self.adapter_act = ACTIVATIONS[activation]()
        self.adapter_dropout = nn.Dropout(dropout)
        self.adapter_up = nn.Linear(size, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.adapter_up(self.adapter_act(self.adapter_down(self.adapter_dropout(h))))


def _through_input_adapter(layer: nn.Module, args: tuple, kwargs: dict):
    # Encoders call a layer with its hidden states first, by position or by name.
    if args:
        return (layer.input_adapter(args[0]),) + tuple(args[1:]), kwargs
    name = next(iter(inspect.signature(layer.forward).parameters))
    return args, {**kwargs, name: layer.input_adapter(kwargs[name])}


def attach_input_adapter(layer: nn.Module, adapter: InputAdapter) -> None:
    """Make `layer` pass its input hidden states through `adapter` (kept as
    `layer.input_adapter`, so its weights sit in the layer's state dict)."""
    layer.input_adapter = adapter
    layer.register_forward_pre_hook(_through_input_adapter, with_kwargs=True)


def _add_bottlenecks(base_model: nn.Module, spec: dict) -> None:
    layers = base_model.get_submodule(spec["layers_path"])
    for index in spec["layers"]:
        for path in spec["targets"]:
            parent_path, _, leaf = path.rpartition(".")
            parent = layers[index].get_submodule(parent_path) if parent_path else layers[index]
            adapter = BottleneckAdapter(getattr(parent, leaf), spec["size"], spec["activation"],
                                        spec.get("dropout", 0.0))
            setattr(parent, leaf, adapter)
    if spec.get("input_layer") is not None:
        width = getattr(base_model.config, "hidden_size", None) or base_model.config.dim
        attach_input_adapter(layers[spec["input_layer"]], InputAdapter(
            width, spec.get("input_size") or spec["size"], spec["activation"],
            spec.get("dropout", 0.0)))


class _RecycledTaskModel(PreTrainedModel):
    """The encoder with its adapters and a task head; subclasses pick the task."""

    config_class = RecycledEncoderConfig
    base_model_prefix = "model"
    auto_class = None  # the architecture's AutoModelFor<Task>

    def __init__(self, config: RecycledEncoderConfig):
        super().__init__(config)
        encoder_config = config.encoder_config()
        if self._pooled_head():
            self.model = AutoModel.from_config(encoder_config)
            width = getattr(encoder_config, "hidden_size", None) or encoder_config.dim
            self.dropout = nn.Dropout(config.classifier_dropout)
            self.classifier = nn.Linear(width, config.num_labels)
        else:
            self.model = self.auto_class.from_config(encoder_config)
        if config.bottleneck:
            _add_bottlenecks(self.model.base_model, config.bottleneck)
        self.post_init()

    def _pooled_head(self) -> bool:
        return False

    def _init_weights(self, module):  # every weight comes from the saved folder
        pass

    def _inputs(self, input_ids, attention_mask, token_type_ids, kwargs) -> dict:
        accepted = inspect.signature(self.model.forward).parameters
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and "token_type_ids" in accepted:
            inputs["token_type_ids"] = token_type_ids
        inputs.update({k: v for k, v in kwargs.items() if k in accepted and v is not None})
        return inputs

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.model(**self._inputs(input_ids, attention_mask, token_type_ids, kwargs))


class RecycledForSequenceClassification(_RecycledTaskModel):
    """Sequence classification; with pooling "cls" or "mean" the head is dropout + linear."""

    auto_class = AutoModelForSequenceClassification

    def _pooled_head(self) -> bool:
        return self.config.pooling in ("cls", "mean")

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None,
                **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if not self._pooled_head():
            return super().forward(input_ids, attention_mask, token_type_ids, labels=labels,
                                   **kwargs)
        inputs = self._inputs(input_ids, attention_mask, token_type_ids, {})
        hidden = self.model(**inputs).last_hidden_state  # (B, T, H)
        if self.config.pooling == "cls":
            pooled = hidden[:, 0]  # (B, H)
        else:
            mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, H)
        logits = self.classifier(self.dropout(pooled))  # (B, C)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.config.num_labels),
                                               labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)


class RecycledForTokenClassification(_RecycledTaskModel):
    """Token classification: the architecture's own head over the adapted encoder."""

    auto_class = AutoModelForTokenClassification


class RecycledForQuestionAnswering(_RecycledTaskModel):
    """Extractive QA: the architecture's own head over the adapted encoder."""

    auto_class = AutoModelForQuestionAnswering
