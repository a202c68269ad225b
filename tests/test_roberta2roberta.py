"""roberta2roberta: transformers' second BertGeneration example, run on a tiny random checkpoint.

The documented example loads ``google/roberta2roberta_L-24_discofuse`` (BertGeneration encoder and
decoder, RoBERTa's byte-level BPE vocabulary) with ``AutoTokenizer`` and ``EncoderDecoderModel``.
Here transformers 4.57.6 builds a checkpoint of the same kind, tiny and random: the vocabulary of
tests/fixtures/bpe (1000 tokens), ids bos/eos/pad = 0/2/1 as in RoBERTa, weights moved off their
init, saved with its slow RobertaTokenizer. The example then runs verbatim (with "np" for "pt") and
must give transformers' logits, generated ids and decoded text.
"""

from __future__ import annotations

import numpy as np
import pytest

from minibertgen import reference

from .conftest import FIXTURES, require_oracle

BPE = FIXTURES / "bpe"
SENTENCE = "This is the first sentence. This is the second sentence."


@pytest.fixture(scope="module")
def roberta2roberta(tmp_path_factory):
    """(folder, transformers model loaded back from it, transformers' slow tokenizer): built once."""
    torch, transformers = require_oracle()
    tokenizer = transformers.RobertaTokenizer(str(BPE / "vocab.json"), str(BPE / "merges.txt"))
    part = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=37, max_position_embeddings=64, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    encoder = transformers.BertGenerationConfig(**part)
    decoder = transformers.BertGenerationConfig(**part, is_decoder=True, add_cross_attention=True)
    config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
        encoder, decoder, decoder_start_token_id=tokenizer.bos_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = transformers.EncoderDecoderModel(config=config)
    with torch.no_grad():  # off the init (zero biases, unit LayerNorms would hide mistakes), seeded
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("roberta2roberta")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    hf = transformers.EncoderDecoderModel.from_pretrained(folder, attn_implementation="eager").eval()
    return folder, hf, tokenizer


def documented_example(path):
    """The documentation's second example, line for line, with "np" for "pt"."""
    from minibertgen import AutoTokenizer, EncoderDecoderModel

    # instantiate sentence fusion model
    sentence_fuser = EncoderDecoderModel.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)

    input_ids = tokenizer(
        "This is the first sentence. This is the second sentence.", add_special_tokens=False, return_tensors="np"
    ).input_ids

    outputs = sentence_fuser.generate(input_ids)

    print(tokenizer.decode(outputs[0]))
    return sentence_fuser, tokenizer, input_ids, outputs


@pytest.mark.oracle
def test_auto_tokenizer_finds_the_roberta_tokenizer(roberta2roberta):
    from minibertgen import AutoTokenizer, RobertaTokenizer

    folder, _, hf_tokenizer = roberta2roberta
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert type(tokenizer) is RobertaTokenizer
    assert tokenizer.get_vocab() == hf_tokenizer.get_vocab()
    assert tokenizer(SENTENCE).input_ids == hf_tokenizer(SENTENCE).input_ids


@pytest.mark.oracle
def test_the_second_documented_example_equals_transformers(roberta2roberta, capsys):
    torch, _ = require_oracle()
    folder, hf, hf_tokenizer = roberta2roberta
    sentence_fuser, tokenizer, input_ids, outputs = documented_example(folder)
    printed = capsys.readouterr().out

    # The ids transformers' tokenizer gives (no <s> ... </s>: add_special_tokens=False).
    hf_ids = hf_tokenizer(SENTENCE, add_special_tokens=False, return_tensors="pt").input_ids
    assert input_ids.dtype == np.int64
    np.testing.assert_array_equal(input_ids, hf_ids.numpy())

    # generate: the same tokens as transformers' greedy generate on the same file.
    with torch.no_grad():
        hf_outputs = hf.generate(torch.from_numpy(input_ids)).numpy()
    np.testing.assert_array_equal(outputs, hf_outputs)
    assert outputs[0, 0] == hf.config.decoder_start_token_id and outputs.shape[1] > 2
    # ... and the same text: decode equals transformers' slow tokenizer's, and that is what was printed.
    assert tokenizer.decode(outputs[0]) == hf_tokenizer.decode(hf_outputs[0])
    assert printed == hf_tokenizer.decode(hf_outputs[0]) + "\n"

    # Logits of the full generated sequence, teacher-forced, against transformers' (use_cache=False).
    logits = sentence_fuser(input_ids=input_ids, decoder_input_ids=outputs).logits
    ref = reference.run_encoder_decoder(hf, input_ids, decoder_input_ids=outputs)["logits"]
    assert logits.shape == ref.shape == (1, outputs.shape[1], len(tokenizer))
    # float32 on both sides (the saved file's dtype): logits of size ~3 after 2+2 layers of width 32
    # differ only by float32 rounding and summation order; measured 1e-6 apart, so 1e-5 has 10x room.
    # (Greedy generate is not at the mercy of that rounding: the top two logits differ by > 0.2.)
    np.testing.assert_allclose(logits, ref, rtol=1e-5, atol=1e-5)
    # The comparison is not vacuous: the logits vary across the vocabulary and over positions.
    assert np.ptp(ref[0, -1]) > 0.1 and not np.allclose(ref[0, 0], ref[0, -1])


@pytest.mark.oracle
def test_the_checkpoint_loads_strictly_and_keeps_robertas_ids(roberta2roberta):
    from minibertgen import EncoderDecoderModel

    folder, hf, _ = roberta2roberta
    model = EncoderDecoderModel.from_pretrained(folder)  # strict=True: a missing or extra tensor raises
    for name in ("decoder_start_token_id", "pad_token_id", "eos_token_id", "bos_token_id"):
        assert getattr(model.config, name) == getattr(hf.config, name), name
    assert model.config.encoder.vocab_size == hf.config.encoder.vocab_size == 1000
