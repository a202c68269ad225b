"""transformers' BertGeneration documentation, run as a user copies it (with return_tensors="np").

The first example warm-starts a bert2bert from a BERT checkpoint (here the MiniLM folder as
``bert_dir``); the second (the roberta2roberta one) lives in test_roberta2roberta.py. Around them:
the transformers-shaped surface those examples rely on: ``EncoderDecoderModel(encoder=, decoder=)``,
BatchEncoding, ``token_type_ids``, and from_pretrained's keywords. Each behaviour is compared with
live transformers 4.57.6 where it has one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import minibertgen as mbg
from minibertgen import reference
from minibertgen.fetch import find_weights, weights_dir
from minibertgen.testing import assert_close

from .conftest import require_oracle, require_path


@pytest.fixture(scope="module")
def bert_dir():
    folder = find_weights("minilm-l6")
    if folder is None:
        require_path(weights_dir("minilm-l6") / "model.safetensors", "the MiniLM checkpoint (minibertgen fetch minilm-l6)")
    return folder


def documented_example(bert_dir):
    """The documentation's first example, line for line, with "np" for "pt" (and our backward)."""
    from minibertgen import BertGenerationDecoder, BertGenerationEncoder, BertTokenizer, EncoderDecoderModel

    # leverage checkpoints for Bert2Bert model...
    # use BERT's cls token as BOS token and sep token as EOS token
    encoder = BertGenerationEncoder.from_pretrained(bert_dir, bos_token_id=101, eos_token_id=102)
    # add cross attention layers and use BERT's sep token as EOS token
    decoder = BertGenerationDecoder.from_pretrained(
        bert_dir, add_cross_attention=True, is_decoder=True, bos_token_id=101, eos_token_id=102
    )
    bert2bert = EncoderDecoderModel(encoder=encoder, decoder=decoder)

    # create tokenizer...
    tokenizer = BertTokenizer.from_pretrained(bert_dir)

    input_ids = tokenizer(
        "This is a long article to summarize", add_special_tokens=False, return_tensors="np"
    ).input_ids
    labels = tokenizer("This is a short summary", return_tensors="np").input_ids

    # train...
    out = bert2bert(input_ids=input_ids, decoder_input_ids=labels, labels=labels)
    loss = out.loss
    grads = bert2bert.backward(out)  # transformers: loss.backward()
    return bert2bert, tokenizer, input_ids, labels, loss, grads


@pytest.mark.oracle
def test_the_first_documented_example_runs_and_equals_transformers(bert_dir, tmp_path):
    torch, transformers = require_oracle()
    bert2bert, tokenizer, input_ids, labels, loss, grads = documented_example(bert_dir)
    assert input_ids.shape[0] == 1 and input_ids.dtype == np.int64 and not {101, 102} & set(input_ids[0])
    assert labels[0, 0] == 101 and labels[0, -1] == 102  # [CLS] ... [SEP]
    assert np.isfinite(float(loss)) and set(mbg.flatten(grads)) == set(mbg.flatten(bert2bert.params))

    # The tokenizer gives transformers' ids ...
    hf_tokenizer = transformers.BertTokenizer.from_pretrained(bert_dir)
    hf_ids = hf_tokenizer("This is a long article to summarize", add_special_tokens=False, return_tensors="pt").input_ids
    np.testing.assert_array_equal(input_ids, hf_ids.numpy())
    # ... and the same weights give transformers' loss and generation.
    bert2bert.save_pretrained(tmp_path)
    hf = transformers.EncoderDecoderModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ref = reference.run_encoder_decoder(hf, input_ids, decoder_input_ids=labels, labels=labels)
    # float32 MiniLM: the loss averages 7 log-probabilities of size ~10; measured 4e-7 apart.
    assert abs(float(loss) - ref["loss"]) < 1e-5
    outputs = bert2bert.generate(input_ids)
    with torch.no_grad():
        hf_outputs = hf.generate(torch.from_numpy(input_ids))
    np.testing.assert_array_equal(outputs, hf_outputs.numpy())
    assert tokenizer.decode(outputs[0]) == hf_tokenizer.decode(hf_outputs[0])


