"""Write tests/fixtures/generation/: transformers 4.57.6 generate() outputs over a grid of settings.

    pip install "minibertgen[oracle]" && python scripts/make_generation_dumps.py

One tiny random bert2bert per position type (float64, weights off their init, the LM-head bias
raised on eos so beams finish at different lengths), saved with transformers' save_pretrained, and
grid.json: for each setting, the sequences and sequences_scores generate() returned.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "generation"
INPUT_IDS = [[5, 6, 7, 8, 9, 10], [11, 12, 13, 0, 0, 0]]
IDS = dict(decoder_start_token_id=2, eos_token_id=1, pad_token_id=0)

GRID = [
    dict(num_beams=nb, length_penalty=lp, early_stopping=es, max_length=ml, num_return_sequences=min(nrs, nb))
    for nb, lp, es, ml, nrs in itertools.product([1, 2, 4], [1.0, 0.0, 2.0, -0.5], [True, False, "never"], [6, 11], [1, 2])
    if not (nb == 1 and (lp != 1.0 or es is not False))  # greedy ignores these
] + [
    dict(num_beams=3, repetition_penalty=1.5, max_length=10),
    dict(num_beams=3, no_repeat_ngram_size=2, max_length=12, num_return_sequences=3),
    dict(num_beams=2, min_length=7, max_length=9),
    dict(num_beams=1, repetition_penalty=1.3, no_repeat_ngram_size=2, max_length=12),
    dict(num_beams=1, min_new_tokens=5, max_new_tokens=7),
]


def main() -> int:
    import torch
    import transformers

    assert transformers.__version__ == "4.57.6", transformers.__version__
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for seed, pos in enumerate(("absolute", "relative_key", "relative_key_query")):
        part = dict(vocab_size=24, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
                    max_position_embeddings=32, position_embedding_type=pos)  # fmt: skip
        enc = transformers.BertGenerationEncoder(transformers.BertGenerationConfig(**part))
        dec = transformers.BertGenerationDecoder(transformers.BertGenerationConfig(**part, is_decoder=True,
                                                                                    add_cross_attention=True))  # fmt: skip
        model = transformers.EncoderDecoderModel(encoder=enc, decoder=dec).double().eval()
        model.config.decoder_start_token_id, model.config.pad_token_id = 2, 0
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            model.decoder.lm_head.bias[1] += 2.0  # lean towards eos
        folder = OUT / pos
        model.save_pretrained(folder)
        results = []
        ids = torch.tensor(INPUT_IDS)
        for setting in GRID:
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=(ids != 0).long(), do_sample=False,
                                     output_scores=True, return_dict_in_generate=True, **IDS, **setting)  # fmt: skip
            scores = None if out.get("sequences_scores") is None else out.sequences_scores.tolist()
            results.append({"settings": setting, "sequences": out.sequences.tolist(), "sequences_scores": scores})
        (folder / "grid.json").write_text(json.dumps({"input_ids": INPUT_IDS, "ids": IDS, "results": results,
                                                     "transformers": transformers.__version__}, indent=1) + "\n")  # fmt: skip
        print(f"wrote {folder} ({len(results)} settings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
