"""Goldens for `llmprune generate`, computed with transformers (and peft), written as small JSON fixtures.

  scripts/reference/run.sh generate_golden.py --tiny       # Tests/GenerationTests/Resources/tiny_generate.json,
                                                          #   warpers_golden.json
  scripts/reference/run.sh generate_golden.py --chat       # Tests/ChatTemplateTests/Resources/chat_golden.json
  scripts/reference/run.sh generate_golden.py --smollm2 [--bin .build/release/llmprune] [--keep DIR]
                                                          # Tests/GenerationTests/Resources/smollm2_greedy.json

--tiny: transformers' greedy generate (KV cache, its default) on the tiny fixtures of Tests/LlamaModelTests/Resources,
  with the logits of every step; rope/dynamic (max_position_embeddings 16) runs past max_position_embeddings, where
  dynamic RoPE recomputes the frequencies per forward call. And transformers' logits warpers (temperature, top-k,
  top-p) on random rows.
--chat: transformers' chat-template rendering (render_jinja_template, what apply_chat_template runs) of the
  templates in CHAT_TEMPLATES over a few conversations.
--smollm2: greedy generate of 64 new tokens (do_sample=False) for 3 prompts on 3 models: SmolLM2-135M-Instruct
  (the Q4_1 GGUF, dequantized to fp32 by transformers), that model pruned by `llmprune prune` (r = 0.25, local,
  element1: a heterogeneous model, loaded with common.load_heterogeneous_model), and the pruned model with a LoRA
  adapter from a short `llmprune tune` run (peft's PeftModel, not merged). The pruned model and adapter are made by
  the llmprune binary given with --bin, with the commands recorded in the fixture. For each step the gap between the
  chosen token's logit and the runner-up's is recorded, so a divergence can be told from an fp32 near-tie.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import common

ROOT = common.REPO_ROOT
LLAMA_RES = ROOT / "Tests" / "LlamaModelTests" / "Resources"
GEN_RES = ROOT / "Tests" / "GenerationTests" / "Resources"
CHAT_RES = ROOT / "Tests" / "ChatTemplateTests" / "Resources"

# The prompts of the SmolLM2 identity check: two plain continuations and one chat turn through the model's template.
SMOL_PROMPTS = [
    {"kind": "prompt", "text": "The capital of France is"},
    {"kind": "prompt", "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"},
    {"kind": "chat", "text": "Give me three tips for staying healthy."},
]
PRUNE_ARGS = ["--ratio", "0.25", "--quiet"]
TUNE_ARGS = ["--steps", "3", "--batch", "8", "--micro-batch", "4", "--lr", "1e-3", "--warmup", "0", "--quiet"]


def greedy(model, prompt_ids, new_tokens, eos):
    """transformers' greedy generate; returns the new ids, the per-step logits and top-2 gaps."""
    import torch
    ids = torch.tensor([prompt_ids])
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False,
                             eos_token_id=eos, pad_token_id=eos[0] if eos else 0, output_logits=True,
                             return_dict_in_generate=True, temperature=None, top_p=None, top_k=None)
    new = out.sequences[0, len(prompt_ids):].tolist()
    logits = [row[0].float() for row in out.logits]
    gaps = []
    for row in logits:
        top = torch.topk(row, 2).values
        gaps.append(float(top[0] - top[1]))
    return new, logits, gaps


# MARK: - tiny fixtures

TINY_MODELS = [
    # name, path, prompt ids, new tokens
    ("tiny", "tiny", [5, 77, 200, 31, 9, 140, 66], 12),
    ("tiny_gguf", "tiny.gguf", list(b"hello world"), 8),
    ("mistral_swa", "tiny_mistral_swa", [5, 77, 200, 31, 9, 140, 66, 17, 3], 12),
    ("smollm3_nope", "tiny_smollm3", [5, 77, 200, 31, 9, 140, 66, 17, 3], 12),
    ("qwen2_bias", "tiny_qwen2_bias", [5, 77, 200, 31, 9, 140, 66], 12),
    ("llama3_rope", "rope/llama3", [5, 77, 200, 31, 9, 140, 66], 12),
    ("yarn_rope", "rope/yarn", [5, 77, 200, 31, 9, 140, 66], 12),
    # max_position_embeddings 16: the prompt (10) and the first 6 new tokens are within it, then every step
    # rescales the frequencies (dynamic RoPE), for the new token only.
    ("dynamic_rope", "rope/dynamic", [5, 77, 200, 31, 9, 140, 66, 17, 3, 250], 14),
]


