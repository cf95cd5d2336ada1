"""Tokenizer fixtures for the SentencePiece-style, Llama-3 and Qwen2 tokenizers (issue 14, item 1).

Trains small tokenizers on ptb.valid (never a test split), saves them the way transformers does, writes vocab-only
GGUFs with the `gguf` package, and records transformers' (AutoTokenizer, fast) ids on tricky strings and on the
full WikiText-2 and PTB test texts (the project protocol: common.dataset_text). Needs transformers, tokenizers,
sentencepiece, gguf (no torch):
    scripts/reference/run.sh make_tokenizer_fixtures.py            # or: PYTHONPATH=scripts/reference python ...
Output: Tests/TokenizerTests/Resources/{spm,llama3,qwen2}/... and breadth_expected.json.
"""
import hashlib, json, os, shutil, struct, sys, tempfile

import numpy as np
import sentencepiece as spm
import gguf
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, Regex, processors
from transformers import AutoTokenizer, LlamaTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../.."))
RES = os.path.join(ROOT, "Tests/TokenizerTests/Resources")
DATA = os.path.abspath(os.path.join(ROOT, "../shared/data"))
if not os.path.isdir(DATA):
    DATA = "/work/shared/data"
TRAIN = os.path.join(DATA, "ptb/ptb.valid.txt")
FILES = {"wikitext2_test": os.path.join(DATA, "wikitext-2-raw/wiki.test.raw"),
         "ptb_test": os.path.join(DATA, "ptb/ptb.test.txt")}

LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

STRINGS = [
    "Hello world", " = Robert Boulter = \n", "  leading spaces", "trailing  ", "", " ", "\n", "a\n\nb",
    "the <unk> company said", "<unk>", "x <unk>", "<s> inside </s> text", "café naïve Ωμέγα 日本語 🙂",
    "1234567 3.14 $ 1,000", "don't I'LL we've", "tab\there", "a  b   c", "\u00a0nbsp", "\r\nwindows\r\n",
    "Ünïcödé  mïxed\u3000space", "emoji 👍🏽 flag 🇫🇷", "'s 'S 're", "<0x41> literal", "▁already▁marked",
]


