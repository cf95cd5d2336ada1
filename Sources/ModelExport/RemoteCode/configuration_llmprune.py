"""Configuration of an llmprune model whose layers have their own widths (LLM-Pruner's usual output).

It is transformers' LlamaConfig plus, for each layer: its query heads, KV heads and MLP channels
(`layer_widths`), whether it attends within the sliding window (`layer_types`), and whether it applies
RoPE (`no_rope_layers`, SmolLM3's NoPE layers). `base_model_type` names the family the weights come from
(llama, mistral, qwen2 or smollm3); the biases follow that family, as in transformers' own classes.

Load the directory with AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True) (transformers 5; checked with 5.25).
This file and modeling_llmprune.py are written by llmprune into every output directory that needs them.
"""
import dataclasses

from huggingface_hub.dataclasses import strict
from transformers import LlamaConfig

if not dataclasses.is_dataclass(LlamaConfig):
    raise ImportError("configuration_llmprune.py needs a transformers 5 whose configs are dataclasses (checked with 5.25)")

FAMILIES = ("llama", "mistral", "qwen2", "smollm3")
WIDTH_KEYS = ("num_attention_heads", "num_key_value_heads", "intermediate_size")


# @strict again on the subclass, so that its validate_architecture replaces LlamaConfig's check
# (huggingface_hub's strict dataclasses collect the `validate_*` methods of the decorated class).
@strict
class LlmpruneConfig(LlamaConfig):
    model_type = "llmprune"

    base_model_type: str = "llama"
    # One {num_attention_heads, num_key_value_heads, intermediate_size} per layer; None: the top-level values.
    layer_widths: list[dict] | None = None
    sliding_window: int | None = None
    # "full_attention" or "sliding_attention" per layer; None: every layer windowed when sliding_window is set
    # (MistralConfig's rule), else none.
    layer_types: list[str] | None = None
    # 1 where the layer rotates q and k, 0 where it does not; None: all rotate.
    no_rope_layers: list[int] | None = None

    def __post_init__(self, **kwargs):
        n = self.num_hidden_layers
        if self.layer_widths is None:
            self.layer_widths = [{k: getattr(self, k) for k in WIDTH_KEYS} for _ in range(n)]
        if self.layer_types is None:
            self.layer_types = ["sliding_attention" if self.sliding_window is not None else "full_attention"] * n
        if self.no_rope_layers is None:
            self.no_rope_layers = [1] * n
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Per-layer checks, in place of LlamaConfig's `hidden_size % num_attention_heads == 0`: that one holds
        for one head count shared by all layers; here head_dim is explicit and each layer has its own."""
        if self.base_model_type not in FAMILIES:
            raise ValueError(f"base_model_type {self.base_model_type!r} is not one of {', '.join(FAMILIES)}")
        n = self.num_hidden_layers
        for key in ("layer_widths", "layer_types", "no_rope_layers"):
            if len(getattr(self, key)) != n:
                raise ValueError(f"{key} lists {len(getattr(self, key))} layers, num_hidden_layers is {n}")
        for i, w in enumerate(self.layer_widths):
            q, kv, inter = (w.get(k) for k in WIDTH_KEYS)
            if not all(isinstance(v, int) and v > 0 for v in (q, kv, inter)) or q % kv:
                raise ValueError(f"layer_widths[{i}] = {w}: widths must be positive and the query heads "
                                 f"a multiple of the KV heads")
        for i, t in enumerate(self.layer_types):
            if t not in ("full_attention", "sliding_attention"):
                raise ValueError(f"layer_types[{i}] = {t!r} is not full_attention or sliding_attention")
        if "sliding_attention" in self.layer_types and not (self.sliding_window or 0) > 0:
            raise ValueError("layer_types has sliding_attention layers but sliding_window is not a positive integer")