def make_tiny():
    import numpy as np
    import torch
    out = {"models": []}
    for name, rel, prompt, n in TINY_MODELS:
        model = common.load_model(str(LLAMA_RES / rel))
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        new, logits, gaps = greedy(model, prompt, n, eos)
        entry = {"name": name, "path": rel, "prompt_ids": prompt, "max_new_tokens": n, "eos": eos, "generated": new,
                 "top2_gaps": gaps}
        if name == "dynamic_rope":
            entry["logits_file"] = "tiny_dynamic_logits.bin"
            np.stack([l.numpy() for l in logits]).astype("<f4").tofile(GEN_RES / "tiny_dynamic_logits.bin")
        out["models"].append(entry)
        common.log(f"{name}: {new}")
    (GEN_RES / "tiny_generate.json").write_text(json.dumps(out, indent=1) + "\n")

    # Logits warpers on random rows.
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
    g = torch.Generator().manual_seed(7)
    rows = torch.randn(6, 40, generator=g) * 3
    rows[1, 5] = rows[1, 9] = rows[1].max() + 1          # a tie at the top
    rows[2, :10] = rows[2, 10]                           # ties around the k-th value
    cases = []
    for t, k, p in [(0.7, None, None), (1.0, 5, None), (1.0, None, 0.9), (0.8, 10, 0.8), (1.3, 3, 0.5),
                    (1.0, 12, None), (0.5, None, 0.3), (2.0, 40, 0.99)]:
        res = []
        for r in rows:
            s = r.clone()[None]
            if t != 1.0:
                s = TemperatureLogitsWarper(t)(None, s)
            if k is not None:
                s = TopKLogitsWarper(k)(None, s)
            if p is not None:
                s = TopPLogitsWarper(p)(None, s)
            res.append([None if not np.isfinite(v) else float(v) for v in s[0].tolist()])
        cases.append({"temperature": t, "top_k": k, "top_p": p, "processed": res})
    (GEN_RES / "warpers_golden.json").write_text(json.dumps({"rows": rows.tolist(), "cases": cases}) + "\n")


# MARK: - chat templates