# ---------------------------------------------------------------- EncoderDecoderModel(encoder=, decoder=)

CFG = mbg.BertGenerationConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=37)  # fmt: skip
IDS = np.array([[5, 6, 7, 8], [9, 10, 11, 0]])
MASK = (IDS != 0).astype(np.int64)
DEC = np.array([[2, 12, 13], [2, 14, 0]])


def parts(seed=0):
    encoder = mbg.BertGenerationEncoder(CFG, seed=seed)
    decoder = mbg.BertGenerationDecoder(CFG.replace(is_decoder=True, add_cross_attention=True), seed=seed + 1)
    return encoder, decoder


def test_a_model_built_from_parts_runs_the_parts_weights():
    encoder, decoder = parts()
    model = mbg.EncoderDecoderModel(encoder=encoder, decoder=decoder)
    assert model.config.tie_encoder_decoder is False and model.config.decoder.add_cross_attention
    memory = encoder(IDS, MASK)
    expected = decoder(DEC, encoder_hidden_states=memory, encoder_attention_mask=MASK).logits
    # Exact: the same arrays go through the same operations in the same order.
    assert_close(model(IDS, MASK, decoder_input_ids=DEC).logits, expected, atol=0, rtol=0, name="logits")


def test_config_supplies_the_top_level_fields_of_a_model_built_from_parts():
    encoder, decoder = parts()
    config = mbg.EncoderDecoderConfig(CFG, CFG, decoder_start_token_id=2, pad_token_id=0, tie_encoder_decoder=True)
    model = mbg.EncoderDecoderModel(config=config, encoder=encoder, decoder=decoder)
    assert model.config.tie_encoder_decoder and model.config.decoder_start_token_id == 2
    assert not any(k.startswith("encoder.") for k in mbg.flatten(model.params))  # the decoder's stack is shared
    # With labels alone the decoder input is made from decoder_start_token_id and pad_token_id.
    assert model(IDS, MASK, labels=DEC).loss is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(encoder="enc"), "both encoder= and decoder="),
        (dict(encoder="enc", decoder="dec"), "must be a minibertgen BertGenerationEncoder"),
        (dict(config=CFG), "config must be an EncoderDecoderConfig"),
        (dict(), "config must be an EncoderDecoderConfig"),
    ],
)
def test_building_from_parts_refuses_what_cannot_work(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mbg.EncoderDecoderModel(**kwargs)


def test_a_decoder_without_cross_attention_is_refused():
    encoder = mbg.BertGenerationEncoder(CFG)
    decoder = mbg.BertGenerationDecoder(CFG.replace(is_decoder=True))
    with pytest.raises(ValueError, match="add_cross_attention=True"):
        mbg.EncoderDecoderModel(encoder=encoder, decoder=decoder)


# ---------------------------------------------------------------- BatchEncoding and token_type_ids


@pytest.fixture(scope="module")
def tokenizers(bert_dir):
    _, transformers = require_oracle()
    return mbg.BertTokenizer.from_pretrained(bert_dir), transformers.BertTokenizer.from_pretrained(bert_dir)


TEXTS = ["Hello, my dog is cute.", "Short.", "A third sentence, somewhat longer than the others are."]


@pytest.mark.oracle
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(padding=True),
        dict(padding=True, padding_side="left"),
        dict(padding=True, pad_to_multiple_of=8),
        dict(padding="max_length", max_length=30, pad_to_multiple_of=8),
        dict(padding=True, return_attention_mask=False),
        dict(padding=True, return_token_type_ids=False),
        dict(padding=True, return_special_tokens_mask=True),
        dict(padding=True, truncation=True, max_length=6, return_special_tokens_mask=True),
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()),
)
def test_tokenizer_calls_equal_transformers(tokenizers, kwargs):
    ours, theirs = tokenizers
    for pair in (None, ["and a second text"] * len(TEXTS)):
        got = ours(TEXTS, pair, return_tensors="np", **kwargs)
        want = theirs(TEXTS, pair, return_tensors="np", **kwargs)
        assert isinstance(got, mbg.BatchEncoding) and sorted(got) == sorted(want)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
            np.testing.assert_array_equal(getattr(got, name), want[name], err_msg=name)


