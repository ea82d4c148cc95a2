"""Data pipeline: token files + meta.json, causal windows, MLM masking rates (Eq. 2.4), document batches,
labelled-text reading with clear errors, stratified subsamples, and ClassificationBatches padding and exact
mid-epoch resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from minilm.config import IGNORE_INDEX
from minilm.data import (get_causal_batch, get_document_batch, get_mlm_batch, get_mlm_document_batch, load_documents,
                         load_meta, load_split, mask_tokens, token_dtype, write_tokens)
from minilm.labelled import ClassificationBatches, read_labelled, stratified_sample
from minilm.tokenizer import CharTokenizer, tokenizer_from_dict

TEXT = "the quick brown fox jumps over the lazy dog. " * 40


@pytest.fixture
def tok() -> CharTokenizer:
    return CharTokenizer.train(TEXT + "?!\"'", special_tokens=("pad", "mask", "cls", "sep"))


# ---- token files ----

def test_write_and_load_split_round_trip(tmp_path, tok):
    ids = np.array(tok.encode(TEXT))
    meta = write_tokens(tmp_path, {"train": ids[:1000], "val": ids[1000:]}, tok, extra={"source": "test"})
    assert meta == load_meta(tmp_path) and meta["dtype"] == "uint16" and meta["source"] == "test"
    train = load_split(tmp_path, "train")
    assert isinstance(train, np.memmap) and train.dtype == np.uint16 and len(train) == 1000
    assert np.array_equal(train, ids[:1000]) and np.array_equal(load_split(tmp_path, "val"), ids[1000:])
    assert tokenizer_from_dict(meta["tokenizer"]).decode(train[:20].tolist()) == TEXT[:20]
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporary files behind


def test_token_dtype_widens_past_65535():
    assert token_dtype(65) == np.uint16 and token_dtype(50257) == np.uint16 and token_dtype(65535) == np.uint16
    assert token_dtype(65536) == np.uint32 and token_dtype(100_277) == np.uint32


def test_load_split_rejects_a_truncated_file(tmp_path, tok):
    write_tokens(tmp_path, {"train": np.arange(100) % 20}, tok)
    (tmp_path / "train.bin").write_bytes(b"\0" * 150)
    with pytest.raises(ValueError, match="train.bin has 150 bytes but meta.json says 100 tokens.*re-run prepare.py"):
        load_split(tmp_path, "train")
    with pytest.raises(ValueError, match="split 'val' not in"):
        load_split(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="prepare.py"):
        load_split(tmp_path / "nowhere", "train")


def test_write_tokens_rejects_out_of_range_ids(tmp_path, tok):
    with pytest.raises(ValueError, match=r"ids must lie in \[0, "):
        write_tokens(tmp_path, {"train": np.array([0, tok.vocab_size])}, tok)


# ---- causal LM ----

def test_causal_batch_shapes_dtype_and_shift(tmp_path, tok):
    data = np.arange(5000, dtype=np.uint16)  # token value = position, so every window is checkable
    x, y = get_causal_batch(data, 8, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1)  # y is x shifted by one position
    assert torch.equal(x[:, 1:] - x[:, :1], torch.arange(1, 16).expand(8, 15))  # contiguous windows
    x2, _ = get_causal_batch(data, 8, 16, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)  # seeded
    with pytest.raises(ValueError, match="too few"):
        get_causal_batch(data[:10], 2, 16, torch.Generator())


# ---- MLM masking (Eq. 2.4) ----

def test_causal_windows_reach_the_last_start_and_fit_a_split_of_exactly_t_plus_1():
    T = 8
    x, _ = get_causal_batch(np.arange(T + 3), 300, T, torch.Generator().manual_seed(0))
    assert set(x[:, 0].tolist()) == {0, 1, 2}  # every start 0 .. len - T - 1, the last one included
    x, y = get_causal_batch(np.arange(T + 1), 4, T, torch.Generator().manual_seed(0))  # exactly one window
    assert x.tolist() == [list(range(T))] * 4 and y[0, -1] == T  # the split's last token is a target
    with pytest.raises(ValueError, match="too few"):
        get_causal_batch(np.arange(T), 1, T, torch.Generator())


@pytest.mark.parametrize("specials", [("pad", "mask"), ("pad", "mask", "cls")])
def test_masked_lm_windows_reach_the_last_start_and_fit_a_split_of_exactly_t(specials):
    tok = CharTokenizer.train("abcdefghijklmnop", special_tokens=specials)
    T = 8
    body = T - (tok.cls_id is not None)  # a [cls] first leaves T - 1 tokens of the stream
    inputs, _ = get_mlm_batch(np.arange(body + 2), 300, T, torch.Generator().manual_seed(0), tok, mask_prob=1e-9)
    assert set(inputs[:, -body].tolist()) == {0, 1, 2}  # every start 0 .. len - body, nothing masked
    inputs, _ = get_mlm_batch(np.arange(body), 2, T, torch.Generator().manual_seed(0), tok, mask_prob=1e-9)
    assert inputs[0, -body:].tolist() == list(range(body))


def test_mask_tokens_rates_80_10_10_and_never_specials():
    V, mask_id, pad_id, cls_id = 1000, 997, 998, 999
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 990, (64, 512), generator=g)
    idx[:, 0] = cls_id
    idx[:, -40:] = pad_id
    attention_mask = (idx != pad_id).long()
    attention_mask[:, 100:110] = 0  # masked-out positions are never selected either
    inputs, targets = mask_tokens(idx, mask_id, V, [pad_id, cls_id, mask_id], g, attention_mask=attention_mask)
    eligible = (idx < 990) & attention_mask.bool()
    selected = targets != IGNORE_INDEX
    assert not (selected & ~eligible).any()  # special, pad and attention-masked positions never selected
    assert torch.equal(inputs[~selected], idx[~selected]) and torch.equal(targets[selected], idx[selected])
    frac = selected.sum().item() / eligible.sum().item()
    assert abs(frac - 0.15) < 0.01
    n = selected.sum().item()
    as_mask = (inputs[selected] == mask_id).sum().item() / n
    unchanged = (inputs[selected] == idx[selected]).sum().item() / n
    randomised = 1 - as_mask - unchanged
    assert abs(as_mask - 0.8) < 0.02 and abs(randomised - 0.1) < 0.02 and abs(unchanged - 0.1) < 0.02
    replaced = inputs[selected & (inputs != idx) & (inputs != mask_id)]
    assert replaced.numel() > 0 and replaced.max() < 997  # random tokens are never special ids


def test_mask_tokens_rate_over_many_draws():
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 60, (16, 64))
    fracs = [(mask_tokens(idx, 61, 64, [60, 61, 62, 63], g)[1] != IGNORE_INDEX).float().mean().item()
             for _ in range(200)]
    assert abs(np.mean(fracs) - 0.15) < 0.01


def test_mlm_packed_batch(tok):
    data = np.array(tok.encode(TEXT), dtype=np.uint16)
    inputs, targets = get_mlm_batch(data, 4, 32, torch.Generator().manual_seed(0), tok)
    assert inputs.shape == targets.shape == (4, 32) and inputs.dtype == targets.dtype == torch.int64
    assert ((targets == IGNORE_INDEX) | (targets < tok.base_vocab_size)).all()
    assert (inputs[:, 0] == tok.cls_id).all() and (targets[:, 0] == IGNORE_INDEX).all()  # BERT: [cls] first
    assert (inputs[:, 1:] != tok.cls_id).all()  # the rest is the stream, which holds no [cls]


def test_document_batches_pad_truncate_and_mask(tmp_path, tok):
    docs = ["the fox", "a lazy dog jumps over the quick brown fox again", "dog"]
    encoded = [tok.encode(d) for d in docs]
    stream, spans, pos = [], [], 0
    for e in encoded:
        spans.append((pos, pos + len(e)))
        stream += e + [tok.sep_id]
        pos += len(e) + 1
    write_tokens(tmp_path, {"train": np.array(stream)}, tok, documents={"train": spans})
    data, documents = load_split(tmp_path, "train"), load_documents(tmp_path, "train")
    assert documents.shape == (3, 2) and documents[1, 0] == len(encoded[0]) + 1
    idx, am = get_document_batch(data, documents, [0, 1, 2], max_len=20, pad_id=tok.pad_id,
                                 cls_id=tok.cls_id, sep_id=tok.sep_id)
    assert idx.shape == am.shape == (3, 20) and idx.dtype == am.dtype == torch.int64
    assert idx[0, : len(encoded[0]) + 2].tolist() == [tok.cls_id, *encoded[0], tok.sep_id]
    assert (idx[0, len(encoded[0]) + 2 :] == tok.pad_id).all() and am[0].sum() == len(encoded[0]) + 2
    assert idx[1].tolist() == [tok.cls_id, *encoded[1][:18], tok.sep_id]  # truncated to max_len
    assert torch.equal(am.bool(), idx != tok.pad_id)
    short, _ = get_document_batch(data, documents, [0, 2], max_len=20, pad_id=tok.pad_id)
    assert short.shape == (2, len(encoded[0]))  # padded to the longest row of the batch, not max_len
    inputs, targets, am = get_mlm_document_batch(data, documents, 8, 16, torch.Generator().manual_seed(0), tok)
    assert inputs.shape == targets.shape == am.shape and inputs.shape[0] == 8 and inputs.shape[1] <= 16
    specials = torch.tensor(tok.special_ids)
    assert (targets[torch.isin(inputs, specials) & (inputs != tok.mask_id)] == IGNORE_INDEX).all()
    assert (targets[am == 0] == IGNORE_INDEX).all()


# ---- labelled text ----

def test_read_labelled_tsv_keeps_quotes_csv_and_jsonl(tmp_path):
    (tmp_path / "a.tsv").write_text('sentence\tlabel\nit \'s "great" \t1\n  a "quote \t0\n', encoding="utf-8")
    texts, ids, names = read_labelled(tmp_path / "a.tsv", "sentence", "label")
    assert texts == ['it \'s "great"', 'a "quote'] and ids == [1, 0] and names == ["0", "1"]
    (tmp_path / "b.csv").write_text('label,text\npos,"hello, world"\nneg,bye\n', encoding="utf-8")
    texts, ids, names = read_labelled(tmp_path / "b.csv", "text", "label", labels=["neg", "pos"])
    assert texts == ["hello, world", "bye"] and ids == [1, 0] and names == ["neg", "pos"]
    (tmp_path / "c.jsonl").write_text('{"t": "x y", "y": 1}\n\n{"t": " z ", "y": 0}\n', encoding="utf-8")
    assert read_labelled(tmp_path / "c.jsonl", "t", "y") == (["x y", "z"], [1, 0], ["0", "1"])
    assert read_labelled(tmp_path / "a.tsv", "sentence", None) == (['it \'s "great"', 'a "quote'], None, None)


@pytest.mark.parametrize("content, kwargs, error", [
    ("", {}, "is empty"),
    ("sentence\tlabel\n", {}, "has no rows"),
    ("text\tlabel\nhi\t1\n", {}, "no column 'sentence'"),
    ("sentence\tlabel\nhi\t1\nyo\t2\n", {"labels": ["0", "1"]}, "line 3: label '2' is not in the label set"),
    ("sentence\tlabel\nhi\t1\n  \t0\n", {}, "line 3: the row has no text"),
    ("sentence\tlabel\nhi\t1\textra\n", {}, "line 2: 3 fields"),
])
def test_read_labelled_errors_name_file_and_line(tmp_path, content, kwargs, error):
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=error):
        read_labelled(path, "sentence", "label", **kwargs)


def test_read_labelled_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_labelled(tmp_path / "none.tsv", "sentence", "label")


def test_stratified_sample_keeps_class_shares_exactly_with_largest_remainder_rounding():
    y = np.array([0] * 557 + [1] * 443 + [2] * 100)[np.random.default_rng(0).permutation(1100)]  # shuffled classes
    for n in (11, 12, 99, 100, 101, 550, 1099, 1100):
        rows = stratified_sample(y, n, seed=5)
        assert len(rows) == n == len(set(rows.tolist())) and np.all(np.diff(rows) > 0)  # distinct, in file order
        share = n * np.bincount(y) / len(y)
        counts = np.bincount(y[rows], minlength=3)
        assert counts.sum() == n and np.all(np.abs(counts - share) < 1)  # within one row of the proportional share
        # largest remainder: the classes rounded up are those with the largest fractional parts
        up = np.flatnonzero(counts > np.floor(share))
        down = np.flatnonzero(counts == np.floor(share))
        assert not len(up) or not len(down) or (share - np.floor(share))[up].min() >= (share - np.floor(share))[down].max()
    assert np.bincount(np.array([0] * 6 + [1] * 4)[stratified_sample([0] * 6 + [1] * 4, 5, 0)]).tolist() == [3, 2]
    assert np.bincount(np.array([0, 0, 1, 1])[stratified_sample([0, 0, 1, 1], 3, 0)]).tolist() == [2, 1]  # a tie: id 0


def test_stratified_sample_is_seeded_and_nested_for_two_classes():
    y = np.random.default_rng(1).integers(0, 2, 5000)
    a, b, c = stratified_sample(y, 300, seed=1), stratified_sample(y, 300, seed=1), stratified_sample(y, 300, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(np.intersect1d(a, c)) < 100  # a different seed is a different sample, not a shifted one (~18 expected)
    small, large = stratified_sample(y, 100, seed=1), stratified_sample(y, 1000, seed=1)
    assert np.isin(small, a).all() and np.isin(a, large).all()  # the curve's points are nested


@pytest.mark.parametrize("n, error", [(0, "1 <= n <= 10"), (11, "1 <= n <= 10"), (1, r"class\(es\) \[1\]")])
def test_stratified_sample_refuses_impossible_sizes(n, error):
    with pytest.raises(ValueError, match=error):
        stratified_sample([0] * 9 + [1], n, seed=0)


def _batches(tok, **kw):
    texts = [("the fox " * (k % 7 + 1)).strip() for k in range(23)]
    labels = [k % 2 for k in range(23)]
    return texts, labels, ClassificationBatches(texts, labels, tok, batch_size=5, max_len=kw.pop("max_len", 64), **kw)


def test_classification_batches_pad_mask_and_labels(tok):
    texts, labels, batches = _batches(tok, shuffle=False, max_len=30)
    assert len(batches) == 5 and batches.n_truncated == sum(len(tok.encode(t)) > 28 for t in texts) > 0
    out = list(batches)
    assert len(out) == 5 and [len(b[2]) for b in out] == [5, 5, 5, 5, 3]
    idx, am, y = out[0]
    assert idx.dtype == am.dtype == y.dtype == torch.int64 and y.tolist() == labels[:5]
    assert idx.shape[1] == max(min(len(tok.encode(t)) + 2, 30) for t in texts[:5])  # longest row of the batch
    assert torch.equal(am.bool(), idx != tok.pad_id)
    assert idx[0, 0] == tok.cls_id and idx[0, am[0].sum() - 1] == tok.sep_id
    assert tok.decode(idx[0, 1 : am[0].sum() - 1].tolist()) == texts[0]


def test_classification_batches_resume_mid_epoch_exactly(tok):
    _, _, full = _batches(tok, seed=3)
    epoch0, epoch1 = list(full), list(full)
    assert full.state_dict() == {"epoch": 2, "position": 0, "seed": 3}
    assert sorted(torch.cat([b[2] for b in epoch0]).tolist()) == sorted(torch.cat([b[2] for b in epoch1]).tolist())
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(epoch0, epoch1) if a[0].shape == b[0].shape)

    _, _, run = _batches(tok, seed=3)
    it = iter(run)
    first = [next(it), next(it)]
    state = json.loads(json.dumps(run.state_dict()))  # JSON-safe
    assert state == {"epoch": 0, "position": 2, "seed": 3}
    _, _, resumed = _batches(tok, seed=0)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(first) + len(rest) == len(epoch0)
    for a, b in zip(first + rest, epoch0):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert all(torch.equal(u, v) for a, b in zip(list(resumed), epoch1) for u, v in zip(a, b))  # next epoch too
    with pytest.raises(ValueError, match="position"):
        resumed.load_state_dict({"epoch": 0, "position": 99, "seed": 3})


def test_length_bucketing_pads_less_and_still_covers_every_row_once():
    from minilm.tokenizer import CharTokenizer

    rng = np.random.default_rng(0)
    texts = ["x" * int(n) for n in rng.integers(1, 60, size=403)]
    tok = CharTokenizer.train("x")
    plain = ClassificationBatches(texts, [0] * len(texts), tok, batch_size=8, max_len=64, seed=3)
    bucketed = ClassificationBatches(texts, [0] * len(texts), tok, batch_size=8, max_len=64, seed=3, bucket=10)
    for epoch in (0, 1):
        order = bucketed.order(epoch)
        assert sorted(order.tolist()) == list(range(len(texts)))  # a permutation
        assert torch.equal(order, bucketed.order(epoch))  # a pure function of (seed, epoch)
    padded = {name: sum(b[0].numel() for b in batches) for name, batches in (("plain", plain), ("bucketed", bucketed))}
    assert padded["bucketed"] < 0.7 * padded["plain"], padded
