"""Shared helpers for the llmprune PyTorch reference scripts.

Everything is loaded from local files; nothing is ever fetched from a hub.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "models" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DATA_ROOT = Path(os.environ.get("LLMPRUNE_DATA", REPO_ROOT.parent / "shared" / "data"))

DATASETS = {
    "wikitext2": "wikitext-2-raw/wiki.test.raw",
    "ptb": "ptb/ptb.test.txt",
    "ptb-valid": "ptb/ptb.valid.txt",
}

# Never talk to the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def add_threads_arg(parser):
    parser.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", "2")),
                        help="torch intra-op threads (default: $THREADS or 2)")


def set_threads(n: int):
    import torch
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def _split(path):
    p = Path(path)
    if p.is_dir():
        return str(p), {}
    if p.suffix == ".gguf":
        return str(p.parent), {"gguf_file": p.name}
    raise ValueError(f"model path must be a directory (config.json + safetensors) or a .gguf file: {path}")


def load_model(path, dtype=None):
    """Directory -> from_pretrained(dir); .gguf file -> from_pretrained(dirname, gguf_file=basename). fp32, eval."""
    import torch
    from transformers import AutoModelForCausalLM
    d, kw = _split(path)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=dtype or torch.float32, local_files_only=True, **kw)
    model.eval()
    return model


def load_tokenizer(path):
    from transformers import AutoTokenizer
    d, kw = _split(path)
    return AutoTokenizer.from_pretrained(d, local_files_only=True, **kw)


def dataset_path(name_or_path) -> Path:
    if name_or_path in DATASETS:
        return DATA_ROOT / DATASETS[name_or_path]
    return Path(name_or_path)


def dataset_text(name_or_path) -> str:
    """THE PROJECT PROTOCOL: split the file on '\\n', drop empty lines, join with '\\n\\n'."""
    text = dataset_path(name_or_path).read_text(encoding="utf-8")
    lines = [l for l in text.split("\n") if l != ""]
    return "\n\n".join(lines)


def tokenize_dataset(tokenizer, name_or_path):
    """Tokenize the whole protocol text ONCE with add_special_tokens=True. Returns a list of ints."""
    text = dataset_text(name_or_path)
    return tokenizer(text, add_special_tokens=True)["input_ids"]


def ids_sha256(ids) -> str:
    import numpy as np
    return hashlib.sha256(np.asarray(ids, dtype="<i4").tobytes()).hexdigest()


def log(*a):
    print(*a, file=sys.stderr, flush=True)
