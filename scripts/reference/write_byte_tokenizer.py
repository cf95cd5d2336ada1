#!/usr/bin/env python3
"""Writes OUT_DIR/tokenizer.json + tokenizer_config.json: a 256-entry byte-level BPE tokenizer for the 256-token test
fixtures (make_tiny_fixtures.byte_vocab: ids 0-2 <unk> <s> </s>, id b ≥ 3 the byte b; no merges), so llmprune and
transformers can both run a fixture on text.   Run: scripts/reference/run.sh write_byte_tokenizer.py OUT_DIR"""
import json
import sys
from pathlib import Path

from make_tiny_fixtures import byte_vocab
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

tokens, _ = byte_vocab()
tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[]))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
tok.decoder = decoders.ByteLevel()
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
tok.save(str(out / "tokenizer.json"))
(out / "tokenizer_config.json").write_text(json.dumps(dict(
    tokenizer_class="PreTrainedTokenizerFast", bos_token="<s>", eos_token="</s>", unk_token="<unk>")))
