"""A Llama-family causal LM whose layers have their own widths, built from transformers' Llama classes.

Each layer is a LlamaDecoderLayer (LlamaAttention + LlamaMLP) sized by `config.layer_widths[i]`. Its biases
follow the base family: q/k/v for Qwen2 (Qwen2Attention), q/k/v/o with `attention_bias` and gate/up/down with
`mlp_bias` otherwise. A layer skips RoPE where `config.no_rope_layers[i]` is 0 (SmolLM3), and it attends
within `config.sliding_window` where `config.layer_types[i]` is "sliding_attention" (Mistral, Qwen2, SmolLM3).
Everything else is transformers' own: RMSNorm, RoPE and its scaling (`config.rope_parameters`), the attention
kernels, the KV cache and generate(). The per-layer masks follow Qwen2Model.forward
(src/transformers/models/qwen2/modeling_qwen2.py, transformers 5.25).
"""
import copy
import inspect

import torch
from torch import nn
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.llama import modeling_llama as llama

from .configuration_llmprune import LlmpruneConfig

# The KV cache travels as `cache=` through the layers below; an older transformers (`past_key_values=`) would
# ignore it and decode without a cache, so refuse it here.
if "cache" not in inspect.signature(llama.LlamaDecoderLayer.forward).parameters:
    raise ImportError("modeling_llmprune.py needs a transformers 5 whose Llama layers take `cache=` (checked with 5.25)")


def layer_config(config, i):
    """A shallow copy of `config` with layer i's widths and biases: what LlamaAttention and LlamaMLP read
    when they create their Linears."""
    c = copy.copy(config)
    for key, value in config.layer_widths[i].items():
        setattr(c, key, value)
    qwen2 = config.base_model_type == "qwen2"
    c.attention_bias = bool(config.attention_bias) or qwen2   # Qwen2: q/k/v always biased (o_proj fixed below)
    c.mlp_bias = bool(config.mlp_bias) and not qwen2          # Qwen2MLP has no biases
    return c


class LlmpruneDecoderLayer(llama.LlamaDecoderLayer):
    def __init__(self, config, layer_idx):
        super().__init__(layer_config(config, layer_idx), layer_idx)
        if config.base_model_type == "qwen2":
            o = self.self_attn.o_proj
            self.self_attn.o_proj = nn.Linear(o.in_features, o.out_features, bias=False)
        # The model's own config from here on: attention reads config._attn_implementation at every forward,
        # and the model may change it after construction (set_attn_implementation).
        self.self_attn.config = self.mlp.config = config
        self.attention_type = config.layer_types[layer_idx]
        self.sliding_window = config.sliding_window if self.attention_type == "sliding_attention" else None
        self.use_rope = bool(config.no_rope_layers[layer_idx])

    def forward(self, hidden_states, attention_mask=None, position_embeddings=None, **kwargs):
        if not self.use_rope:
            # A NoPE layer: cos 1 and sin 0 leave q and k exactly as they are (q·1 + rotate_half(q)·0 = q).
            cos, sin = position_embeddings
            position_embeddings = (torch.ones_like(cos), torch.zeros_like(sin))
        if self.sliding_window is not None:
            kwargs["sliding_window"] = self.sliding_window   # flash attention reads it; eager and sdpa use the mask
        return super().forward(hidden_states, attention_mask=attention_mask,
                               position_embeddings=position_embeddings, **kwargs)


class LlmpruneModel(llama.LlamaModel):
    config_class = LlmpruneConfig
    _no_split_modules = ["LlmpruneDecoderLayer"]

    def __init__(self, config):
        # LlamaModel.__init__ with LlmpruneDecoderLayer in place of LlamaDecoderLayer.
        llama.LlamaPreTrainedModel.__init__(self, config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList(LlmpruneDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = llama.LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = llama.LlamaRotaryEmbedding(config=config)
        self.gradient_checkpointing = False
        self.has_sliding_layers = "sliding_attention" in config.layer_types
        self.post_init()

    @llama.merge_with_config_defaults
    @llama.capture_outputs
    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, inputs_embeds=None,
                use_cache=None, **kwargs):
        # LlamaModel.forward with one mask per layer type, as Qwen2Model.forward builds them.
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache and cache is None:
            cache = llama.DynamicCache(config=self.config)   # sliding layers get a windowed cache
        if position_ids is None:
            past_seen_tokens = cache.get_seq_length() if cache is not None else 0
            position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + past_seen_tokens
            position_ids = position_ids.unsqueeze(0)
        masks = attention_mask   # generate() may have prepared them already, keyed by layer type
        if not isinstance(masks, dict):
            mask_kwargs = {"config": self.config, "inputs_embeds": inputs_embeds, "attention_mask": attention_mask,
                           "cache": cache, "position_ids": position_ids}
            masks = {"full_attention": create_causal_mask(**mask_kwargs)}
            if self.has_sliding_layers:
                masks["sliding_attention"] = create_sliding_window_causal_mask(**mask_kwargs)

        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids=position_ids)
        for layer in self.layers[: self.config.num_hidden_layers]:
            hidden_states = layer(hidden_states, attention_mask=masks[layer.attention_type],
                                  position_embeddings=position_embeddings, position_ids=position_ids,
                                  cache=cache, use_cache=use_cache, **kwargs)
        hidden_states = self.norm(hidden_states)
        return BaseModelOutputWithPast(last_hidden_state=hidden_states, cache=cache if use_cache else None)


class LlmpruneForCausalLM(llama.LlamaForCausalLM):
    config_class = LlmpruneConfig
    _no_split_modules = ["LlmpruneDecoderLayer"]

    def __init__(self, config):
        # LlamaForCausalLM.__init__ with LlmpruneModel; the head is tied to the embedding when
        # config.tie_word_embeddings, as in LlamaForCausalLM.
        llama.LlamaPreTrainedModel.__init__(self, config)
        self.model = LlmpruneModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