# Templates written for these tests (not copied from any model): each exercises the constructs the chat templates
# of SmolLM2, Llama-3.x and Qwen2.x use. SmolLM2's own template is read from its GGUF by the model-present test.
LLAMA3_STYLE = """{{- bos_token }}
{#- a header per message, the system message first #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "01 Jan 2025" %}
{%- endif %}
{%- set tools = [{"name": "lookup", "description": "Find a word", "parameters": {"type": "object", "required": ["word"], "properties": {"word": {"type": "string"}}}}] %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Date: " + date_string + "\\n\\n" }}
{%- if tools is not none %}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif message.role == "tool" %}
        {{- raise_exception("tool messages are not part of this test") }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

QWEN2_STYLE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {{- tools | tojson }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

SMOLLM2_STYLE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                 "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
                 "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
                 "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

# Whitespace control: trim_blocks, lstrip_blocks, `-` and `+` markers, comments, a trailing newline.
WHITESPACE = """Start
  {% for m in messages %}
    [{{ m.role }}]
  {%- if loop.last %} (last){% endif %}
  {%+ if true %}kept-indent{% endif +%}
{# a comment #}
    {#- stripped comment -#}   tail
  {% endfor %}
  {{- ' inline ' -}}  
  end {{ 'x' }}  {% if false %}no{% else %}yes{% endif %}
"""

# Expressions, filters, tests, loops, namespaces and methods.
FEATURES = """{%- set ns = namespace(count=0, names=[]) -%}
{%- for m in messages if m.role != 'system' -%}
{%- set ns.count = ns.count + 1 -%}
{{ loop.index }}/{{ loop.length }} {{ loop.index0 }} {{ loop.revindex }} {{ loop.first }} {{ loop.last }} {{ loop.previtem.role if loop.previtem is defined else '-' }}: {{ m.content | length }}
{%- if loop.index == 2 %}{% continue %}{% endif %}
{%- if ns.count > 5 %}{% break %}{% endif %}
{% endfor %}
count={{ ns.count }}
{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ 1 + 2 * 3 - 4 }} {{ 0.1 + 0.2 }} {{ 1e-5 }} {{ 3.0 }}
{{ 'a' ~ 1 ~ none ~ true }} {{ [1, 'two', none, true, 2.5] }} {{ {'k': 'v', 'n': [1, 2]} }} {{ none }} {{ undefined_name }}|
{{ 'abc' < 'abd' }} {{ 2 >= 2.0 }} {{ 'b' in 'abc' }} {{ 3 not in [1, 2] }} {{ 'role' in messages[0] }} {{ 1 == 1.0 }}
{{ 'yes' if messages | length > 1 else 'no' }} {{ ('x' if false) is defined }} {{ none is none }} {{ 3 is number }}
{{ 'x' is string }} {{ messages[0] is mapping }} {{ messages is iterable }} {{ 4 is even }} {{ 9 is divisibleby(3) }}
{{ '  padded\\t' | trim }}|{{ 'Hello World' | lower }} {{ 'hello world' | upper }} {{ 'hello wORLD-x' | title }} {{ 'hELLO' | capitalize }}
{{ [3, 1, 2] | first }} {{ [3, 1, 2] | last }} {{ 'abc' | first }} {{ ['a', 'b'] | join(', ') }} {{ [1, 2] | join }}
{{ missing | default('dflt') }} {{ '' | default('empty', true) }} {{ 'a-b-c' | replace('-', '+') }} {{ -3 | abs }}
{{ {'b': 1, 'a': [1, {'c': none}]} | tojson }} {{ {'b': 1, 'a': 'é"\\n'} | tojson(indent=2) }} {{ [] | tojson }}
{%- for k, v in {'x': 1, 'y': 2} | items %} {{ k }}={{ v }}{% endfor %}
{%- for k, v in {'p': 'q'}.items() %} {{ k }}:{{ v }}{% endfor %}
{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('z', 'none') }} {{ {'a': 1, 'b': 2}.keys() | list }} {{ '1' | int + 1 }} {{ '2.5' | float }}
{{ [1, 2, 3, 4] | select('even') | list }} {{ [1, 2, 3, 4] | reject('equalto', 2) | list }} {{ messages | map(attribute='role') | join(',') }}
{{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ 'a,b,,c'.split(',') }} {{ '  a  b '.split() }}
{{ '  x  '.strip() }}|{{ 'xxhixx'.strip('x') }} {{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'aXbX'.replace('X', '-') }}
{{ 'Hello'.lower() }} {{ 'hello'.upper() }} {{ '-'.join(['a', 'b']) }} {{ 'abcdef'[1:4] }} {{ 'abcdef'[::-1] }} {{ [1, 2, 3, 4][-2:] }}
{{ [1, 2, 3, 4][::2] }} {{ messages[-1]['content'] }} {{ messages[0].role }}
{%- set captured %}[{{ messages | length }} messages]{% endset %} {{ captured }}
{%- for x in [] %}never{% else %} empty-loop{% endfor %}
{%- for i in range(3) %} r{{ i }}{% endfor %}
{{ "quotes: 'single' \\"double\\" tab\\tend" }} {{ 'unicode: \\u00e9' }}
{%- if add_generation_prompt %}
<assistant>
{%- endif %}
"""

CHAT_TEMPLATES = {"llama3_style": LLAMA3_STYLE, "qwen2_style": QWEN2_STYLE, "smollm2_style": SMOLLM2_STYLE,
                  "whitespace": WHITESPACE, "features": FEATURES}

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "  Be brief.\n"}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"},
     {"role": "user", "content": "Say \"café\" and 'naïve' \u2014 twice.\nThanks."}],
]

SPECIAL = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}


def make_chat():
    from transformers.utils.chat_template_utils import render_jinja_template
    cases = []
    for name, template in CHAT_TEMPLATES.items():
        for ci, conv in enumerate(CONVERSATIONS):
            for agp in (False, True):
                rendered, _ = render_jinja_template([conv], chat_template=template, add_generation_prompt=agp, **SPECIAL)
                cases.append({"template": name, "conversation": ci, "add_generation_prompt": agp,
                              "expected": rendered[0]})
    out = {"special_tokens": SPECIAL, "templates": CHAT_TEMPLATES, "conversations": CONVERSATIONS, "cases": cases}
    CHAT_RES.mkdir(parents=True, exist_ok=True)
    (CHAT_RES / "chat_golden.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    common.log(f"{len(cases)} chat cases")


# MARK: - SmolLM2: original, pruned, pruned + adapter

def make_smollm2(bin_path, keep):
    import torch
    gguf = common.DEFAULT_MODEL
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="gen-golden-"))
    work.mkdir(parents=True, exist_ok=True)
    pruned, adapter = work / "pruned", work / "adapter"
    alpaca = common.DATA_ROOT / "alpaca" / "alpaca_data_1k.json"
    prune_cmd = ["prune", "--model", "MODEL", "--out", "PRUNED"] + PRUNE_ARGS
    tune_cmd = ["tune", "--model", "PRUNED", "--data", "ALPACA", "--out", "ADAPTER"] + TUNE_ARGS
    subst = {"MODEL": str(gguf), "PRUNED": str(pruned), "ALPACA": str(alpaca), "ADAPTER": str(adapter)}
    if not (pruned / "config.json").exists():
        subprocess.run([bin_path] + [subst.get(a, a) for a in prune_cmd], check=True, stdout=subprocess.DEVNULL)
    if not (adapter / "adapter_config.json").exists():
        subprocess.run([bin_path] + [subst.get(a, a) for a in tune_cmd + ["--force"]], check=True, stdout=subprocess.DEVNULL)

    tok = common.load_tokenizer(str(gguf))
    prompts = []
    for p in SMOL_PROMPTS:
        if p["kind"] == "prompt":
            ids = tok(p["text"])["input_ids"]
        else:
            ids = tok.apply_chat_template([{"role": "user", "content": p["text"]}], add_generation_prompt=True,
                                          tokenize=True, return_dict=False)
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
        prompts.append({**p, "prompt_ids": list(map(int, ids))})

    def models():
        yield "original", common.load_model(str(gguf))
        base = common.load_model(str(pruned))
        yield "pruned", base
        from peft import PeftModel
        yield "pruned_adapter", PeftModel.from_pretrained(base, str(adapter)).eval()

    results = {}
    for name, model in models():
        eos = 2   # SmolLM2's eos_token_id (<|im_end|>), from the GGUF and the pruned directory's config
        rows = []
        for p in prompts:
            new, _, gaps = greedy(model, p["prompt_ids"], 64, [eos])
            rows.append({"generated": new, "top2_gaps": gaps})
            common.log(f"{name} / {p['text'][:30]!r}: {len(new)} tokens, min gap {min(gaps):.3g}")
        results[name] = rows
    out = {"new_tokens": 64, "prompts": prompts, "prune": prune_cmd, "tune": tune_cmd, "results": results,
           "transformers": __import__("transformers").__version__, "torch": torch.__version__}
    (GEN_RES / "smollm2_greedy.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--chat", action="store_true")
    ap.add_argument("--smollm2", action="store_true")
    ap.add_argument("--bin", default=str(ROOT / ".build" / "release" / "llmprune"))
    ap.add_argument("--keep", help="work directory for the pruned model and adapter (kept; reused when present)")
    common.add_threads_arg(ap)
    a = ap.parse_args()
    common.set_threads(a.threads)
    GEN_RES.mkdir(parents=True, exist_ok=True)
    if a.tiny:
        make_tiny()
    if a.chat:
        make_chat()
    if a.smollm2:
        make_smollm2(a.bin, a.keep)
    if not (a.tiny or a.chat or a.smollm2):
        ap.error("give --tiny, --chat and/or --smollm2")


if __name__ == "__main__":
    sys.exit(main())
