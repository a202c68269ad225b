"""Write the reference dumps in tests/fixtures/ with transformers 4.57.6 (eager, float64).

    pip install "minibertgen[oracle]" && python scripts/make_reference_dumps.py

Each case is a folder written by transformers itself:
  config.json, model.safetensors (+ generation_config.json)   transformers' save_pretrained output
  io.safetensors                                               inputs and the reference's outputs
  case.json                                                    what was run (class, inputs, settings)
Tests read them with minibertgen alone (no torch): loading transformers' files here is part of
what they check. Weights are drawn well away from init (biases and LayerNorm not 0/1, std ~0.3) so
that every term, relative positions included, moves the outputs visibly.

Relative-position decoders run with use_cache=False: the reference setting in which each query
uses its own position, as minibertgen does (DESIGN.md §1).

For every bert2bert case the dump also holds the gradient of the loss for every parameter
(``grad.<name>``, torch autograd; tied weights once, under the name minibertgen uses) and the
losses of 5 AdamW steps with global-norm clipping and the linear warmup schedule
(``train_losses``; settings in TRAIN below).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

# The short training run of each bert2bert dump: torch.optim.AdamW + clip_grad_norm_ +
# get_linear_schedule_with_warmup, the same batch every step, dropout off.
TRAIN = dict(lr=1e-2, weight_decay=0.01, max_grad_norm=1.0, warmup_steps=2, total_steps=5)

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "reference"

TINY = dict(
    vocab_size=61, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
    max_position_embeddings=24, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    initializer_range=0.3,
)  # fmt: skip


def perturb(model, torch, seed):
    """Every parameter away from its init: weights ~N(0, 0.3), biases ~N(0, 0.1), LayerNorm weight ~1+N(0, 0.1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.3 * noise)


def padded_batch(rng, batch, length, vocab, lengths):
    ids = rng.integers(3, vocab, size=(batch, length))
    mask = np.zeros((batch, length), dtype=np.int64)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
        ids[row, n:] = 0  # pad id
    return ids, mask


def build(kind, transformers, torch, enc_kw, dec_kw=None, ed_kw=None, seed=0):
    if kind == "encoder":
        model = transformers.BertGenerationEncoder(transformers.BertGenerationConfig(**TINY, **enc_kw))
    elif kind == "decoder":
        model = transformers.BertGenerationDecoder(transformers.BertGenerationConfig(**TINY, **enc_kw))
    else:
        enc_cfg = transformers.BertGenerationConfig(**{**TINY, **enc_kw})
        dec_cfg = transformers.BertGenerationConfig(**{**TINY, **dec_kw}, is_decoder=True, add_cross_attention=True)
        encoder = transformers.BertGenerationEncoder(enc_cfg)
        decoder = transformers.BertGenerationDecoder(dec_cfg)
        ed_kw = dict(ed_kw or {})
        config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
            enc_cfg, dec_cfg, tie_encoder_decoder=ed_kw.pop("tie_encoder_decoder", False)
        )
        for key, value in ed_kw.items():
            setattr(config, key, value)
        model = transformers.EncoderDecoderModel(config=config, encoder=encoder, decoder=decoder)
    model = model.double().eval()
    perturb(model, torch, seed)
    return model


def our_parameter_names(model, kind):
    """Each distinct parameter once, under the name minibertgen gives it (reference §6, §8):
    no lm_head.decoder.* aliases of tied or shared tensors, no encoder.* copies under tie_encoder_decoder."""
    tied_ed = kind == "encoder-decoder" and model.config.tie_encoder_decoder
    names = []
    for name, _ in model.named_parameters(remove_duplicate=False):
        if name.endswith("lm_head.decoder.bias") or (tied_ed and name.startswith("encoder.")):
            continue
        if name.endswith("lm_head.decoder.weight"):
            decoder_cfg = model.config.decoder if kind == "encoder-decoder" else model.config
            if decoder_cfg.tie_word_embeddings:
                continue
        names.append(name)
    return names


