#!/usr/bin/env python3
"""Checks a tokenizer directory written by llmprune against transformers' tokenizer of the source GGUF.

    /work/main/.venv-ref/bin/python scripts/reference/check_tokenizer_export.py --dir D --gguf G \
        [--pre llama-bpe] [--add-bos]

D holds what `BPETokenizer.tokenizerJSON()` / `tokenizerConfigJSON(modelMaxLength:)` write (tokenizer.json +
tokenizer_config.json; `swift test --filter TokenizerTests` writes D = $LLMPRUNE_EXPORT_DIR/smollm2 when that is
set). D is loaded with `AutoTokenizer.from_pretrained(D)`; the reference with
`AutoTokenizer.from_pretrained(dirname(G), gguf_file=basename(G))`. `--pre` replaces the reference's split the
way transformers does for a GGUF whose tokenizer.ggml.pre is that value, `--add-bos` makes it add BOS (for the
`smollm2_llama3_bos` variant the test also writes).

Compared: the tokenizer class and special tokens; ids of the full WikiText-2 test and PTB test texts (project
protocol: lines split on "\\n", empty lines dropped, joined with "\\n\\n"; add_special_tokens=True); ids of the
tricky and fuzz strings of tokenizer_golden.py with and without special tokens, and their decodings. Prints
counts and OK / DIFF per item; exits 1 on any difference.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import dataset_path, dataset_text, ids_sha256  # noqa: E402  (sets HF offline)
from tokenizer_golden import TRICKY, fuzz_strings  # noqa: E402


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True, help="exported tokenizer directory")
    ap.add_argument("--gguf", required=True, help="source GGUF")
    ap.add_argument("--pre", help="reference split as for this tokenizer.ggml.pre value")
    ap.add_argument("--add-bos", action="store_true", help="reference adds BOS")
    ap.add_argument("--fuzz", type=int, default=2000, help="number of fuzz strings (default 2000)")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    d = Path(args.dir)
    print(f"files in {d}: {sorted(p.name for p in d.iterdir())}")
    tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    g = Path(args.gguf)
    ref = AutoTokenizer.from_pretrained(str(g.parent), gguf_file=g.name, local_files_only=True)
    if args.add_bos:
        ref.add_bos_token = True  # the setter rebuilds the post-processor (a from_pretrained kwarg would not)
    if args.pre:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import set_split_regex
        set_split_regex(ref, {"pre_tokenizer_type": args.pre})

    failures = 0

    def report(name, ok, detail=""):
        nonlocal failures
        failures += 0 if ok else 1
        print(f"{'OK  ' if ok else 'DIFF'} {name}{(': ' + detail) if detail else ''}")

    print(f"exported: {type(tok).__name__}, len {len(tok)}; reference: {type(ref).__name__}, len {len(ref)}")
    report("len(tokenizer)", len(tok) == len(ref), f"{len(tok)} vs {len(ref)}")
    # (not add_bos_token / add_eos_token: transformers 5 drops them from tokenizer_config.json when tokenizer.json is
    # present, whose post-processor decides; the ids below show what is added)
    for attr in ["bos_token", "eos_token", "unk_token", "pad_token"]:
        a, b = getattr(tok, attr, None), getattr(ref, attr, None)
        report(attr, a == b, f"{a!r} vs {b!r}")
    report("all_special_ids", sorted(tok.all_special_ids) == sorted(ref.all_special_ids),
           f"{len(tok.all_special_ids)} ids")
    report("special tokens added to \"\"", tok("")["input_ids"] == ref("")["input_ids"], f"{tok('')['input_ids']}")
    report("vocabulary", tok.get_vocab() == ref.get_vocab(), f"{len(tok.get_vocab())} entries")
    report("chat_template", tok.chat_template == ref.chat_template,
           "none" if ref.chat_template is None else f"{len(ref.chat_template)} chars")
    report("added tokens", tok.get_added_vocab() == ref.get_added_vocab(), f"{len(tok.get_added_vocab())} tokens")

    for name in ["wikitext2", "ptb"]:
        path = dataset_path(name)
        if not path.exists():
            print(f"skip {name}: {path} absent")
            continue
        text = dataset_text(name)
        a = tok(text, add_special_tokens=True)["input_ids"]
        b = ref(text, add_special_tokens=True)["input_ids"]
        detail = f"{len(text)} chars, {len(a)} ids (reference {len(b)}), sha256 {ids_sha256(a)[:16]}"
        if a != b:
            detail += f", first difference at {first_diff(a, b)}"
        report(f"{name} ids", a == b, detail)

    strings = TRICKY + fuzz_strings(args.fuzz)
    diffs = {"ids": 0, "ids without special": 0, "decode": 0}
    for s in strings:
        a, b = tok(s)["input_ids"], ref(s)["input_ids"]
        if a != b:
            diffs["ids"] += 1
            if diffs["ids"] <= 5:
                print(f"  {s!r}: {a} vs {b}")
        a2, b2 = tok(s, add_special_tokens=False)["input_ids"], ref(s, add_special_tokens=False)["input_ids"]
        diffs["ids without special"] += a2 != b2
        diffs["decode"] += tok.decode(a2) != ref.decode(a2)
    for k, n in diffs.items():
        report(f"strings {k}", n == 0, f"{len(strings)} strings ({len(TRICKY)} tricky), {n} differ")

    print("IDENTICAL" if failures == 0 else f"{failures} DIFFERENCES")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
