"""BERT in minilm's own encoder: a tiny Hugging Face BERT, every parameter moved off its initial value, loads into
MaskedLM and gives the same logits and hidden states; the post-norm block equals PyTorch's; finetune.py fine-tunes it
end to end; what cannot be loaded is refused in one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from minilm.block import TransformerBlock
from minilm.classifier import SequenceClassifier
from minilm.config import ModelConfig
from minilm.model import MaskedLM

transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import finetune  # noqa: E402

WORDS = ["a", "the", "film", "movie", "is", "was", "good", "great", "fun", "bad", "dull", "awful", "not", "very",
         "!", ".", ",", "##s", "##ly"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + [f"[unused{i}]" for i in range(40 - 5 - len(WORDS))]
V, T = len(VOCAB), 24


def _tiny(cls, seed: int = 0):
    """A 2-layer BERT with token types; every parameter perturbed, so a mapping slip (or a norm left at its
    initial 1 / 0) cannot hide."""
    cfg = transformers.BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=T, type_vocab_size=2)
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def _save(model, path: Path, safe: bool = True) -> Path:
    model.save_pretrained(path, safe_serialization=safe)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return path


def _inputs():
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(5, V, (3, T), generator=g)  # (B, T)
    mask = torch.ones(3, T, dtype=torch.long)
    mask[1, 15:] = 0  # right padding
    mask[2, 7:] = 0
    types = torch.zeros(3, T, dtype=torch.long)
    types[:, 10:] = 1  # sentence B from position 10
    return idx, mask, types


@pytest.mark.parametrize("safe", [True, False])
def test_masked_lm_logits_match_hugging_face(tmp_path, safe):
    hf = _tiny(transformers.BertForMaskedLM)
    ours = MaskedLM.from_pretrained(_save(hf, tmp_path, safe)).eval()
    assert ours.config.norm_position == "post" and ours.backbone.norm_f is None
    idx, mask, types = _inputs()
    with torch.no_grad():
        for kw in ({}, {"attention_mask": mask}, {"token_type_ids": types},
                   {"attention_mask": mask, "token_type_ids": types}):
            ref = hf(idx, **kw).logits  # (B, T, V)
            got, _ = ours(idx, **kw)
            real = kw.get("attention_mask", torch.ones_like(idx)).bool()  # the positions a user reads
            diff = (got - ref)[real].abs().max().item()
            assert diff < 1e-4, (sorted(kw), diff)


def test_bert_model_hidden_states_and_pooler_match(tmp_path):
    hf = _tiny(transformers.BertModel, seed=2)
    ours = MaskedLM.from_pretrained(_save(hf, tmp_path)).eval()
    assert ours.config.pooler
    idx, mask, types = _inputs()
    with torch.no_grad():
        for kw in ({}, {"attention_mask": mask, "token_type_ids": types}):
            out = hf(idx, **kw)
            h = ours.backbone(idx, kw.get("attention_mask"), token_type_ids=kw.get("token_type_ids"))  # (B, T, D)
            real = kw.get("attention_mask", torch.ones_like(idx)).bool()
            assert (h - out.last_hidden_state)[real].abs().max().item() < 1e-4
            clf = SequenceClassifier(ours.backbone, 2, pooling="pooler").eval()
            pooled = torch.tanh(clf.backbone.pooler(h[:, 0]))  # (B, D): what the classifier pools
            assert (pooled - out.pooler_output).abs().max().item() < 1e-4


def test_bert_for_pretraining_loads_without_its_nsp_head(tmp_path):
    hf = _tiny(transformers.BertForPreTraining, seed=3)
    ours = MaskedLM.from_pretrained(_save(hf, tmp_path)).eval()
    idx, mask, types = _inputs()
    with torch.no_grad():
        ref = hf(idx, attention_mask=mask, token_type_ids=types).prediction_logits
        got, _ = ours(idx, attention_mask=mask, token_type_ids=types)
    assert (got - ref)[mask.bool()].abs().max().item() < 1e-4


def test_original_checkpoint_names_load(tmp_path):
    """bert-base-uncased's own pytorch_model.bin predates `save_pretrained`: LayerNorm.gamma / .beta, a position_ids
    buffer, the tied decoder stored twice."""
    hf = _tiny(transformers.BertForPreTraining, seed=4)
    _save(hf, tmp_path)
    (tmp_path / "model.safetensors").unlink()
    sd = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
          for k, v in hf.state_dict().items()}
    sd["bert.embeddings.position_ids"] = torch.arange(T)[None]
    sd["cls.predictions.decoder.weight"] = hf.bert.embeddings.word_embeddings.weight.detach().clone()
    sd["cls.predictions.decoder.bias"] = hf.cls.predictions.bias.detach().clone()
    torch.save(sd, tmp_path / "pytorch_model.bin")
    ours = MaskedLM.from_pretrained(tmp_path).eval()
    idx, mask, types = _inputs()
    with torch.no_grad():
        ref = hf(idx, attention_mask=mask, token_type_ids=types).prediction_logits
        got, _ = ours(idx, attention_mask=mask, token_type_ids=types)
    assert (got - ref)[mask.bool()].abs().max().item() < 1e-4


def test_post_norm_block_equals_pytorch_encoder_layer():
    cfg = ModelConfig(vocab_size=11, max_seq_len=16, d_model=32, n_heads=4, n_layers=1, d_ff=48, gelu="exact",
                      norm_eps=1e-12, causal=False, norm_position="post")
    torch.manual_seed(0)
    ours = TransformerBlock(cfg).eval()
    ref = nn.TransformerEncoderLayer(32, 4, 48, dropout=0.0, activation="gelu", layer_norm_eps=1e-12,
                                     batch_first=True, norm_first=False).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        a = ours.attn
        ref.self_attn.in_proj_weight.copy_(a.qkv_proj.weight)  # both stack W_Q | W_K | W_V
        ref.self_attn.in_proj_bias.copy_(a.qkv_proj.bias)
        ref.self_attn.out_proj.weight.copy_(a.out_proj.weight)
        ref.self_attn.out_proj.bias.copy_(a.out_proj.bias)
        for theirs, mine in ((ref.linear1, ours.mlp.fc_in), (ref.linear2, ours.mlp.fc_out),
                             (ref.norm1, ours.norm1), (ref.norm2, ours.norm2)):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
        x = torch.randn(2, 10, 32)
        mask = torch.ones(2, 10, dtype=torch.long)
        mask[1, 6:] = 0
        assert (ours(x) - ref(x)).abs().max().item() < 1e-5
        got, want = ours(x, mask), ref(x, src_key_padding_mask=~mask.bool())
        assert (got - want)[mask.bool()].abs().max().item() < 1e-5


def test_defaults_keep_todays_models_unchanged():
    cfg = ModelConfig(vocab_size=11, max_seq_len=8, d_model=16, n_heads=2, n_layers=1, causal=False)
    names = set(MaskedLM(cfg).state_dict())
    assert "backbone.norm_f.weight" in names
    assert not any(k in n for n in names for k in ("type_emb", "emb_norm", "pooler"))
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("norm_position", "type_vocab_size", "embed_norm",
                                                               "pooler")}
    assert ModelConfig.from_dict(old) == cfg  # a checkpoint written before these fields existed
    with pytest.raises(ValueError, match="norm_position"):
        ModelConfig(norm_position="middle")


def test_what_cannot_be_loaded_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        MaskedLM.from_pretrained(tmp_path / "nope")
    gpt2 = tmp_path / "gpt2"
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=V, n_positions=8, n_embd=16, n_layer=1,
                                                         n_head=2)).save_pretrained(gpt2)
    with pytest.raises(ValueError, match="model_type 'bert'"):
        MaskedLM.from_pretrained(gpt2)
    rel = _save(_tiny(transformers.BertForMaskedLM), tmp_path / "rel")
    cfg = json.loads((rel / "config.json").read_text())
    (rel / "config.json").write_text(json.dumps({**cfg, "position_embedding_type": "relative_key"}))
    with pytest.raises(ValueError, match="absolute positions"):
        MaskedLM.from_pretrained(rel)
    (rel / "config.json").write_text(json.dumps(cfg))
    (rel / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        MaskedLM.from_pretrained(rel)
    clf = tmp_path / "clf"
    transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=8)).save_pretrained(clf)
    with pytest.raises(ValueError, match="cannot represent.*classifier"):
        MaskedLM.from_pretrained(clf)
    mlm = MaskedLM.from_pretrained(_save(_tiny(transformers.BertForMaskedLM), tmp_path / "mlm"))
    with pytest.raises(ValueError, match="pooler weights"):  # BertForMaskedLM saves no pooler
        SequenceClassifier.from_lm(mlm, 2, pooling="pooler")


# ------------------------------------------------------------------------------------------------ finetune.py
FAST = ["--dtype", "float32", "--compile", "off", "--device", "cpu", "--max-len", "16", "--log-interval", "1"]


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bert_sentiment")
    g = torch.Generator().manual_seed(0)
    good, bad = ["good", "great", "fun"], ["bad", "dull", "awful"]
    for split, n in (("train", 64), ("dev", 24)):
        rows = ["sentence\tlabel"]
        for i in range(n):
            label = i % 2
            word = (good if label else bad)[int(torch.randint(0, 3, (1,), generator=g))]
            rows.append(f"The film was very {word} !\t{label}")
        (root / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("finetune.py: error:"), err
    return err


def test_finetune_init_hf_bert_end_to_end(tmp_path, sentiment, capsys):
    bert = _save(_tiny(transformers.BertForMaskedLM), tmp_path / "bert")
    out = tmp_path / "run"
    data = ["--train", str(sentiment / "train.tsv"), "--dev", str(sentiment / "dev.tsv")]
    assert finetune.main(["--init", f"hf-bert:{bert}", *data, "--out-dir", str(out), *FAST, "--batch-size", "8",
                          "--epochs", "1", "--lr", "1e-3"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["pooling"] == "cls" and report["backbone_kind"] == "mlm" and report["steps"] == 8
    assert 0.0 <= report["dev"]["accuracy"] <= 1.0
    assert report["init"].startswith("Hugging Face BERT")
    capsys.readouterr()
    assert finetune.main(["--ckpt", str(out), "--predict", "The film was very great !", "--device", "cpu"]) == 0
    label, prob, text = capsys.readouterr().out.strip().split("\t")
    assert label in ("0", "1") and 0.5 <= float(prob) <= 1.0 and text == "The film was very great !"


def test_finetune_bert_preset_and_pooler(tmp_path, sentiment, capsys):
    bert = _save(_tiny(transformers.BertModel), tmp_path / "bert")
    settings, preset = finetune.parse_settings(["--init", f"hf-bert:{bert}"])
    assert preset == "bert" and (settings.lr, settings.batch_size, settings.epochs, settings.warmup) == (
        2e-5, 32, 3, 0.1)  # Devlin et al. 2019, appendix A.3
    out = tmp_path / "run"
    data = ["--train", str(sentiment / "train.tsv"), "--dev", str(sentiment / "dev.tsv")]
    assert finetune.main(["--init", f"hf-bert:{bert}", *data, "--out-dir", str(out), *FAST, "--max-steps", "2",
                          "--pooling", "pooler"]) == 0
    assert json.loads((out / "report.json").read_text())["pooling"] == "pooler"


def test_finetune_bad_bert_dirs_are_one_clear_line(tmp_path, sentiment, capsys):
    data = ["--train", str(sentiment / "train.tsv"), "--dev", str(sentiment / "dev.tsv"), *FAST]
    assert finetune.main(["--init", f"hf-bert:{tmp_path / 'nowhere'}", *data, "--out-dir", str(tmp_path / "a")]) == 1
    assert "not a directory" in _error_line(capsys)
    gpt2 = tmp_path / "gpt2"
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=V, n_positions=8, n_embd=16, n_layer=1,
                                                         n_head=2)).save_pretrained(gpt2)
    (gpt2 / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    capsys.readouterr()  # transformers' progress bar
    assert finetune.main(["--init", f"hf-bert:{gpt2}", *data, "--out-dir", str(tmp_path / "b")]) == 1
    assert "model_type 'bert'" in _error_line(capsys)
    bert = _save(_tiny(transformers.BertForMaskedLM), tmp_path / "bert")
    (bert / "vocab.txt").write_text("\n".join(VOCAB[:-3]) + "\n", encoding="utf-8")  # 3 tokens short
    capsys.readouterr()
    assert finetune.main(["--init", f"hf-bert:{bert}", *data, "--out-dir", str(tmp_path / "c")]) == 1
    assert "vocab_size" in _error_line(capsys)
    (bert / "vocab.txt").write_text("\n".join([t for t in VOCAB if t != "[MASK]"] + ["[x]"]) + "\n", encoding="utf-8")
    assert finetune.main(["--init", f"hf-bert:{bert}", *data, "--out-dir", str(tmp_path / "d")]) == 1
    assert "no [MASK]" in _error_line(capsys)
    cased = VOCAB[:5] + [w.capitalize() if i % 2 else w for i, w in enumerate(WORDS)] + VOCAB[5 + len(WORDS):]
    (bert / "vocab.txt").write_text("\n".join(cased) + "\n", encoding="utf-8")
    (bert / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    assert finetune.main(["--init", f"hf-bert:{bert}", *data, "--out-dir", str(tmp_path / "e")]) == 1
    assert "cased checkpoint" in _error_line(capsys)
