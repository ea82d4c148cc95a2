"""Dates written by people -> ISO 8601: a translation task that needs no download (lectures/08_encoder_decoder.ipynb).

"3 March 1999", "03/03/99", "Wednesday, March 3rd, 1999", "le 3 mars 1999", "Mittwoch, 3. März 1999" ... -> "1999-03-03".
Every pair is generated here, deterministically from --seed, for dates between 1700-01-01 and 2099-12-31 in
English, French, German, Spanish and Italian. The output has to *reorder* the source (the year comes first) and
*translate* month names, which is what cross-attention is for: each output character reads a few source characters.

Splits, with disjoint dates: train / val / test use the SEEN formats; `unseen` uses formats never shown in training
(new combinations of seen pieces, e.g. "March 3rd 1999" without the comma, "le mercredi 3 mars 1999"), to measure how
far the model generalises beyond its formats. One date convention per separator, so no source is ambiguous:
"/" is month/day/year (US), "." is day.month.year; two-digit years are 1950-2049.

Writes, in --out-dir: {split}.tsv (source TAB target, one pair a line, for reading), {split}.src.npy and
{split}.tgt.npy (int16 (N, S_max) and (N, T_max) padded id arrays, loaded with mmap_mode="r"), and meta.json (both
character vocabularies, counts, formats, seed). Target rows are <bos> YYYY-MM-DD <eos>.

    python data/dates/prepare.py                 # ~2 s: 50,000 train pairs, 1,000 val, 2,000 test, 2,000 unseen
"""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import sys
from pathlib import Path

try:
    import minilm  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from minilm.cli import OneLineParser, run_main
from minilm.files import atomic_write_bytes, atomic_write_text
from minilm.tokenizer import CharTokenizer

HERE = Path(__file__).resolve().parent
FIRST, LAST = dt.date(1700, 1, 1), dt.date(2099, 12, 31)

MONTHS = {
    "en": ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"],
    "fr": ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"],
    "de": ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember"],
    "es": ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
           "noviembre", "diciembre"],
    "it": ["gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto", "settembre", "ottobre",
           "novembre", "dicembre"],
}
WEEKDAYS = {  # Monday first, as date.weekday() counts
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "fr": ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"],
    "de": ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"],
    "es": ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"],
    "it": ["lunedì", "martedì", "mercoledì", "giovedì", "venerdì", "sabato", "domenica"],
}


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 3 -> '3rd', 11 -> '11th', 22 -> '22nd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _m(d: dt.date, lang: str) -> str:
    return MONTHS[lang][d.month - 1]


def _w(d: dt.date, lang: str) -> str:
    return WEEKDAYS[lang][d.weekday()]


def _fr_day(d: dt.date) -> str:
    return "1er" if d.day == 1 else str(d.day)  # French writes the first of the month as an ordinal


# name -> (format function, needs a year in 1950-2049 because it writes two digits)
SEEN = {
    "en_d_month_y": (lambda d: f"{d.day} {_m(d, 'en')} {d.year}", False),
    "en_month_d_comma_y": (lambda d: f"{_m(d, 'en')} {d.day}, {d.year}", False),
    "en_weekday_month_ord_y": (lambda d: f"{_w(d, 'en')}, {_m(d, 'en')} {ordinal(d.day)}, {d.year}", False),
    "en_ord_of_month_y": (lambda d: f"{ordinal(d.day)} of {_m(d, 'en')} {d.year}", False),
    "en_mon_d_y": (lambda d: f"{_m(d, 'en')[:3]} {d.day} {d.year}", False),
    "en_dd_MON_y": (lambda d: f"{d.day:02d} {_m(d, 'en')[:3].upper()} {d.year}", False),
    "en_lower_weekday_d_month_y": (lambda d: f"{_w(d, 'en').lower()} {d.day} {_m(d, 'en').lower()} {d.year}", False),
    "us_mm_dd_yyyy": (lambda d: f"{d.month:02d}/{d.day:02d}/{d.year}", False),
    "us_m_d_yy": (lambda d: f"{d.month}/{d.day}/{d.year % 100:02d}", True),
    "eu_dd_mm_yyyy": (lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}", False),
    "compact_yyyymmdd": (lambda d: f"{d.year}{d.month:02d}{d.day:02d}", False),
    "fr_le_d_month_y": (lambda d: f"le {_fr_day(d)} {_m(d, 'fr')} {d.year}", False),
    "fr_weekday_d_month_y": (lambda d: f"{_w(d, 'fr')} {_fr_day(d)} {_m(d, 'fr')} {d.year}", False),
    "fr_d_month_y": (lambda d: f"{_fr_day(d)} {_m(d, 'fr')} {d.year}", False),
    "de_d_month_y": (lambda d: f"{d.day}. {_m(d, 'de')} {d.year}", False),
    "de_weekday_d_month_y": (lambda d: f"{_w(d, 'de')}, {d.day}. {_m(d, 'de')} {d.year}", False),
    "es_d_de_month_de_y": (lambda d: f"{d.day} de {_m(d, 'es')} de {d.year}", False),
    "es_weekday_d_de_month_de_y": (lambda d: f"{_w(d, 'es')}, {d.day} de {_m(d, 'es')} de {d.year}", False),
    "it_d_month_y": (lambda d: f"{d.day} {_m(d, 'it')} {d.year}", False),
    "it_weekday_d_month_y": (lambda d: f"{_w(d, 'it')} {d.day} {_m(d, 'it')} {d.year}", False),
}
UNSEEN = {  # new combinations of pieces the model has seen, never shown in training
    "en_month_ord_y": (lambda d: f"{_m(d, 'en')} {ordinal(d.day)} {d.year}", False),
    "en_d_mon_y": (lambda d: f"{d.day} {_m(d, 'en')[:3]} {d.year}", False),
    "fr_le_weekday_d_month_y": (lambda d: f"le {_w(d, 'fr')} {_fr_day(d)} {_m(d, 'fr')} {d.year}", False),
    "de_d_month_yy": (lambda d: f"{d.day}. {_m(d, 'de')} {d.year % 100:02d}", True),
    "eu_d_m_yyyy": (lambda d: f"{d.day}.{d.month}.{d.year}", False),
}
SPLITS = ("train", "val", "test", "unseen")


