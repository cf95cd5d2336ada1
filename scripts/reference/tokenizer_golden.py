#!/usr/bin/env python3
"""Golden fixtures for the Swift Tokenizer tests (Tests/TokenizerTests/Resources/).

Run with the reference venv (torch, transformers 5.x, tokenizers, gguf-py):

    /work/main/.venv-ref/bin/python scripts/reference/tokenizer_golden.py [--root .] [--data /work/shared/data]

It writes:
  tiny_llama3.json / tiny_gpt2.json / tiny_mixed.json
        three tiny byte-level BPE tokenizers trained here with `tokenizers` (vocab 500), saved as tokenizer.json:
        Llama-3 style (Split regex + ByteLevel without regex, BOS template, merges as [a, b] pairs, ignore_merges),
        GPT-2 style (plain ByteLevel, merges rewritten as "a b" strings), and a mixed pipeline
        (Split "-" merged_with_previous, Digits individual, ByteLevel add_prefix_space, <s> $A </s> template).
  tiny_expected.json
        for each tiny tokenizer: ids of the tricky and fuzz strings without the post-processor's special tokens;
        for the tricky strings also with them, and HF's decoding.
  smollm2_expected.json
        for SmolLM2-135M-Instruct loaded from its GGUF by transformers (AutoTokenizer.from_pretrained(dir,
        gguf_file=...)): ids of the tricky and fuzz strings, and for WikiText-2 test, PTB test and PTB valid
        (project protocol: lines split on "\\n", empty lines dropped, joined with "\\n\\n", encoded once): count,
        SHA-256 of the int32 little-endian ids, first and last 256 ids. The same for the SmolLM2 vocabulary with
        the Llama-3 split (what transformers builds for a GGUF whose tokenizer.ggml.pre is "llama-bpe"), and ids of
        the tricky strings with BOS added (tokenizer.ggml.add_bos_token = true), and ids of all strings with the
        "gpt-4o" split (a regex without a hand-written scanner).

Nothing from the data files is committed except those counts, hashes and 2 x 256 ids per file.
"""

import argparse
import hashlib
import json
import random
import struct
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

TRICKY = [
    "",
    "Hello world",
    " Hello world",
    "I'm sure they're fine, we've said we'll go; she'd know it's HIS. IT'S We'RE You'LL 'sup '' ''s",
    "12345 1234567 3.14159 2024-01-01 1,000,000 ٣٤٥ ½ Ⅻ",
    "naïve café 東京 🙂",
    "a  \n\n b",
    "\tfoo\t\tbar \t baz",
    "   leading spaces",
    "trailing spaces   ",
    "   ",
    "\n",
    "\n\n\n",
    " \n \n ",
    "line1\r\nline2\r\n\r\nline3\r",
    "Hello<|endoftext|>world <|im_start|>user\nhi<|im_end|>\n",
    "<|begin_of_text|>Hi<|eot_id|> <s>x</s>",
    "non\u00a0breaking\u2028sep\u0085nel\u3000ideo\u200bzw",
    "e\u0301 n\u0303 combining",
    "👨‍👩‍👧 family ZWJ 🏳️‍🌈",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "Привет, мир! Ελληνικά",
    "?!... ... --- ''' \"quoted\" (parens) [brackets] {braces}",
    "@@ -1,2 +3 @@",
    "def f(x):\n    return x**2\n\n\n    # comment\n",
    " = = Heading = = \n",
    "word-with-hyphens and a-b-c 1-2-3",
    "x" * 300,
    " " * 40 + "y",
    "𝕳𝖊𝖑𝖑𝖔 𝟙𝟚𝟛",
    "\u0000\u0001\u007f control",
    "ſ 'ſ K ﬁ",
    # canonically equivalent but different scalars: must give different ids (Swift String == would merge them)
    "; \u037e ;\u037e x;y x\u037ey \u00e9 e\u0301 \u00c5 \u212b A\u030a",
    "\ufeffBOM at start, \"\ufeff\" after a quote",
    "vertical\u000btab \u000b\u000b x \u0085\u0085 y",
]

FUZZ_POOL = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    + list("stremdlv'''")
    + list("0123456789")
    + list("      \t\n\n\r")
    + list(".,;:!?-_()[]{}\"/\\@#$%^&*+=<>|~`")
    + ["é", "ï", "ß", "ñ", "东", "京", "語", "🙂", "👍", "\u0301", "\u00a0", "\u2028", "\u0085", "\u3000",
       "٣", "½", "Ⅻ", "ς", "Ж", "ا", "न", "\u200b", "\ufeff", "€", "—", "…", "ſ"]
    + ["<|endoftext|>", "<|im_start|>", "<s>", "</s>", "<|begin_of_text|>", "<|eot_id|>"]
)


def fuzz_strings(n, seed=1234):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(1, 40)
        out.append("".join(rng.choice(FUZZ_POOL) for _ in range(length)))
    return out


def training_text(data_dir):
    base = [
        "The quick brown fox jumps over the lazy dog. I'm sure they're fine; we've said we'll go.",
        "Numbers like 12345, 3.14159 and 2024-01-01 appear in text. Prices: $1,000,000!",
        "naïve café résumé 東京 北京 🙂 👍 Привет мир Ελληνικά مرحبا नमस्ते",
        "def f(x):\n    return x ** 2\n\n\tindented\twith\ttabs\n",
        "a-b-c word-with-hyphens  double  spaces   triple\n\n\nnewlines\r\n",
    ]
    wiki = Path(data_dir) / "wikitext-2-raw" / "wiki.test.raw"
    lines = base * 20
    if wiki.exists():
        lines += wiki.read_text(encoding="utf-8").split("\n")[:3000]
    return lines


