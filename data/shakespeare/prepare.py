"""Tiny Shakespeare with GPT-2's BPE: train.bin / val.bin (uint16 ids < 50,257) + meta.json in this folder.

The same text and the same 90/10 split of its characters as data/shakespeare_char/prepare.py, whose code this runs
with --tokenizer gpt2 (301,966 / 36,059 tokens, as in nanoGPT). GPT-2's ranks come from --gpt2-ranks PATH, else
$MINILM_GPT2_RANKS, else data/gpt2/gpt2.tiktoken, else tiktoken's download (see minilm.tokenizer.GPT2Tokenizer).
Explained in lectures/01_tokenizer.ipynb.

    python data/shakespeare/prepare.py --source PATH/TO/input.txt --gpt2-ranks PATH/TO/gpt2.tiktoken
"""

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("shakespeare_char_prepare",
                                              HERE.parent / "shakespeare_char" / "prepare.py")
shakespeare_char = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shakespeare_char)


def main(argv=None) -> int:
    return shakespeare_char.main(argv, out_dir=HERE, tokenizer="gpt2")


if __name__ == "__main__":
    sys.exit(main())
