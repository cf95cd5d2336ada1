#!/usr/bin/env python3
"""Checks SentencePiece-style tokenizer directories written by llmprune against transformers' ids on the originals.

    LLMPRUNE_EXPORT_DIR=/tmp/spm swift test --filter SPMExportTests
    LLMPRUNE_VENV=/work/main/.venv-ref scripts/reference/run.sh check_spm_export.py --dir /tmp/spm \
        [--names spm_metaspace spm_legacy spm_legacy_llamaclass spm_gguf]

Each D/<name> (tokenizer.json + tokenizer_config.json written by `BPETokenizer.writeHuggingFaceFiles`) is loaded
with `AutoTokenizer.from_pretrained(D/<name>)` and compared with Tests/TokenizerTests/Resources/
breadth_expected.json (transformers' ids on the original fixture: tokenizer.json directory or vocab-only GGUF):
ids of the full WikiText-2 test and PTB test texts (project protocol, add_special_tokens=True: count, sha256,
first/last 200) and of the tricky strings with and without special tokens, and their decodings. Prints counts and
OK / DIFF per item; exits 1 on any difference.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import dataset_text, ids_sha256  # noqa: E402  (sets HF offline)

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = ROOT / "Tests/TokenizerTests/Resources/breadth_expected.json"
NAMES = ["spm_metaspace", "spm_legacy", "spm_legacy_llamaclass", "spm_gguf"]


def data_file(rel):
    p = (ROOT / rel).resolve()
    if p.exists():
        return p
    return Path("/work/shared/data") / rel.split("shared/data/")[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True, help="directory holding one exported tokenizer directory per name")
    ap.add_argument("--names", nargs="*", default=NAMES)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    from transformers import AutoTokenizer

    exp = json.loads(EXPECTED.read_text())
    texts = {k: dataset_text(data_file(v)) for k, v in exp["files"].items()}
    bad = 0
    for name in a.names:
        e = exp["tokenizers"][name]
        tok = AutoTokenizer.from_pretrained(str(Path(a.dir) / name), local_files_only=True)
        print(f"{name}: {type(tok).__name__}, bos {tok.bos_token!r} eos {tok.eos_token!r} unk {tok.unk_token!r}")
        for k, text in texts.items():
            ids = tok(text).input_ids
            f = e["files"][k]
            ok = (len(ids) == f["count"] and ids_sha256(ids) == f["sha256"]
                  and ids[:len(f["first"])] == f["first"] and ids[-len(f["last"]):] == f["last"])
            bad += not ok
            print(f"  {k}: {len(ids)} ids (expected {f['count']}), sha256 {ids_sha256(ids)[:16]} "
                  f"{'OK' if ok else 'DIFF (expected ' + f['sha256'][:16] + ')'}")
        sdiff = 0
        for i, s in enumerate(exp["strings"]):
            w, wo = tok(s).input_ids, tok(s, add_special_tokens=False).input_ids
            d = tok.decode(e["without_special"][i])
            if w != e["with_special"][i] or wo != e["without_special"][i] or d != e["decoded"][i]:
                sdiff += 1
                print(f"    DIFF string #{i} {s!r}: {w} / {wo} / {d!r}, expected {e['with_special'][i]} / "
                      f"{e['without_special'][i]} / {e['decoded'][i]!r}")
        bad += sdiff
        print(f"  strings: {len(exp['strings'])} x (with, without special, decode) {'OK' if sdiff == 0 else f'{sdiff} DIFF'}")
    print("ALL OK" if bad == 0 else f"{bad} DIFF")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