def train_losses(model, batch, torch, transformers):
    """Losses of TRAIN["total_steps"] AdamW steps (the loss before each step)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=TRAIN["lr"], weight_decay=TRAIN["weight_decay"])
    schedule = transformers.get_linear_schedule_with_warmup(optimizer, TRAIN["warmup_steps"], TRAIN["total_steps"])
    model.train()  # dropout probabilities are 0 in TINY: train mode changes nothing else
    losses = []
    for _ in range(TRAIN["total_steps"]):
        loss = model(**batch, use_cache=False).loss
        losses.append(loss.item())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["max_grad_norm"])
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    model.eval()
    return np.array(losses)


def to_np(t):
    return t.detach().numpy().copy()


def main() -> int:
    import torch
    import transformers
    from safetensors.numpy import save_file

    assert transformers.__version__ == "4.57.6", transformers.__version__
    torch.manual_seed(0)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    rng = np.random.default_rng(1234)
    V = TINY["vocab_size"]
    cases = []

    # ---- encoders: each position type, a padded batch
    for pos in ("absolute", "relative_key", "relative_key_query"):
        cases.append(dict(name=f"encoder_{pos}", kind="encoder", enc_kw=dict(position_embedding_type=pos, hidden_act="gelu")))
    # ---- decoders with cross-attention (causal), tied and untied heads, causal-LM loss
    for pos, tied, act in (("absolute", True, "gelu_new"), ("relative_key", False, "relu"), ("relative_key_query", True, "silu")):
        cases.append(dict(
            name=f"decoder_{pos}_{'tied' if tied else 'untied'}", kind="decoder",
            enc_kw=dict(position_embedding_type=pos, is_decoder=True, add_cross_attention=True,
                        tie_word_embeddings=tied, hidden_act=act),
        ))  # fmt: skip
    # ---- a decoder built with is_decoder=False runs bidirectionally (the published-output setting)
    cases.append(dict(name="decoder_bidirectional", kind="decoder", enc_kw=dict(hidden_act="gelu")))
    # ---- bert2bert with labels: each position type, tied and untied, -100 in labels
    for pos, tied in [(pos, tied) for pos in ("absolute", "relative_key", "relative_key_query") for tied in (True, False)]:
        cases.append(dict(
            name=f"bert2bert_{pos}_{'tied' if tied else 'untied'}", kind="encoder-decoder",
            enc_kw=dict(position_embedding_type=pos), dec_kw=dict(position_embedding_type=pos, tie_word_embeddings=tied),
            ed_kw=dict(decoder_start_token_id=2, pad_token_id=0),
        ))  # fmt: skip
    cases.append(dict(
        name="bert2bert_tie_encoder_decoder", kind="encoder-decoder",
        enc_kw=dict(position_embedding_type="relative_key"), dec_kw=dict(position_embedding_type="relative_key"),
        ed_kw=dict(decoder_start_token_id=2, pad_token_id=0, tie_encoder_decoder=True),
    ))  # fmt: skip
    cases.append(dict(
        name="bert2bert_enc_to_dec_proj", kind="encoder-decoder",
        enc_kw=dict(hidden_size=12, num_attention_heads=3), dec_kw=dict(hidden_act="gelu_fast"),
        ed_kw=dict(decoder_start_token_id=2, pad_token_id=0),
    ))  # fmt: skip
    # decoder_start == pad: the first decoder row is fully masked (uniform attention, reference §3)
    cases.append(dict(
        name="bert2bert_start_is_pad", kind="encoder-decoder", enc_kw=dict(), dec_kw=dict(),
        ed_kw=dict(decoder_start_token_id=0, pad_token_id=0),
    ))  # fmt: skip

    for seed, case in enumerate(cases):
        model = build(case["kind"], transformers, torch, case["enc_kw"], case.get("dec_kw"), case.get("ed_kw"), seed)
        folder = OUT / case["name"]
        model.save_pretrained(folder)
        io: dict[str, np.ndarray] = {}
        ids, mask = padded_batch(rng, 3, 7, V, [7, 5, 2])
        io["input_ids"], io["attention_mask"] = ids, mask
        with torch.no_grad():
            if case["kind"] == "encoder":
                out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), output_hidden_states=True)
                for i, h in enumerate(out.hidden_states):
                    io[f"hidden_states.{i}"] = to_np(h)
            elif case["kind"] == "decoder":
                memory = rng.normal(size=(3, 5, TINY["hidden_size"]))
                memory_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
                labels = rng.integers(3, V, size=(3, 7))
                labels[1, 5:] = -100
                io.update(encoder_hidden_states=memory, encoder_attention_mask=memory_mask, labels=labels)
                cross = model.config.add_cross_attention
                out = model(
                    input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    encoder_hidden_states=torch.from_numpy(memory) if cross else None,
                    encoder_attention_mask=torch.from_numpy(memory_mask) if cross else None,
                    labels=torch.from_numpy(labels), use_cache=False, output_hidden_states=True,
                )  # fmt: skip
                io["logits"], io["loss"] = to_np(out.logits), to_np(out.loss)
                for i, h in enumerate(out.hidden_states):
                    io[f"hidden_states.{i}"] = to_np(h)
            else:
                labels = rng.integers(3, V, size=(3, 6))
                labels[1, 4:] = -100
                labels[2, 2:] = -100
                io["labels"] = labels
                out = model(
                    input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    labels=torch.from_numpy(labels), use_cache=False, output_hidden_states=True,
                )  # fmt: skip
                io["logits"], io["loss"] = to_np(out.logits), to_np(out.loss)
                io["encoder_last_hidden_state"] = to_np(out.encoder_last_hidden_state)
                for i, h in enumerate(out.decoder_hidden_states):
                    io[f"decoder_hidden_states.{i}"] = to_np(h)
        if case["kind"] == "encoder-decoder":
            batch = dict(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                         labels=torch.from_numpy(io["labels"]))  # fmt: skip
            model.zero_grad()
            model(**batch, use_cache=False).loss.backward()
            for name in our_parameter_names(model, case["kind"]):
                io[f"grad.{name}"] = to_np(model.get_parameter(name).grad)
            model.zero_grad()
            io["train_losses"] = train_losses(model, batch, torch, transformers)
        save_file({k: np.ascontiguousarray(v) for k, v in io.items()}, str(folder / "io.safetensors"))
        meta = {k: v for k, v in case.items()}
        meta["transformers"] = transformers.__version__
        if case["kind"] == "encoder-decoder":
            meta["train"] = TRAIN
        meta["torch"] = torch.__version__
        (folder / "case.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        print(f"wrote {folder.relative_to(OUT.parent.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