def source_chars() -> str:
    """Every character any format (seen or unseen) can write: the source vocabulary is a property of the generator,
    so the unseen split has no out-of-vocabulary characters, and neither has any date a user types in these formats."""
    text = "0123456789 ,./" + "".join(ordinal(n) for n in range(1, 32)) + "of le de er"
    for lang in MONTHS:
        text += "".join(MONTHS[lang] + WEEKDAYS[lang])
        text += "".join(m.lower() + m.upper() + w.lower() for m, w in zip(MONTHS[lang], WEEKDAYS[lang] * 2))
    return "".join(sorted(set(text)))


def make_pairs(dates: list[dt.date], formats: dict, rng: random.Random) -> list[tuple[str, str, str]]:
    """(source, target, format name) for each date, the format drawn uniformly among those that can write it."""
    names = sorted(formats)
    pairs = []
    for d in dates:
        usable = [n for n in names if not formats[n][1] or 1950 <= d.year <= 2049]
        name = rng.choice(usable)
        pairs.append((formats[name][0](d), d.isoformat(), name))
    return pairs


def build(seed: int, sizes: dict[str, int]) -> dict[str, list[tuple[str, str, str]]]:
    """All four splits; each draws its dates without replacement from one shuffled list, so no date is in two."""
    rng = random.Random(seed)
    days = [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
    rng.shuffle(days)
    if sum(sizes.values()) > len(days):
        raise ValueError(f"{sum(sizes.values()):,} pairs asked for but only {len(days):,} distinct dates exist")
    out, start = {}, 0
    for split in SPLITS:
        chosen = days[start:start + sizes[split]]
        start += sizes[split]
        out[split] = make_pairs(chosen, UNSEEN if split == "unseen" else SEEN, rng)
    return out


def encode(pairs, src_tok: CharTokenizer, tgt_tok: CharTokenizer, S: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    src = np.full((len(pairs), S), src_tok.pad_id, dtype=np.int16)  # (N, S_max)
    tgt = np.full((len(pairs), T), tgt_tok.pad_id, dtype=np.int16)  # (N, T_max)
    for i, (s, t, _) in enumerate(pairs):
        ids = src_tok.encode(s)
        src[i, :len(ids)] = ids
        ids = [tgt_tok.bos_id] + tgt_tok.encode(t) + [tgt_tok.eos_id]
        tgt[i, :len(ids)] = ids
    return src, tgt


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def parse_args(argv=None):
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", type=Path, default=HERE, help="where to write the splits and meta.json")
    p.add_argument("--seed", type=int, default=17, help="random seed: the same seed writes the same files")
    p.add_argument("--n-train", type=int, default=50000, help="training pairs")
    p.add_argument("--n-val", type=int, default=1000, help="validation pairs (seen formats)")
    p.add_argument("--n-test", type=int, default=2000, help="test pairs (seen formats, dates never trained on)")
    p.add_argument("--n-unseen", type=int, default=2000, help="pairs in formats never trained on")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_main("", lambda: prepare(args))


def prepare(args) -> int:
    sizes = {"train": args.n_train, "val": args.n_val, "test": args.n_test, "unseen": args.n_unseen}
    for split, n in sizes.items():
        if n < 1:
            raise ValueError(f"--n-{split} must be >= 1, got {n}")
    splits = build(args.seed, sizes)
    src_tok = CharTokenizer(source_chars(), ["pad"])
    tgt_tok = CharTokenizer("-0123456789", ["bos", "eos", "pad"])
    S = max(len(s) for pairs in splits.values() for s, _, _ in pairs)
    T = 12  # <bos> YYYY-MM-DD <eos>
    files = {}
    for split, pairs in splits.items():
        src, tgt = encode(pairs, src_tok, tgt_tok, S, T)
        files[f"{split}.src.npy"] = _npy_bytes(src)
        files[f"{split}.tgt.npy"] = _npy_bytes(tgt)
        files[f"{split}.tsv"] = "".join(f"{s}\t{t}\t{n}\n" for s, t, n in pairs).encode("utf-8")
    meta = {"task": "dates", "seed": args.seed, "counts": {k: len(v) for k, v in splits.items()},
            "src_tokenizer": src_tok.to_dict(), "tgt_tokenizer": tgt_tok.to_dict(), "max_src_len": S,
            "max_tgt_len": T, "seen_formats": sorted(SEEN), "unseen_formats": sorted(UNSEEN),
            "date_range": [FIRST.isoformat(), LAST.isoformat()]}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write_bytes(args.out_dir / name, data)
    atomic_write_text(args.out_dir / "meta.json", json.dumps(meta, ensure_ascii=False, indent=1))  # last: marks done
    for split, n in meta["counts"].items():
        print(f"wrote {args.out_dir / split}.tsv / .src.npy / .tgt.npy: {n:,} pairs, e.g. "
              f"{splits[split][0][0]!r} -> {splits[split][0][1]!r}")
    print(f"wrote {args.out_dir / 'meta.json'}: source vocab {src_tok.vocab_size} chars, target {tgt_tok.vocab_size}, "
          f"longest source {S}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