def dataset_text(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    return "\n\n".join(l for l in lines if l)


def ids_entry(ids, text):
    arr = np.asarray(ids, dtype="<i4")
    return {"chars": len(text), "count": len(ids), "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
            "first": [int(x) for x in ids[:200]], "last": [int(x) for x in ids[-200:]]}


def record(tok, raw=None):
    """transformers' ids (add_special_tokens True and False) and decodes for the strings, and the files."""
    out = {"with_special": [], "without_special": [], "decoded": [], "files": {}}
    for s in STRINGS:
        w = tok(s).input_ids
        wo = tok(s, add_special_tokens=False).input_ids
        out["with_special"].append(w)
        out["without_special"].append(wo)
        out["decoded"].append(tok.decode(wo))
        if raw is not None:
            assert raw.encode(s).ids == w, (s, raw.encode(s).ids, w)
    for k, p in FILES.items():
        text = dataset_text(p)
        ids = tok(text).input_ids
        if raw is not None:
            assert raw.encode(text).ids == ids, k
        out["files"][k] = ids_entry(ids, text)
        print(f"  {k}: {len(ids)} ids", file=sys.stderr)
    return out


def write_gguf(path, arch, model, tokens, scores, types, bos, eos, unk, add_bos, merges=None, pre=None):
    w = gguf.GGUFWriter(path, arch)
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    if scores is not None:
        w.add_token_scores(scores)
    w.add_token_types(types)
    if merges is not None:
        w.add_token_merges(merges)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    if unk is not None:
        w.add_unk_token_id(unk)
    w.add_add_bos_token(add_bos)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def spm_fixtures(expected, work):
    prefix = os.path.join(work, "sp")
    spm.SentencePieceTrainer.train(
        input=TRAIN, model_prefix=prefix, vocab_size=2000, model_type="bpe", byte_fallback=True,
        character_coverage=1.0, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    mdir = os.path.join(work, "spm_model")
    os.makedirs(mdir, exist_ok=True)
    shutil.copy(prefix + ".model", os.path.join(mdir, "tokenizer.model"))
    conv = LlamaTokenizer.from_pretrained(mdir)
    saved = os.path.join(work, "spm_saved")
    conv.save_pretrained(saved)
    j = json.load(open(os.path.join(saved, "tokenizer.json"), encoding="utf-8"))
    cfg = json.load(open(os.path.join(saved, "tokenizer_config.json")))
    # As released Llama checkpoints ship it: the post-processor adds BOS, the config says so too.
    j["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    cfg["add_bos_token"] = True
    cfg["add_eos_token"] = False
    for k in ("is_local", "local_files_only", "extra_special_tokens"):
        cfg.pop(k, None)
    cfg["model_max_length"] = 2048

    variants = {}
    # spm_metaspace: transformers 5's own save (Metaspace prepend first, merges as pairs), class LlamaTokenizer.
    variants["spm_metaspace"] = (j, cfg)
    # spm_legacy: the older Llama-2 / TinyLlama / Mistral form: Prepend + Replace normalizer, no pre-tokenizer,
    # merges as "a b" strings, loaded as written (class PreTrainedTokenizerFast).
    jl = json.loads(json.dumps(j))
    jl["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    jl["pre_tokenizer"] = None
    jl["model"]["merges"] = [" ".join(m) for m in jl["model"]["merges"]]
    jl["model"]["unk_token"] = "<unk>"
    cl = dict(cfg, tokenizer_class="PreTrainedTokenizerFast")
    variants["spm_legacy"] = (jl, cl)
    # spm_legacy_llamaclass: the same legacy file named LlamaTokenizer: transformers 5 replaces its normalizer by
    # Metaspace(first) -- what a Llama-2 checkpoint gets from AutoTokenizer today.
    variants["spm_legacy_llamaclass"] = (jl, cfg)
    for name, (tj, tc) in variants.items():
        d = os.path.join(RES, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False, separators=(",", ":"))
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(tc, f, indent=1)
        tok = AutoTokenizer.from_pretrained(d)
        print(name, type(tok).__name__, file=sys.stderr)
        raw = None if name == "spm_legacy_llamaclass" else Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        expected[name] = record(tok, raw)

    # vocab-only GGUF: tokens, scores, token types straight from the sentencepiece model (as llama.cpp's
    # converter writes them), add_bos_token true.
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i): t = gguf.TokenType.UNKNOWN
        elif sp.is_control(i): t = gguf.TokenType.CONTROL
        elif sp.is_unused(i): t = gguf.TokenType.UNUSED
        elif sp.is_byte(i): t = gguf.TokenType.BYTE
        else: t = gguf.TokenType.NORMAL
        types.append(int(t))
    gpath = os.path.join(RES, "spm_vocab.gguf")
    write_gguf(gpath, "llama", "llama", tokens, scores, types, 1, 2, 0, True)
    tok = AutoTokenizer.from_pretrained(RES, gguf_file="spm_vocab.gguf")
    print("spm_gguf", type(tok).__name__, file=sys.stderr)
    expected["spm_gguf"] = record(tok)


def bpe_fixture(expected, name, regex, pre):
    tk = Tokenizer(models.BPE(ignore_merges=name == "llama3"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>"] if name == "llama3" else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train([TRAIN], trainer)
    if name == "llama3":
        tk.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
            special_tokens=[("<|begin_of_text|>", tk.token_to_id("<|begin_of_text|>"))])
        cfg = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "clean_up_tokenization_spaces": True,
               "model_max_length": 131072, "tokenizer_class": "PreTrainedTokenizerFast"}
    else:
        tk.post_processor = processors.ByteLevel(trim_offsets=False)
        cfg = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None,
               "clean_up_tokenization_spaces": False, "model_max_length": 32768, "tokenizer_class": "Qwen2Tokenizer"}
    d = os.path.join(RES, name)
    os.makedirs(d, exist_ok=True)
    tk.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    tok = AutoTokenizer.from_pretrained(d)
    print(name, type(tok).__name__, file=sys.stderr)
    expected[name] = record(tok, Tokenizer.from_file(os.path.join(d, "tokenizer.json")))
    # vocab-only GGUF (tokenizer.ggml.model gpt2, the pre name llama.cpp uses)
    j = json.load(open(os.path.join(d, "tokenizer.json"), encoding="utf-8"))
    vocab = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    types = [int(gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL) for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    bos = tk.token_to_id(specials[0])
    eos = tk.token_to_id(specials[1] if name == "llama3" else "<|im_end|>")
    gname = f"{name}_vocab.gguf"
    write_gguf(os.path.join(RES, gname), "llama" if name == "llama3" else "qwen2", "gpt2", tokens, None, types,
               bos, eos, None, name == "llama3", merges=merges, pre="llama-bpe" if name == "llama3" else "qwen2")
    tok = AutoTokenizer.from_pretrained(RES, gguf_file=gname)
    expected[name + "_gguf"] = record(tok)


def main():
    expected = {"strings": STRINGS, "files": {k: os.path.relpath(p, ROOT) for k, p in FILES.items()}, "tokenizers": {}}
    with tempfile.TemporaryDirectory() as work:
        spm_fixtures(expected["tokenizers"], work)
    bpe_fixture(expected["tokenizers"], "llama3", LLAMA3, "llama-bpe")
    bpe_fixture(expected["tokenizers"], "qwen2", QWEN2, "qwen2")
    with open(os.path.join(RES, "breadth_expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    for k, v in expected["tokenizers"].items():
        print(k, {f: (e["count"], e["sha256"][:12]) for f, e in v["files"].items()}, file=sys.stderr)


if __name__ == "__main__":
    main()
