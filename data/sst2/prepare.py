"""GLUE SST-2 (binary sentiment): cleaned train.tsv / dev.tsv / test.tsv + meta.json in this folder.

Source: the GLUE zip (https://dl.fbaipublicfiles.com/glue/data/SST-2.zip, unpacks to SST-2/{train,dev,test}.tsv)
or a folder holding the three TSVs. The TSVs are checked against their
known sha256 (GLUE's files are byte-identical everywhere they are copied). Output: `sentence<TAB>label` rows
(67,349 train / 872 dev, labels 0 = negative, 1 = positive) and `index<TAB>sentence` for the 1,821 unlabelled
test rows, with sentences stripped of GLUE's trailing space. Tokenization happens at fine-tuning time, with the
pretrained checkpoint's tokenizer (finetune.py reads these files with minilm.labelled.read_labelled).
Explained in lectures/07_finetuning.ipynb.

    python data/sst2/prepare.py --source PATH/TO/SST-2   # a folder with GLUE's three TSVs
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

try:
    import minilm  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from minilm.cli import OneLineParser, run_main
from minilm.files import atomic_write_bytes, atomic_write_text, fetch, sha256_file
from minilm.labelled import read_labelled

URL = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
SHA256 = {  # GLUE's SST-2 files, byte-identical in every copy of the zip
    "train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
    "dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
    "test.tsv": "69a938605609b3e6663b4487918fe1565eb293734e6e520d0366d1d412fd2a13",
}
LABELS, LABEL_NAMES = ["0", "1"], ["negative", "positive"]
HERE = Path(__file__).resolve().parent


def parse_args(argv=None):
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, help="a folder with train.tsv/dev.tsv/test.tsv, or the GLUE SST-2.zip")
    p.add_argument("--out-dir", type=Path, default=HERE, help="where to write the cleaned TSVs and meta.json")
    return p.parse_args(argv)


def find_files(source: Path, raw_dir: Path) -> dict[str, Path]:
    """Paths of the three GLUE files: in the folder itself, or extracted from the zip (SST-2/<name>.tsv) to raw/."""
    if source.is_dir():
        missing = [n for n in SHA256 if not (source / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{source} lacks {missing}: expected GLUE's train.tsv, dev.tsv and test.tsv")
        return {n: source / n for n in SHA256}
    if source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as z:
            names = {Path(m).name: m for m in z.namelist() if Path(m).parent.name == "SST-2"}
            missing = [n for n in SHA256 if n not in names]
            if missing:
                raise ValueError(f"{source} has no SST-2/{missing[0]}: is it GLUE's SST-2.zip?")
            raw_dir.mkdir(parents=True, exist_ok=True)
            for n in SHA256:
                atomic_write_bytes(raw_dir / n, z.read(names[n]))
        return {n: raw_dir / n for n in SHA256}
    raise FileNotFoundError(f"--source {source} is neither a folder with the TSVs nor a zip file")


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_main("", lambda: prepare(args), errors=(zipfile.BadZipFile,))


def prepare(args) -> int:
    out = args.out_dir
    downloaded = args.source is None
    source = fetch(URL, out / "raw" / "SST-2.zip") if downloaded else args.source
    paths = find_files(source, out / "raw" / "SST-2")
    for name, path in paths.items():
        digest = sha256_file(path)
        if digest != SHA256[name]:
            msg = f"{path} has sha256 {digest}, expected {SHA256[name]}"
            if downloaded:
                raise ValueError(msg + "; download it elsewhere and pass --source PATH to continue offline")
            print(f"note: {msg}; using it anyway")
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in SHA256:
        # read_labelled validates every row (and names the line of any problem) and strips the text
        if name == "test.tsv":
            texts, _, _ = read_labelled(paths[name], "sentence", None, fmt="tsv")
            rows = ["index\tsentence"] + [f"{i}\t{t}" for i, t in enumerate(texts)]
        else:
            texts, ids, _ = read_labelled(paths[name], "sentence", "label", labels=LABELS, fmt="tsv")
            rows = ["sentence\tlabel"] + [f"{t}\t{LABELS[y]}" for t, y in zip(texts, ids)]
        if any("\t" in t or "\n" in t for t in texts):
            raise ValueError(f"{name}: a sentence contains a tab or newline")
        atomic_write_text(out / name, "\n".join(rows) + "\n")
        counts[name.removesuffix(".tsv")] = len(texts)
    meta = {"format": "minilm-labelled-1", "files": {k: f"{k}.tsv" for k in counts}, "counts": counts,
            "text_column": "sentence", "label_column": "label", "labels": LABELS, "label_names": LABEL_NAMES,
            "source": str(source)}
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=1))
    for split, n in counts.items():
        what = "unlabelled rows" if split == "test" else "labelled rows"
        print(f"wrote {out / (split + '.tsv')}: {n:,} {what}")
    print(f"wrote {out / 'meta.json'}: labels {LABELS} = {LABEL_NAMES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