@pytest.mark.oracle
def test_padding_side_is_read_from_tokenizer_config_and_saved(bert_dir, tmp_path):
    _, transformers = require_oracle()
    left = tmp_path / "left"
    mbg.BertTokenizer.from_pretrained(bert_dir).save_pretrained(left)
    config = json.loads((left / "tokenizer_config.json").read_text())
    (left / "tokenizer_config.json").write_text(json.dumps({**config, "padding_side": "left"}))
    ours, theirs = mbg.BertTokenizer.from_pretrained(left), transformers.BertTokenizer.from_pretrained(left)
    assert ours.padding_side == theirs.padding_side == "left"
    got, want = ours(TEXTS, padding=True, return_tensors="np"), theirs(TEXTS, padding=True, return_tensors="np")
    np.testing.assert_array_equal(got.input_ids, want.input_ids)
    assert got.input_ids[1, 0] == ours.pad_token_id  # the short text is padded on the left
    ours.save_pretrained(tmp_path / "again")
    assert mbg.BertTokenizer.from_pretrained(tmp_path / "again").padding_side == "left"
    assert mbg.BertTokenizer.from_pretrained(left, padding_side="right").padding_side == "right"  # an override wins


@pytest.mark.oracle
def test_return_tensors_pt_gives_torch_tensors(tokenizers):
    torch, _ = require_oracle()
    ours, theirs = tokenizers
    got, want = ours("One text.", return_tensors="pt"), theirs("One text.", return_tensors="pt")
    assert all(isinstance(v, torch.Tensor) for v in got.values())
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_batch_encoding_lists_its_keys_on_a_wrong_attribute(bert_dir):
    enc = mbg.BertTokenizer.from_pretrained(bert_dir)("Hello")
    assert enc.input_ids == enc["input_ids"] == [101, 7592, 102]
    with pytest.raises(AttributeError, match="attention_mask"):
        enc.labels


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(return_tensors="tf"), "return_tensors must be None, 'np' or 'pt'"),
        (dict(padding=True, padding_side="middle"), "padding_side must be 'right' or 'left'"),
        (dict(pad_to_multiple_of=8), "no effect without padding"),
        (dict(padding=True, pad_to_multiple_of=0), "pad_to_multiple_of must be a positive int"),
        (dict(return_tensors="np"), "pass padding=True"),
    ],
)
def test_bad_tokenizer_call_options_are_named(bert_dir, kwargs, message):
    tokenizer = mbg.BertTokenizer.from_pretrained(bert_dir)
    with pytest.raises(ValueError, match=message):
        tokenizer(TEXTS, **kwargs)


def test_models_take_what_the_tokenizer_returns(bert_dir):
    tokenizer = mbg.BertTokenizer.from_pretrained(bert_dir)
    encoder = mbg.BertGenerationEncoder.from_pretrained(bert_dir)
    batch = tokenizer(TEXTS, padding=True, return_tensors="np")
    assert "token_type_ids" in batch
    hidden = encoder(**batch)
    # Exact: all-zero token types are checked and then ignored, so the computation is the same one.
    assert_close(hidden, encoder(batch.input_ids, batch.attention_mask), atol=0, rtol=0, name="hidden")
    with pytest.raises(ValueError, match="fold_token_type"):
        encoder(**tokenizer(TEXTS, ["a pair"] * 3, padding=True, return_tensors="np"))
    with pytest.raises(ValueError, match="token_type_ids has shape"):
        encoder(batch.input_ids, token_type_ids=np.zeros((1, 2), dtype=np.int64))