def train_tiny(pre_tokenizer, specials, lines, vocab_size=500):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=specials,
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def build_tiny(data_dir):
    lines = training_text(data_dir)
    out = {}

    llama = train_tiny(
        pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        ),
        ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"],
        lines,
    )
    llama.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                special_tokens=[("<|begin_of_text|>", llama.token_to_id("<|begin_of_text|>"))],
            ),
        ]
    )
    llama.add_tokens([AddedToken("<think>", special=False, normalized=False)])
    d = json.loads(llama.to_str())
    d["model"]["ignore_merges"] = True
    out["tiny_llama3"] = d

    gpt2 = train_tiny(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), ["<|endoftext|>"], lines)
    gpt2.post_processor = processors.ByteLevel(trim_offsets=True)
    d = json.loads(gpt2.to_str())
    d["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in d["model"]["merges"]]
    out["tiny_gpt2"] = d

    mixed = train_tiny(
        pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split("-", behavior="merged_with_previous"),
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
            ]
        ),
        ["<s>", "</s>"],
        lines,
    )
    mixed.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> $B:1 </s>:1",
        special_tokens=[("<s>", mixed.token_to_id("<s>")), ("</s>", mixed.token_to_id("</s>"))],
    )
    out["tiny_mixed"] = json.loads(mixed.to_str())
    return out


def ids_hash(ids):
    return hashlib.sha256(struct.pack(f"<{len(ids)}i", *ids)).hexdigest()


def dataset_text(path):
    # newline="" keeps the file's bytes: no universal-newline translation
    with open(path, encoding="utf-8", newline="") as f:
        raw = f.read()
    return "\n\n".join(line for line in raw.split("\n") if line != "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2]))
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--gguf", default="/work/main/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    args = ap.parse_args()
    res = Path(args.root) / "Tests" / "TokenizerTests" / "Resources"
    res.mkdir(parents=True, exist_ok=True)

    fuzz = fuzz_strings(150)
    strings = TRICKY + fuzz

    # (a) tiny tokenizers
    tiny = build_tiny(args.data)
    expected = {"strings": strings, "tricky_count": len(TRICKY), "tokenizers": {}}
    for name, d in tiny.items():
        text = json.dumps(d, ensure_ascii=False, indent=None, separators=(",", ":"))
        (res / f"{name}.json").write_text(text, encoding="utf-8")
        tok = Tokenizer.from_str(text)
        # all strings without the post-processor's tokens; the tricky ones also with them, and decoded
        expected["tokenizers"][name] = {
            "without_special": [tok.encode(s, add_special_tokens=False).ids for s in strings],
            "with_special": [tok.encode(s).ids for s in TRICKY],
            "decoded": [tok.decode(tok.encode(s, add_special_tokens=False).ids, skip_special_tokens=False)
                        for s in TRICKY],
        }
    (res / "tiny_expected.json").write_text(json.dumps(expected, ensure_ascii=False), encoding="utf-8")

    # (b) SmolLM2 from its GGUF, as transformers loads it
    from transformers import AutoTokenizer

    gguf = Path(args.gguf)
    hf = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    backend = hf.backend_tokenizer
    facts = {
        "pre_tokenizer": json.loads(backend.to_str())["pre_tokenizer"],
        "post_processor": json.loads(backend.to_str())["post_processor"],
        "bos_token_id": hf.bos_token_id,
        "eos_token_id": hf.eos_token_id,
        "len": len(hf),
        "hello_ids": hf("Hello world")["input_ids"],
    }
    smol = {"facts": facts, "strings": strings, "ids": [hf(s)["input_ids"] for s in strings], "files": {}}

    # the same vocabulary with the Llama-3 split: what transformers builds when tokenizer.ggml.pre = llama-bpe
    llama_split = Tokenizer.from_str(backend.to_str())
    llama_split.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    smol["llama3_split_ids"] = [llama_split.encode(s).ids for s in strings]
    # a split transformers has no hand-written equivalent for here: exercises the NSRegularExpression fallback
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    gpt4o_split = Tokenizer.from_str(backend.to_str())
    gpt4o_split.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GGUF_PRE_TOKENIZER_SPLITS["gpt-4o"]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    smol["gpt4o_split_ids"] = [gpt4o_split.encode(s).ids for s in strings]
    bos = hf.bos_token_id
    smol["add_bos_ids"] = [[bos] + ids for ids in smol["ids"]]
    smol["llama3_split_files"] = {}

    files = {
        "wikitext2_test": Path(args.data) / "wikitext-2-raw" / "wiki.test.raw",
        "ptb_test": Path(args.data) / "ptb" / "ptb.test.txt",
        "ptb_valid": Path(args.data) / "ptb" / "ptb.valid.txt",
    }
    for key, path in files.items():
        text = dataset_text(path)
        for target, tok_ids in (("files", hf(text)["input_ids"]), ("llama3_split_files", llama_split.encode(text).ids)):
            smol[target][key] = {
                "path": str(path),
                "chars": len(text),
                "count": len(tok_ids),
                "sha256": ids_hash(tok_ids),
                "first": tok_ids[:256],
                "last": tok_ids[-256:],
            }
        print(key, smol["files"][key]["count"], smol["files"][key]["sha256"],
              "| llama3 split:", smol["llama3_split_files"][key]["count"])
    (res / "smollm2_expected.json").write_text(json.dumps(smol, ensure_ascii=False), encoding="utf-8")
    print("facts:", json.dumps(facts)[:400])
    total = sum(p.stat().st_size for p in res.iterdir())
    print(f"fixtures: {total / 1024:.1f} KB in {res}")


if __name__ == "__main__":
    main()
