#!/usr/bin/env python3
"""Golden fixtures for linear-layer biases: a tiny random Qwen2 (q/k/v biases, tied, sliding window on layer 1 only
through use_sliding_window + max_window_layers) and a tiny random Llama with attention_bias and mlp_bias (q/k/v/o and
gate/up/down biases, untied). fp32, eager attention.

Output (default Tests/LlamaModelTests/Resources/), for NAME in tiny_qwen2_bias, tiny_llama_bias:
  NAME/                      config.json, model.safetensors
  golden/NAME_logits.bin     float32 logits [2, 17, 256], C order
  golden/NAME_grads.bin      float32 ∂loss/∂p of every linear weight and bias, in the index's order
  NAME.json                  input ids, loss, the gradient index (name, shape, offset), and Taylor unit scores
                             (importance.py with the bias element counted in its row: element1, vector, param_second;
                             reductions sum and max; Fisher from LLM-Pruner's per-sample loop)
  NAME.gguf                  the same weights as an F32 GGUF written like convert_hf_to_gguf.py: arch qwen2 (no q/k
                             permutation; the GGUF has no sliding-window key, so transformers loads it without the
                             window) / arch llama (q/k weights AND biases permuted); byte-level vocab
  golden/tiny_qwen2_bias_gguf_logits.bin  logits of transformers' own load of the qwen2 GGUF (gguf_file=...).
                             transformers' GGUF loader builds a llama model without biases (it ignores the bias
                             tensors), so the llama GGUF's reference is the safetensors model (the same tensors).

Run: scripts/reference/run.sh make_bias_fixtures.py [--out DIR]
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import common
import importance as imp

SEED, IDS_SEED = 0, 4321
BATCH, SEQ = 2, 17
BASE = dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, intermediate_size=96, rms_norm_eps=1e-5, max_position_embeddings=256, bos_token_id=1,
            eos_token_id=2, hidden_act="silu")
MODELS = {
    "tiny_qwen2_bias": ("qwen2", dict(BASE, tie_word_embeddings=True, rope_theta=1000000.0, use_sliding_window=True,
                                      sliding_window=5, max_window_layers=1)),
    "tiny_llama_bias": ("llama", dict(BASE, tie_word_embeddings=False, rope_theta=10000.0, attention_bias=True,
                                      mlp_bias=True)),
}


def build(kind, cfg):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    config = Qwen2Config(**cfg) if kind == "qwen2" else LlamaConfig(**cfg)
    config._attn_implementation = "eager"
    torch.manual_seed(SEED)
    model = (Qwen2ForCausalLM if kind == "qwen2" else LlamaForCausalLM)(config)
    from make_tiny_fixtures import scale_weights
    return scale_weights(model, bias_std=0.2)   # biases large enough to matter


def write_gguf(kind, cfg, model, path):
    import gguf
    import numpy as np
    from make_tiny_fixtures import byte_vocab, llamacpp_permute, gguf_name
    n_head, n_kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    w = gguf.GGUFWriter(str(path), kind)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(path.stem)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(float(cfg["rope_theta"]))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_rope_dimension_count(hd)
    tokens, types = byte_vocab()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_scores([0.0] * len(tokens))
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    if cfg["tie_word_embeddings"]:
        sd.pop("lm_head.weight", None)
    order = sorted(sd, key=lambda k: (0, 0, "") if k == "model.embed_tokens.weight" else
                   ((1, int(k.split(".")[2]), k) if k.startswith("model.layers.") else (2, 0, k)))
    for k in order:
        data = sd[k].astype(np.float32)
        # LlamaModel.modify_tensors permutes q/k weights and biases; Qwen2Model keeps HF order.
        if kind == "llama" and (k.endswith("q_proj.weight") or k.endswith("q_proj.bias")):
            data = llamacpp_permute(data, n_head, n_head)
        elif kind == "llama" and (k.endswith("k_proj.weight") or k.endswith("k_proj.bias")):
            data = llamacpp_permute(data, n_head, n_kv)
        name = gguf_name(k[:-len(".bias")] + ".weight")[:-len(".weight")] + ".bias" if k.endswith(".bias") else gguf_name(k)
        w.add_tensor(name, np.ascontiguousarray(data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(common.REPO_ROOT / "Tests" / "LlamaModelTests" / "Resources"))
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)
    import numpy as np
    import torch

    out = Path(args.out)
    (out / "golden").mkdir(exist_ok=True)
    for name, (kind, cfg) in MODELS.items():
        model = build(kind, cfg)
        d = out / name
        if d.exists():
            shutil.rmtree(d)
        model.save_pretrained(str(d))
        g = torch.Generator().manual_seed(IDS_SEED)
        ids = torch.randint(3, cfg["vocab_size"], (BATCH, SEQ), generator=g)

        fisher, _ = imp.fisher_pass(model, ids)
        model.zero_grad(set_to_none=True)
        res = model(input_ids=ids, labels=ids)
        res.loss.backward()
        res.logits.detach().to(torch.float32).numpy().astype("<f4").tofile(out / "golden" / f"{name}_logits.bin")
        index, chunks, offset = [], [], 0
        for pname, p in model.named_parameters():
            if not (pname.endswith("proj.weight") or pname.endswith("proj.bias")):
                continue
            grad = p.grad.detach().to(torch.float32).contiguous().numpy().astype("<f4").ravel()
            index.append({"name": pname, "shape": list(p.shape), "offset": offset})
            chunks.append(grad)
            offset += grad.size
        np.concatenate(chunks).tofile(out / "golden" / f"{name}_grads.bin")

        scores = imp.score_layers(model, range(cfg["num_hidden_layers"]), ["element1", "vector", "param_second"],
                                  ["sum", "max"], fisher, torch.float64)
        # The biases must matter: the same model with them zeroed gives another loss.
        with torch.no_grad():
            saved = {n: p.clone() for n, p in model.named_parameters() if n.endswith(".bias")}
            for n, p in model.named_parameters():
                if n.endswith(".bias"):
                    p.zero_()
            no_bias_loss = model(input_ids=ids, labels=ids).loss.item()
            for n, p in model.named_parameters():
                if n in saved:
                    p.copy_(saved[n])
        meta = {"input_ids": ids.tolist(), "loss": res.loss.item(), "loss_without_biases": no_bias_loss,
                "grads": index, "scores": scores, "torch": torch.__version__,
                "transformers": __import__("transformers").__version__}
        (out / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")

        from transformers import AutoModelForCausalLM
        write_gguf(kind, cfg, model, out / f"{name}.gguf")
        if kind != "qwen2":
            continue
        gm = AutoModelForCausalLM.from_pretrained(str(out), gguf_file=f"{name}.gguf", dtype=torch.float32,
                                                  attn_implementation="eager")
        gm.eval()
        with torch.no_grad():
            gl = gm(input_ids=ids).logits
            sd, gsd = model.state_dict(), gm.state_dict()
            # transformers' GGUF load holds the same tensors (its q/k un-permuted for llama)
            worst = max(float((sd[k] - gsd[k]).abs().max()) for k in gsd if k in sd)
        assert worst == 0.0 and all(k in gsd for k in sd if k.endswith(".bias")), (name, worst)
        gl.to(torch.float32).numpy().astype("<f4").tofile(out / "golden" / f"{name}_gguf_logits.bin")
        print(f"{name}.gguf: transformers loads it as {type(gm).__name__}, tensors identical; max |logit diff| vs the "
              f"safetensors model {float((gl - res.logits).abs().max()):.3e}", file=sys.stderr)
        print(f"{name}: loss {res.loss.item():.6f} (biases zeroed {no_bias_loss:.6f}); {offset} gradient values",
              file=sys.stderr)


if __name__ == "__main__":
    main()