# ---------------------------------------------------------------- from_pretrained's keywords


@pytest.mark.oracle
def test_output_loading_info_lists_what_transformers_lists(bert_dir):
    _, transformers = require_oracle()
    kwargs = dict(is_decoder=True, add_cross_attention=True, output_loading_info=True)
    decoder, info = mbg.BertGenerationDecoder.from_pretrained(bert_dir, **kwargs)
    _, hf_info = transformers.BertGenerationDecoder.from_pretrained(bert_dir, **kwargs)
    assert isinstance(decoder, mbg.BertGenerationDecoder) and info["report"] is decoder.load_report
    assert sorted(info["missing_keys"]) == sorted(hf_info["missing_keys"])
    # Ours name the keys in the model's layout ("bert." added); transformers as the file spells them.
    assert sorted(k.removeprefix("bert.") for k in info["unexpected_keys"]) == sorted(hf_info["unexpected_keys"])


@pytest.mark.oracle
def test_a_relative_override_starts_fresh_distance_tables_as_transformers(bert_dir):
    _, transformers = require_oracle()
    kwargs = dict(position_embedding_type="relative_key", output_loading_info=True)
    encoder, info = mbg.BertGenerationEncoder.from_pretrained(bert_dir, **kwargs)
    _, hf_info = transformers.BertGenerationEncoder.from_pretrained(bert_dir, **kwargs)
    assert sorted(info["missing_keys"]) == sorted(hf_info["missing_keys"])
    assert len(info["missing_keys"]) == 6 and all("distance_embedding" in k for k in encoder.load_report.new)


@pytest.mark.oracle
def test_dtype_and_torch_dtype_choose_the_numpy_dtype(bert_dir):
    torch, _ = require_oracle()
    for value, expected in ((torch.float64, "float64"), ("float64", "float64"), (np.float32, "float32"),
                            ("auto", "float32"), (None, "float32")):  # fmt: skip
        assert mbg.BertGenerationEncoder.from_pretrained(bert_dir, torch_dtype=value).dtype == expected
    assert mbg.BertGenerationEncoder.from_pretrained(bert_dir, dtype=torch.float64).dtype == "float64"
    with pytest.raises(ValueError, match="float32 or float64"):
        mbg.BertGenerationEncoder.from_pretrained(bert_dir, torch_dtype=torch.float16)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(attn_implementation="sdpa"), "attn_implementation='sdpa'.* does not apply here: there is one attention"),
        (dict(device_map="auto"), "backend='numpy' or backend='cupy'"),
        (dict(revision="main"), "never downloads"),
        (dict(use_safetensors=False), "always loads with use_safetensors=True"),
        (dict(num_hiden_layers=2), "unknown keyword 'num_hiden_layers'.*did you mean 'num_hidden_layers'"),
        (dict(dtype="float64", torch_dtype="float32"), "disagree"),
    ],
)
def test_from_pretrained_refuses_keywords_that_do_not_apply(bert_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mbg.BertGenerationEncoder.from_pretrained(bert_dir, **kwargs)


def test_encoder_decoder_from_pretrained_takes_the_same_keywords(tmp_path):
    encoder, decoder = parts()
    mbg.EncoderDecoderModel(encoder=encoder, decoder=decoder).save_pretrained(tmp_path)
    model, info = mbg.EncoderDecoderModel.from_pretrained(tmp_path, torch_dtype="float64", decoder_start_token_id=2,
                                                          output_loading_info=True)  # fmt: skip
    assert model.dtype == "float64" and model.config.decoder_start_token_id == 2
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    with pytest.raises(ValueError, match="unknown keyword 'decoder_start_token'"):
        mbg.EncoderDecoderModel.from_pretrained(tmp_path, decoder_start_token=2)
