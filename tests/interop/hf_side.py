"""The Python side of plinth's Hugging Face interop tests (run by tests/suite/interop.rs
with the project's virtual environment; nothing is downloaded).

    hf_side.py make OUT CORPUS    small random-weight transformers models (and a PEFT
                                  LoRA adapter) saved with save_pretrained, with their
                                  logits on fixed ids and the ids of a corpus sample
    hf_side.py check DIR IDS OUT  load DIR with from_pretrained (plus a PEFT adapter
                                  folder when DIR/adapter exists) and write its logits
                                  on IDS and the ids of the sample to OUT
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file

SAMPLE_LINES = 40


def sample_text(corpus):
    with open(corpus, encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    return "\n".join(lines[:SAMPLE_LINES]) + "\n  Ünïcödé, tabs\tand 42 numbers."


def train_tokenizer(kind, corpus, vocab):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    with open(corpus, encoding="utf-8") as f:
        texts = [l for l in f if l.strip()]
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        trainer = trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=specials)
        roles = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        if kind == "roberta":
            specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
            roles = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask>"}
        else:
            specials = ["<unk>", "<s>", "</s>"]
            roles = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
        trainer = trainers.BpeTrainer(
            vocab_size=vocab, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
    tok.train_from_iterator(texts, trainer)
    return tok, roles


def save_tokenizer(tok, roles, out):
    tok.save(os.path.join(out, "tokenizer.json"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512, **roles}
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def randomize(model):
    # Norm weights and biases start at 1 and 0; noise makes every tensor matter.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)


def fixed_ids(vocab, avoid, n=2, t=24):
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(5, vocab, (n, t), generator=g)
    for a in avoid:
        ids[ids == a] = 5
    return ids


def make(out, corpus):
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        LlamaConfig,
        LlamaForCausalLM,
        RobertaConfig,
        RobertaForMaskedLM,
    )

    torch.manual_seed(0)
    text = sample_text(corpus)
    models = {}
    tok, roles = train_tokenizer("bpe", corpus, 400)
    v = tok.get_vocab_size()
    models["llama-gqa-untied"] = (
        LlamaForCausalLM(
            LlamaConfig(
                vocab_size=v + 3,  # embeddings padded past the tokenizer, as Llama 2's are
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=128,
                rope_theta=500000.0,
                tie_word_embeddings=False,
                bos_token_id=1,
                eos_token_id=2,
            )
        ),
        tok,
        roles,
    )
    models["llama-tied-headdim"] = (
        LlamaForCausalLM(
            LlamaConfig(
                vocab_size=v,
                hidden_size=48,
                intermediate_size=96,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=4,
                head_dim=16,
                max_position_embeddings=64,
                tie_word_embeddings=True,
                bos_token_id=1,
                eos_token_id=2,
            )
        ),
        tok,
        roles,
    )
    wtok, wroles = train_tokenizer("wordpiece", corpus, 400)
    models["bert"] = (
        BertForMaskedLM(
            BertConfig(
                vocab_size=wtok.get_vocab_size(),
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=64,
            )
        ),
        wtok,
        wroles,
    )
    rtok, rroles = train_tokenizer("roberta", corpus, 400)
    models["roberta"] = (
        RobertaForMaskedLM(
            RobertaConfig(
                vocab_size=rtok.get_vocab_size(),
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=66,
                pad_token_id=1,
                bos_token_id=0,
                eos_token_id=2,
            )
        ),
        rtok,
        rroles,
    )
    for name, (model, tok, roles) in models.items():
        d = os.path.join(out, name)
        randomize(model)
        model.eval()
        model.save_pretrained(d)
        save_tokenizer(tok, roles, d)
        ids = fixed_ids(tok.get_vocab_size(), avoid=[1])
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        save_file({"ids": ids, "logits": logits.contiguous()}, os.path.join(d, "expected.safetensors"))
        with open(os.path.join(d, "sample.json"), "w") as f:
            json.dump({"text": text, "ids": tok.encode(text, add_special_tokens=False).ids}, f)
    # The same model in shards with an index, as large checkpoints are published.
    import shutil

    src, d = os.path.join(out, "llama-tied-headdim"), os.path.join(out, "llama-sharded")
    models["llama-tied-headdim"][0].save_pretrained(d, max_shard_size="100KB")
    assert os.path.exists(os.path.join(d, "model.safetensors.index.json")), os.listdir(d)
    for f in ["tokenizer.json", "tokenizer_config.json", "expected.safetensors", "sample.json"]:
        shutil.copy(os.path.join(src, f), d)
    make_peft(out, models["llama-gqa-untied"][0], "peft-llama", ["q_proj", "v_proj", "down_proj"], use_rslora=False)
    make_peft(out, models["bert"][0], "peft-bert", ["query", "value", "intermediate.dense"], use_rslora=True)


def make_peft(out, base, name, targets, use_rslora):
    from peft import LoraConfig, get_peft_model

    vocab = base.config.vocab_size
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.0, use_rslora=use_rslora)
    peft_model = get_peft_model(base, cfg)
    with torch.no_grad():
        for param_name, p in peft_model.named_parameters():
            if "lora_B" in param_name:
                p.normal_(0, 0.05)  # B starts at zero; a trained adapter's is not
    peft_model.save_pretrained(os.path.join(out, name))
    ids = fixed_ids(vocab - 3, avoid=[1])
    peft_model.eval()
    with torch.no_grad():
        logits = peft_model(input_ids=ids).logits
    save_file({"ids": ids, "logits": logits.contiguous()}, os.path.join(out, name, "expected.safetensors"))


def check(model_dir, ids_path, out):
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(model_dir)
    auto = AutoModelForCausalLM if cfg.model_type == "llama" else AutoModelForMaskedLM
    model = auto.from_pretrained(model_dir, dtype=torch.float32)
    adapter = os.path.join(model_dir, "adapter")
    if os.path.isdir(adapter):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    ids = load_file(ids_path)["ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    save_file({"logits": logits.contiguous()}, out)
    tok = AutoTokenizer.from_pretrained(model_dir)
    text = sys.argv[5] if len(sys.argv) > 5 else ""
    print(json.dumps({"ids": tok(text, add_special_tokens=False)["input_ids"], "class": type(model).__name__}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        make(sys.argv[2], sys.argv[3])
    elif cmd == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"unknown command {cmd}")
