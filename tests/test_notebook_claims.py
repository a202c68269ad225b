"""The tutorials' prose states numbers; the committed outputs print them. Each test here reads both
from the notebook files (no kernel, no weights: milliseconds) and requires them to agree, so that a
re-executed notebook whose numbers moved, or an edited sentence, cannot drift apart unnoticed
(issue 18: "slightly different" beside a printed 6.95, "in the valley" beside a point on the
rounding slope). After re-executing a notebook, fix the sentence a failing test names.

A number in the prose agrees with a printed one when the printed value, rounded to the prose's last
digit, is the prose's number (``agrees``): "0.12" matches 0.123, "6.95" matches 6.9488, "2.7e-06"
matches 2.7418e-06.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NUMBER = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def cells(name: str) -> list[dict]:
    (path,) = NOTEBOOKS.glob(f"{name}_*.ipynb")
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def prose(name: str) -> str:
    """All markdown of a notebook, lines joined by single spaces (a claim may wrap across lines)."""
    text = "\n".join("".join(c["source"]) for c in cells(name) if c["cell_type"] == "markdown")
    return re.sub(r"\s+", " ", text)


def printed(name: str) -> str:
    """Everything the committed code cells printed (stdout and stderr streams), in order."""
    return "".join(
        "".join(out.get("text", ""))
        for c in cells(name) if c["cell_type"] == "code" for out in c.get("outputs", [])
    )  # fmt: skip


def code(name: str) -> str:
    return "\n".join("".join(c["source"]) for c in cells(name) if c["cell_type"] == "code")


def find(pattern: str, text: str, what: str) -> tuple[str, ...]:
    """The groups of the one match of ``pattern``; fails saying which claim or output is missing."""
    hits = re.findall(pattern, text)
    assert len(hits) == 1, f"expected exactly one {what} matching {pattern!r}, found {len(hits)}"
    return hits[0] if isinstance(hits[0], tuple) else (hits[0],)


def latex_number(text: str) -> str:
    """'4.2 \\cdot 10^{-12}' -> '4.2e-12'; '10^{-4}' -> '1e-4'; anything else unchanged."""
    m = re.fullmatch(r"(?:(\d+(?:\.\d+)?) \\cdot )?10\^\{?([-+]?\d+)\}?", text.strip())
    return f"{m.group(1) or '1'}e{m.group(2)}" if m else text


def agrees(stated: str, value: float) -> bool:
    """The printed ``value`` rounds to ``stated`` at the stated number's last digit (half a unit of it)."""
    stated = latex_number(stated)
    unit = Decimal(10) ** Decimal(stated).as_tuple().exponent if "." in stated or "e" in stated else Decimal(1)
    # half a unit of the last stated digit, plus a relative 1e-12 for binary-to-decimal noise
    return abs(value - float(stated)) <= float(unit) / 2 * (1 + 1e-12)


def check(stated: str, value: float, what: str) -> None:
    assert agrees(stated, value), f"{what}: the prose says {stated}, the output prints {value}"


def test_agrees_rounds_to_the_stated_digit():
    """The comparison itself: it accepts the rounding and refuses a number one last digit off."""
    assert agrees("0.12", 0.123) and agrees("6.95", 6.948845) and agrees("2.7e-06", 2.7418e-06)
    assert agrees("4.2 \\cdot 10^{-12}", 4.2e-12) and agrees("10^{-4}", 1.0e-4) and agrees("552", 552.0)
    assert not agrees("0.12", 0.126) and not agrees("6.95", 6.94) and not agrees("2.7e-06", 2.76e-06)
    assert not agrees("552", 553.0) and not agrees("10^{-4}", 1e-5)
    assert agrees("0.00", 0.004) and not agrees("0.00", 0.416)  # trailing zeros are stated digits too


# ---------------------------------------------------------------- 01 tokenization


def test_01_vocabulary_sizes_and_appended_specials():
    text, out = prose("01"), printed("01")
    (pieces,) = find(r"\*tiny\* test vocabulary \(([\d,]+) pieces\)", text, "sentencepiece size claim")
    (wordpiece,) = find(r"MiniLM's WordPiece vocabulary has ([\d,]+)", text, "WordPiece size claim")
    sep_id, pad_id = find(r"`<::::>` and `<pad>` are appended after the last piece \(ids (\d+), (\d+)\)", text, "ids claim")
    n_sp, got_sep, got_pad = find(r"sentencepiece:\s+(\d+) ids, specials \{.*'<::::>': (\d+), '<pad>': (\d+)\}", out,
                                  "sentencepiece size line")  # fmt: skip
    (n_wp,) = find(r"WordPiece\s+:\s+(\d+) ids", out, "WordPiece size line")
    pieces = int(pieces.replace(",", ""))
    assert int(n_sp) == pieces + 2, "two specials appended after the pieces"
    assert (got_sep, got_pad) == (sep_id, pad_id) == (str(pieces), str(pieces + 1))
    assert int(n_wp) == int(wordpiece.replace(",", ""))


def test_01_reads_nothing_outside_the_repository():
    assert "shared" not in code("01"), "01 must use notebooks/data/, not ../shared"
    assert (NOTEBOOKS / "data" / "test_sentencepiece.model").is_file()


def test_01_the_greedy_demo_takes_the_longest_candidate_without_showing_the_answer():
    lines = re.findall(r"start (\d+): candidates in the vocabulary (\[.*\]) -> takes '([^']+)'", printed("01"))
    assert len(lines) >= 2, lines
    for _, found, taken in lines:
        candidates = re.findall(r"'([^']+)'", found)
        assert taken in candidates and len(taken) == max(map(len, candidates)), (found, taken)
    assert "range(len(word), start, -1)" not in code("01"), "the longest-first loop is the exercise's answer"


# ---------------------------------------------------------------- 02 embeddings


def test_02_loading_report_and_table_shape():
    text, out = prose("02"), printed("02")
    (loaded,) = find(r"The report says what loading did with every tensor of the file: (\d+) loaded", text, "loaded claim")
    assert f"loaded {loaded} tensors" in out
    P, D = find(r"P \\times D = (\d+) \\times (\d+)", text, "table shape claim")
    assert f"position_embeddings  ({P}, {D})" in out


def test_02_position_zero_and_the_step_at_128():
    text, out = prose("02"), printed("02")
    (ratio,) = find(r"about five times longer than the others \((" + NUMBER + r") times the median", text, "row-0 claim")
    (got,) = find(r"\|\|E_pos\[0\]\|\| / median \|\|E_pos\[t\]\|\| \(t >= 1\) = (" + NUMBER + ")", out, "row-0 line")
    check(ratio, float(got), "row 0 against the median row")
    assert round(float(got)) == 5, "'about five times'"
    assert "step up at $t = 128$" in text
    low, high = find(r"t = 1\.\.127 (" + NUMBER + r"), t = 128\.\.511 (" + NUMBER + ")", out, "median row lengths")
    assert float(high) > float(low), "the row lengths step *up* at 128"


def test_02_unfolded_encoder_is_a_different_function():
    text, out = prose("02"), printed("02")
    assert "slightly different" not in text
    assert "The folded encoder equals BertModel to float32 rounding (max error a few $10^{-6}$)" in text
    unfolded, scale = find(r"a max difference of (" + NUMBER + r") where BertModel's outputs are at most (" + NUMBER + ")",
                           text, "unfolded claim")  # fmt: skip
    (cosine,) = find(r"a mean cosine of only (" + NUMBER + ")", text, "cosine claim")
    (norm,) = find(r"\$E_\{\\text\{type\}\}\[0\]\$ \(norm (" + NUMBER + ")", text, "norm claim")
    folded = float(find(r"folded encoder vs BertModel, max abs error: (" + NUMBER + ")", out, "folded line")[0])
    # float32 rounding of six layers moves with the BLAS build and thread count (measured 1.9e-6 and 2.7e-6): a decade
    assert 1e-6 <= folded < 1e-5, folded
    check(unfolded, float(find(r"unfolded encoder vs BertModel, max abs difference: (" + NUMBER + ")", out, "unfolded")[0]),
          "unfolded")  # fmt: skip
    check(scale, float(find(r"max \|BertModel output\| = (" + NUMBER + ")", out, "scale line")[0]), "scale")
    check(cosine, float(find(r"mean cosine of the two outputs per token: (" + NUMBER + ")", out, "cosine line")[0]), "cosine")
    got_norm, median_row = find(r"E_type\[0\]: norm (" + NUMBER + r"), a median position row (" + NUMBER + ")", out, "norm line")
    check(norm, float(got_norm), "norm of E_type[0]")
    assert float(unfolded) > float(scale) / 2, "a difference that size is no rounding"
    assert agrees(norm, float(median_row)), "'as long as a typical position row'"


# ---------------------------------------------------------------- 03 self-attention


def head_line(out: str, head: int) -> tuple[str, ...]:
    return find(rf"layer 0, head +{head}: offset +([-+]\d+) for +(\d+) of (\d+) queries \(mean weight there (" + NUMBER
                + r")\); mean weight on \[CLS\] (" + NUMBER + r"), on \[SEP\] (" + NUMBER + ")", out, f"head {head} line")  # fmt: skip


def test_03_head_2_is_a_previous_token_head():
    text, out = prose("03"), printed("03")
    assert "head 2 looks at the token itself" not in text
    count, total, offset, weight = find(r"Head 2 is a \*\*previous-token head\*\*: .*? for (\d+) of (\d+) queries the "
                                        r"largest weight is on key \$i - 1\$ \(offset \$(-\d+)\$, mean weight (" + NUMBER
                                        + r") there\)", text, "head 2 claim")  # fmt: skip
    got_offset, got_count, got_total, got_weight, _, _ = head_line(out, 2)
    assert int(got_offset) == int(offset) == -1
    assert (got_count, got_total) == (count, total)
    check(weight, float(got_weight), "head 2's weight on key i - 1")
    assert int(count) > int(total) / 2, "a majority of the queries, or it is no 'previous-token head'"


def test_03_sep_heads_and_the_two_thes():
    text, out = prose("03"), printed("03")
    w0, w4 = find(r"Heads 0 and 4 gather on `\[SEP\]` .*? mean weight (" + NUMBER + ") and (" + NUMBER + ") on it", text,
                  "[SEP] claim")  # fmt: skip
    check(w0, float(head_line(out, 0)[5]), "head 0 on [SEP]")
    check(w4, float(head_line(out, 4)[5]), "head 4 on [SEP]")
    (the,) = find(r"the second puts (" + NUMBER + ") of its weight on the first", text, "'the' claim")
    check(the, float(find(r"weight of the second 'the' \(position \d+\) on the first \(position \d+\): (" + NUMBER + ")",
                          out, "'the' line")[0]), "second 'the' on the first")  # fmt: skip


def test_03_padded_keys_get_exactly_zero():
    assert "Its padded keys get probability exactly 0" in prose("03")
    (got,) = find(r"on its padded keys: (" + NUMBER + ")", printed("03"), "padding line")
    assert float(got) == 0.0


def test_03_visible_pairs_of_the_causal_masks():
    text, out = prose("03"), printed("03")
    causal, padded = find(r"\$1 \+ 2 \+ \\dots \+ 6 = (\d+)\$ pairs of 36\..*?\$21 - 3 = (\d+)\$ pairs remain", text,
                          "visible-pairs claim")  # fmt: skip
    assert f"causal (row 0: no padding)  : {causal} visible (query, key) pairs of 36" in out
    assert f"causal + padding (row 1)    : {padded} visible (query, key) pairs of 36" in out


# ---------------------------------------------------------------- 04 relative positions


def test_04_agrees_with_the_reference_to_rounding():
    assert "must agree to rounding" in prose("04")
    errors = [float(e) for e in re.findall(r"(?:logits max abs error|loss error) (" + NUMBER + ")", printed("04"))]
    assert len(errors) == 4, errors  # logits and loss, two position types
    assert max(errors) < 1e-12, "float64 rounding is ~1e-15; 1e-12 would already be a mistake"


def test_04_the_previous_token_head_and_the_corner_row():
    text, out = prose("04"), printed("04")
    assert "Every query puts most of its weight on the token before it (query 0 has no predecessor and spreads evenly)" in text
    weight, top, n_keys, even = find(r"query 7 puts (" + NUMBER + r") on key 6; query 0 puts at most (" + NUMBER
                                     + r") on any of its (\d+) keys \(1/\d+ = (" + NUMBER + r")\)", out, "head line")  # fmt: skip
    assert float(weight) > 0.5 and agrees(top, float(even)) and int(n_keys) == 12
    row, rows = find(r"\(l, r\) = \(0, 7\) reads row (\d+) of the (\d+) rows of E", out, "corner line")
    (P,) = find(r"T, P, Dh = \d+, (\d+), \d+", code("04"), "the table size")
    assert int(row) == 0 - 7 + int(P) - 1 and int(rows) == 2 * int(P) - 1


# ---------------------------------------------------------------- 05 the full layer


def test_05_gelu_gap_dropout_and_depth_numbers():
    text, out = prose("05"), printed("05")
    gaps = re.findall(r"off by up to \$(" + NUMBER + r" \\cdot 10\^\{-?\d+\})\$", text)
    assert len(gaps) == 2, gaps  # the GELU section and the summary
    (got_gap,) = find(r"max \|tanh - exact\| = (" + NUMBER + ")", out, "GELU gap line")
    for gap in gaps:
        check(gap, float(got_gap), "largest gap between the tanh and the exact GELU")
    zero, mean = find(r"train: zero fraction (" + NUMBER + r"), survivors hold \[1\.1+\], mean (" + NUMBER + ")", out,
                      "dropout line")  # fmt: skip
    check(find(r"The zero fraction is (" + NUMBER + ")", text, "zero-fraction claim")[0], float(zero), "zero fraction")
    check(find(r"the array is (" + NUMBER + ")", text, "mean claim")[0], float(mean), "mean after dropout")
    inverted, unscaled = find(r"draws - z\| = (" + NUMBER + r") \(inverted\), (" + NUMBER + r") \(unscaled\)", out, "draws line")
    check(find(r"a mean error of (" + NUMBER + ") after", text, "inverted claim")[0], float(inverted), "inverted error")
    check(find(r"stops falling, at (" + NUMBER + ")", text, "unscaled claim")[0], float(unscaled), "unscaled error")
    post, pre = find(r"post-LN (" + NUMBER + r"), pre-LN (" + NUMBER + ")", out, "depth line")
    check(find(r"to (" + NUMBER + r") after 24 layers", text, "pre-LN claim")[0], float(pre), "pre-LN RMS")
    assert "stays at RMS 1 at every depth" in text and agrees("1.00", float(post))


def test_05_layer_equals_the_reference_to_rounding():
    errors = [float(e) for e in re.findall(r"equals transformers', max abs error (" + NUMBER + ")", printed("05"))]
    assert len(errors) == 5, errors  # two sub-blocks, the layer, two GELUs
    assert max(errors) < 1e-12, "float64 rounding is ~1e-15"
    assert "equal transformers' `BertGenerationLayer` to float64 rounding" in prose("05")


# ---------------------------------------------------------------- 06 cross-attention and the cache


def test_06_padded_source_tokens_change_nothing():
    out = printed("06")
    assert "changing a padded one does not" in prose("06")
    assert float(find(r"change a padded source token: max \|d logits\| = (" + NUMBER + ")", out, "padded line")[0]) == 0.0
    assert float(find(r"change a real source token  : max \|d logits\| = (" + NUMBER + ")", out, "real line")[0]) > 0.1


def test_06_cache_equals_the_full_forward_for_every_position_type():
    text, out = prose("06"), printed("06")
    assert "Equal to float64 rounding, for every position type" in text
    (steps,) = find(r"then (\d+) greedy steps, each with the cache", text, "steps claim")
    lines = re.findall(r"(\w+) +(\d+) steps, max \|cached - full\| = (" + NUMBER + r"); self-attention cache of layer 0: "
                       r"k \(\d+, \d+, (\d+), \d+\)", out)  # fmt: skip
    assert [pos for pos, *_ in lines] == ["absolute", "relative_key", "relative_key_query"]
    for pos, n, err, cached in lines:
        assert n == cached == steps, pos  # the cache grew by one position per step
        assert float(err) < 1e-12, f"{pos}: float64 rounding is ~1e-15"


def test_06_does_not_show_the_answers():
    source = code("06")
    assert "past=past" not in source, "the cached decoder call is exercise 2's answer"
    stub = next(c for c in cells("06") if "def my_cached_attention" in "".join(c["source"]))
    assert "cached_self_attention" not in "".join(stub["source"]).replace("my_cached_attention", ""), "solution beside the stub"


# ---------------------------------------------------------------- 07 teacher forcing and the loss


def test_07_the_token_mean_and_the_sequence_means():
    text, out = prose("07"), printed("07")
    token, seq0, seq1, both = find(r"mean over counted tokens +(" + NUMBER + r").*\n.*per-sequence means +\[(" + NUMBER
                                   + r"), (" + NUMBER + r")\], their mean (" + NUMBER + ")", out, "means lines")  # fmt: skip
    (log_v,) = find(r"log V for V = 16: (" + NUMBER + ")", out, "log V line")
    s_token, s_both, s_short, s_log_v = find(
        r"the mean over the 8 counted tokens, (" + NUMBER + r")\. The mean of the two per-sequence means is (" + NUMBER
        + r"), slightly below: the short row 1 \(mean (" + NUMBER + r")\) .* the uniform guess \$\\log V = (" + NUMBER
        + r")\$, and the grey", text, "means claim")  # fmt: skip
    assert "counted tokens per row [5, 3], in all 8" in out and "row 0 with its 5 tokens" in text
    check(s_token, float(token), "the token mean")
    check(s_both, float(both), "the mean of sequence means")
    check(s_short, float(seq1), "row 1's mean")
    check(s_log_v, float(log_v), "log V")
    assert float(both) < float(token), "'slightly below'"
    assert "above or below the batch loss" in text  # the prediction this answers


def test_07_pad_labels():
    text, out = prose("07"), printed("07")
    honest, n_real, padded, n_all, share = find(
        r"loss with -100 (" + NUMBER + r") over (\d+) tokens, with pad labels (" + NUMBER + r") over (\d+) tokens "
        r"\((\d+)% of them pad\)", out, "pad-labels line")  # fmt: skip
    reported, real, right, exact = find(r"its reported training loss (" + NUMBER + r"), its loss on the real tokens ("
                                        + NUMBER + r") \(the right model: (" + NUMBER + r")\), exactly reversed (\d+)%",
                                        out, "pad-trained line")  # fmt: skip
    claim = find(r"scores (" + NUMBER + r") over the (\d+) real tokens, and (" + NUMBER + r") once the padding \((\d+)% "
                 r"of the (\d+) positions\)", text, "same-model claim")  # fmt: skip
    for stated, value, what in zip(claim, (honest, n_real, padded, share, n_all), ("loss", "tokens", "padded loss",
                                                                                   "share", "positions")):
        check(stated, float(value), what)
    s_reported, s_real, s_right, s_exact = find(
        r"reports a training loss of (" + NUMBER + r"), as low as .* it is worse, (" + NUMBER + r") against (" + NUMBER
        + r"),.* The toy still reverses (\d+)%", text, "pad-trained claim")  # fmt: skip
    check(s_reported, float(reported), "reported loss")
    check(s_real, float(real), "real-token loss")
    check(s_right, float(right), "the right model's loss")
    check(s_exact, float(exact), "exact match")
    assert float(real) > float(right), "'worse'"
    assert float(share) == round(100 * (1 - int(n_real) / int(n_all))) and "a fifth of the positions" in text


def test_07_no_shift_copies():
    text, out = prose("07"), printed("07")
    loss, exact, honest = find(r"no shift: last training loss (" + NUMBER + r"); exactly reversed (\d+)%; its loss with "
                               r"the right shift (" + NUMBER + ")", out, "no-shift line")  # fmt: skip
    (right,) = find(r"trained right: last training loss (" + NUMBER + ")", out, "right line")
    s_loss, s_right, s_exact, s_honest = find(
        r"ends at a training loss of (" + NUMBER + r"), far below the right run's (" + NUMBER + r"), and reverses (\d+)% "
        r".* its loss is (" + NUMBER + r"), worse than", text, "no-shift claim")  # fmt: skip
    check(s_loss, float(loss), "no-shift loss")
    check(s_right, float(right), "right loss")
    check(s_exact, float(exact), "no-shift exact match")
    check(s_honest, float(honest), "no-shift honest loss")
    assert float(honest) > math.log(16), "'worse than the uniform guess'"
    assert "generated [2, 2, 2, 2, 2, 2, 2, 2, 2]" in out, "'it outputs the start token again, forever'"


def test_07_start_tokens():
    text, out = prose("07"), printed("07")
    rates = dict(re.findall(r"start token (\d+): exactly reversed (\d+)%", out))
    s2, s0, s3 = find(r"Started from token 2, the model reverses (\d+)%\. The pad token 0 happens to do little harm here "
                      r"\((\d+)%\).* The ordinary token 3 ruins it, (\d+)%", text, "start claim")  # fmt: skip
    check(s2, float(rates["2"]), "start 2")
    check(s0, float(rates["0"]), "start 0")
    check(s3, float(rates["3"]), "start 3")
    assert "with no decoder_start_token_id: config.decoder_start_token_id is None" in out


def test_07_row_1_of_the_table():
    """The first prediction's answer: position 3 holds the end token, position 4 the pad token."""
    text, out = prose("07"), printed("07")
    assert "Position 3 of the short row holds the **end token** 1" in text and "Position 4 holds `pad_token_id` 0" in text
    assert re.search(r"\n +3 \| +1 \| +ignored \(-100\)\n +4 \| +0 \| +ignored \(-100\)", out)


def test_07_does_not_show_the_answers():
    for stub in ("def my_shift_right", "def my_masked_loss"):
        cell = next("".join(c["source"]) for c in cells("07") if stub in "".join(c["source"]))
        assert 'raise NotImplementedError("your code here")' in cell


# ---------------------------------------------------------------- 08 backprop


def test_08_the_valley_of_the_epsilon_sweep():
    text, out = prose("08"), printed("08")
    assert "in the valley: errors" not in text
    eps, err = find(r"the sweep's valley is at \$\\epsilon = (10\^\{-\d+\})\$ here, with an error of \$([^$]+)\$", text,
                    "valley claim")  # fmt: skip
    default_err, times = find(r"where the error is \$([^$]+)\$, (\d+) times the valley's", text, "slope claim")
    got_err, got_eps = find(r"the valley: smallest error (" + NUMBER + r") at epsilon = (" + NUMBER + ")", out, "valley line")
    got_default, got_times = find(r"at grad_check's default epsilon = 1e-6: error (" + NUMBER + r"), (\d+) times", out,
                                  "default line")  # fmt: skip
    check(eps, float(got_eps), "the valley's epsilon")
    check(err, float(got_err), "the valley's error")
    check(default_err, float(got_default), "the error at 1e-6")
    check(times, float(got_times), "how many times larger")
    assert float(got_eps) > 1e-6, "'1e-6 sits to the left of the valley, on the rounding slope'"


def test_08_grad_check_errors_near_1e_9():
    assert "its $10^{-9}$ is far below" in prose("08")
    (report,) = find(r"LayerNorm: \|finite difference - backward\| per input: (\{[^}]*\})", printed("08"), "report")
    values = [float(v) for v in re.findall(NUMBER, report)]
    assert len(values) == 3 and all(1e-10 <= v < 1e-8 for v in values), values  # "near 1e-9": within a decade


def test_08_summary_counts_the_gradients():
    (n,) = find(r"(\d+) parameter tensors, \d+ numbers", printed("08"), "tensor count")
    assert f"all {n} gradients agree" in printed("08")
    assert f"The whole bert2bert's {n} parameter gradients equal torch autograd's" in prose("08")


def test_08_loss_gradient_rows():
    """Section 3's prediction: ignored rows are zero, the others sum to 0 (to float64 rounding)."""
    out = printed("08")
    assert "dz rows of ignored labels are zero: True" in out
    (worst,) = find(r"largest \|row sum\| of dz: (" + NUMBER + ")", out, "row sums")
    assert float(worst) < 1e-14, "rows of softmax - onehot sum to 0 up to float64 rounding"


def test_08_does_not_show_the_answers():
    """The loss's gradient formula is exercise 1: the prose states the loss, not its derivative."""
    text = prose("08")
    assert "\\operatorname{onehot}" not in text and "p_k\\Big(g_k - \\sum_i g_i p_i\\Big)" not in text
    for stub in ("def my_cross_entropy_backward", "def my_softmax_backward"):
        cell = next("".join(c["source"]) for c in cells("08") if stub in "".join(c["source"]))
        assert 'raise NotImplementedError("your code here")' in cell


# ---------------------------------------------------------------- 09 warm start


def test_09_step_0_is_a_uniform_guess():
    (stated,) = find(r"near \$\\ln 30522 \\approx (" + NUMBER + r")\$", prose("09"), "ln claim")
    check(stated, math.log(30522), "ln 30522")
    losses = [float(v) for v in re.findall(r"step 0: held-out loss +(" + NUMBER + ")", printed("09"))]
    assert len(losses) == 3 and all(abs(v - math.log(30522)) < 0.5 for v in losses), losses  # "near": within 0.5 nat


def test_09_source_gaps_and_copies():
    text, out = prose("09"), printed("09")
    paper_gap, copied_gap = find(r"\$\\Delta\$ is only (" + NUMBER + r") at the end, against (" + NUMBER
                                 + r") for the copied start", text, "gap claim")  # fmt: skip
    gaps = dict(re.findall(r"^(.+?) +\d+\.\d s: held-out loss .*gap (" + NUMBER + ")$", out, flags=re.M))
    check(paper_gap, float(gaps["paper's warm start"]), "the paper's final gap")
    check(copied_gap, float(gaps["warm start, copied"]), "the copied start's final gap")
    assert float(paper_gap) < float(copied_gap) / 5, "'near the plateau': a small fraction of the copied start's gap"
    (random_gap,) = find(r"barely reads its source\s+yet \(\$\\Delta\$ = (" + NUMBER + r")\)", text, "random gap")
    check(random_gap, float(gaps["random init"]), "random init's final gap")
    assert "the copied start copies every held-out sentence" in text
    n = int(find(r"(\d+) held out", text, "held-out size")[0])
    assert f"warm start, copied: {n} of {n} copied exactly, {n} distinct outputs" in out
    (distinct,) = find(r"the paper's warm start writes .*?, (\d+) distinct outputs\s+for eight inputs, none of them "
                       r"its input", text, "plateau claim")  # fmt: skip
    assert f"paper's warm start: 0 of {n} copied exactly, {distinct} distinct outputs" in out
    (random_distinct,) = find(r"random init writes (\d+) distinct outputs", text, "random init's outputs")
    assert f"random init: 0 of {n} copied exactly, {random_distinct} distinct outputs" in out


def test_09_new_tensors_are_the_cross_attention_and_the_bias():
    assert "New: the 6 decoder layers' cross-attention (query, key, value, output dense and LayerNorm) and the LM head's bias" in prose("09")
    assert "new (initialised here, 61)" in printed("09")  # 6 layers x 10 tensors + 1 bias
    assert "%matplotlib" not in code("09")


def test_09_pins_one_blas_thread_before_numpy_and_says_what_may_vary():
    first = next("".join(c["source"]) for c in cells("09") if c["cell_type"] == "code")
    assert first.index('os.environ.setdefault(variable, "1")') < first.index("import numpy")
    assert "**Which numbers may vary.** The timings always do" in prose("09")


def test_09_exercise_is_a_stub_and_the_share_of_new_parameters_is_printed():
    assert 'def my_copy_cross_attention(stack):\n    raise NotImplementedError("your code here")' in code("09")
    assert "check_copy_cross_attention: every layer's cross-attention is a copy" in printed("09")
    new, total, share = find(r"new \(random\) parameters: ([\d,]+) of ([\d,]+) \((" + NUMBER + r")%\)", printed("09"), "share")
    check(share, 100 * int(new.replace(",", "")) / int(total.replace(",", "")), "the share of new parameters")


# ---------------------------------------------------------------- 10 training dynamics


def _evals_10(out: str) -> list[tuple[int, float, float, float, float]]:
    """The run's table: (step, recent training loss, held-out, shuffled sources, gap) per evaluation."""
    rows = re.findall(r"^ *(\d+) +(" + NUMBER + ") +(" + NUMBER + ") +(" + NUMBER + ") +(" + NUMBER + ")$", out, re.M)
    return [(int(r[0]), *map(float, r[1:])) for r in rows]


def test_10_schedule_and_gradient_norms():
    text, out = prose("10"), printed("10")
    T, w = find(r"T = (\d+), w = (\d+), peak lr", out, "schedule line")
    assert f"the run below has $T = {T}$ and $w = {w}$" in text
    lrs = dict(re.findall(r"step +(\d+): lr (" + NUMBER + ")", out))
    assert float(lrs["0"]) == 0 and "The very first optimizer step uses learning rate 0" in text
    assert float(lrs[w]) == 5e-4 and f"Step {w} is the first at the peak" in text and float(lrs[str(int(w) - 1)]) < 5e-4
    (last,) = find(r"the last step, (\d+), uses \$(" + NUMBER + r" \\cdot 10\^\{-?\d+\})\$", text, "last lr")[:1]
    assert int(last) == int(T) - 1
    (stated_last,) = find(r"the last step, \d+, uses \$([^$]+)\$", text, "last lr value")
    check(stated_last, float(lrs[last]), "the last step's learning rate")
    first5, last5, n_clipped, n_steps, largest = find(
        r"gradient norm: (" + NUMBER + r") over the first 5 steps, (" + NUMBER + r") over the last 5; clipped on (\d+) "
        r"of (\d+) steps \(the largest: (" + NUMBER + ")", out, "norm line")  # fmt: skip
    body, summary = text[: text.index("## Summary")], text[text.index("## Summary") :]
    for part in (body, summary):
        check(find(r"(" + NUMBER + r") (?:on average )?over the first 5 steps", part, "first norms")[0], float(first5), "first 5 norms")
        assert re.search(rf"{n_clipped} of (?:the )?{n_steps}\b", part), "the clipped count"
    check(find(r"\((" + NUMBER + r") over the last 5 steps", text, "last norms")[0], float(last5), "last 5 norms")
    assert int(n_clipped) > int(n_steps) // 2 and "most steps" in text  # "on most steps"


def test_10_losses_and_gaps_follow_the_table():
    text, out = prose("10"), printed("10")
    evals = _evals_10(out)
    assert len(evals) == 8 and evals[-1][0] == 200, evals
    first, last = evals[0], evals[-1]
    held_from, step_from, held_to, step_to, train_last = find(
        r"from (" + NUMBER + r") held out at step (\d+) to (" + NUMBER + r") at step (\d+), with the training batches' "
        r"mean at (" + NUMBER + ")", text, "loss claim")  # fmt: skip
    assert (int(step_from), int(step_to)) == (first[0], last[0])
    check(held_from, first[2], "first held-out loss")
    check(held_to, last[2], "last held-out loss")
    check(train_last, last[1], "last training mean")
    assert last[1] > last[2]  # "higher than held out"
    gap_from, gap_to = find(r"source gap\*\* grows from \+(" + NUMBER + r") at step \d+ to \+(" + NUMBER + ")", text, "gap claim")
    check(gap_from, first[4], "first gap")
    check(gap_to, last[4], "last gap")
    (rise_step, rise_from, rise_to) = find(r"After step (\d+) the shuffled-source loss \*rises\* \((" + NUMBER + r") then, ("
                                           + NUMBER + r") at the end\)", text, "rise claim")  # fmt: skip
    shuffled = {e[0]: e[3] for e in evals}
    check(rise_from, shuffled[int(rise_step)], "shuffled loss at the turn")
    check(rise_to, last[3], "final shuffled loss")
    later = [shuffled[k] for k in sorted(shuffled) if k >= int(rise_step)]
    assert later == sorted(later), "the shuffled-source loss rises after the stated step"
    held = [e[2] for e in evals]
    assert held == sorted(held, reverse=True), "the held-out loss falls at every evaluation"


def test_10_the_model_writes_the_held_out_fusions():
    text, out = prose("10"), printed("10")
    right, n, distinct, n_sources = find(r"exact match 1\.000 \((\d+) of (\d+)\), token accuracy 1\.000, (\d+) distinct "
                                         r"predictions for (\d+) sources", out, "scores line")  # fmt: skip
    assert right == n == distinct == n_sources == "32"
    assert "All 32 held-out fusions are exactly right, 32 different sentences for 32 sources" in text
    held, gap = find(r"held-out loss (" + NUMBER + r"), with shuffled sources " + NUMBER + r": source gap (" + NUMBER + ")", out, "gap line")
    for claim in (r"with a source gap of (" + NUMBER + ") nats per token", r"with a gap of (" + NUMBER + ") nats"):
        check(find(claim, text, "gap claim")[0], float(gap), "final gap")
    check(find(r"ends at a held-out loss of (" + NUMBER + ")", text, "summary loss")[0], float(held), "final held-out loss")
    assert "Mark finished the work although he was tired." in text
    assert "prediction: mark finished the work although he was tired." in out
    (params,) = find(r"(?m)^([\d,]+) parameters$", out, "parameter count")
    check(find(r"the (" + NUMBER + r") million parameters printed below", text, "parameters claim")[0],
          int(params.replace(",", "")) / 1e6, "parameters in millions")  # fmt: skip


def test_10_clipping_agrees_with_torch_to_float32_rounding():
    out = printed("10")
    (diff,) = find(r"the two norms differ by (" + NUMBER + r") relative, and so do the clipped gradients", out, "clip line")
    assert float(diff) < 1e-4, "float32 sums of 48.7 M squares: about four digits"


def test_10_overfitting_numbers():
    text, out = prose("10"), printed("10")
    (n_tokens,) = find(r"(?m)^(\d+) tokens, [\d,]+ parameters, 100 steps", out, "tiny line")
    assert f"the {int(n_tokens) - 5} words the fusion generator can write" in text  # + 5 special tokens
    low, at, end, train_end = find(r"held-out loss: lowest (" + NUMBER + r") at step (\d+), (" + NUMBER + r") at the end; "
                                   r"training loss at the end (" + NUMBER + ")", out, "overfit line")  # fmt: skip
    body, summary = text[: text.index("## Summary")], text[text.index("## Summary") :]
    claims = find(r"its training loss falls to (" + NUMBER + r"), while its held-out loss is lowest at step (\d+) \(("
                  + NUMBER + r")\) and then rises, to (" + NUMBER + ") at the end", body, "overfit claim")  # fmt: skip
    claims += find(r"reaches (" + NUMBER + r") in training while its held-out loss climbs from (" + NUMBER
                   + r") \(step (\d+)\) to (" + NUMBER + ")", summary, "summary claim")  # fmt: skip
    for stated, value, what in zip(claims, (train_end, at, low, end, train_end, low, at, end),
                                   ("training", "step", "lowest", "end", "training", "lowest", "step", "end")):  # fmt: skip
        check(stated, float(value), f"overfitting: {what}")
    assert float(end) > float(low) + 0.5 and float(train_end) < 0.05  # memorised, and worse held out


# ---------------------------------------------------------------- 11 beam search


def test_11_grid_size_and_test_inputs():
    text = prose("11")
    (runs,) = find(r"the (\d+) runs recorded in", text, "grid claim")
    grid = json.loads((NOTEBOOKS.parent / "tests" / "fixtures" / "generation" / "absolute" / "grid.json").read_text())
    assert len(grid["results"]) == int(runs)
    assert "Over the 24 test inputs" in text and "over 24 inputs" in text
    assert all(line.endswith("of 24") for line in re.findall(r"^.*differs from 'never' on \d+ of \d+$", printed("11"), re.M))


def test_11_early_stopping_steps_and_differences():
    text, out = prose("11"), printed("11")
    s_true, s_false, s_never, differ, total = find(r"`True` runs (\d+) decoder steps and `False` (\d+), against (\d+) for "
                                                   r"`\"never\"`, and both return a different best sequence from "
                                                   r"`\"never\"` on (\d+) of the (\d+) inputs", text, "early stopping claim")  # fmt: skip
    lines = dict((es, (n, d, t)) for es, n, d, t in re.findall(
        r"early_stopping=(\w+) *: +(\d+) decoder steps for the batch, best sequence differs from 'never' on (\d+) of (\d+)", out))
    assert lines == {"True": (s_true, differ, total), "False": (s_false, differ, total), "never": (s_never, "0", total)}
    rest = int(find(r"for the other (\d+) the answer was final", text, "rest claim")[0])
    assert rest == int(total) - int(differ)


def test_11_beam_is_never_worse_with_alpha_0():
    assert "usually finds a sequence at least as likely" in prose("11")
    better, equal, worse, total = find(r"beam better on (\d+), equal on (\d+), worse on (\d+) of (\d+)", printed("11"), "line")
    assert int(worse) == 0 and int(better) + int(equal) + int(worse) == int(total) == 24


def test_11_tree_does_not_show_the_beam_step():
    assert "sums[:, None] + log_probs" not in code("11"), "that line is the exercise's answer"


# ---------------------------------------------------------------- 12 sampling


def test_12_sampling_moved_out_of_11():
    assert "do_sample=True" not in code("11") and "## Sampling" not in prose("11")
    assert prose("11").rstrip().endswith("sampling comes next, in notebook 12.")


def test_12_temperature_keeps_the_ranking_and_top_p_keeps_the_crossing_token():
    out = printed("12")
    entropies = [float(e) for e in re.findall(r"T = \d\.\d: entropy (" + NUMBER + ") nats", out)]
    assert len(entropies) == 3 and entropies == sorted(entropies), "T = 0.5, 1, 2: the entropy grows"
    (n_half,) = find(r"top_p 0\.5 +keeps +(\d+) tokens", out, "top_p 0.5 line")
    assert "the best token's probability alone reaches $p$, so the nucleus is that one token" in prose("12")
    assert n_half == "1"


def test_12_temperature_first_keeps_more_tokens():
    out = printed("12")
    (first,) = find(r"temperature, then top_p: +(\d+) tokens kept", out, "line")
    (after,) = find(r"top_p, then temperature: +(\d+) tokens kept", out, "line")
    assert int(first) > int(after)
    assert "Temperature first flattens the distribution, so the nucleus needs more tokens" in prose("12")


def test_12_diversity_costs_likelihood():
    rows = re.findall(r"T = (" + NUMBER + r") *: +(" + NUMBER + r") distinct outputs of 20 per input, mean log p +(" + NUMBER + ")",
                      printed("12"))
    assert len(rows) == 6
    distinct, log_p = [float(d) for _, d, _ in rows], [float(lp) for _, _, lp in rows]
    assert distinct == sorted(distinct) and log_p == sorted(log_p, reverse=True)
    assert "over the 24 test inputs we draw 20 samples each" in prose("12").lower()


def test_12_draws_differ_from_torch_but_frequencies_agree():
    (p_value,) = find(r"chi-square test, ours against torch's frequencies: chi2 = " + NUMBER + r" on \d+ dof, p = (" + NUMBER + ")",
                      printed("12"), "chi-square line")
    assert float(p_value) > 0.001
    assert "3000 first tokens from each library" in prose("12") and "of the 3000 draws" in printed("12")


def test_12_does_not_show_the_answer():
    """The exercise cell is a stub; the notebook calls processors.top_p, it never writes the nucleus rule."""
    assert "def my_top_p(scores, p):\n    raise NotImplementedError" in code("12")
    assert "put_along_axis" not in code("12") and "-np.inf" not in code("12")  # no keep-set written back


# ---------------------------------------------------------------- 13 GPU


def test_13_cpu_runs_at_tens_of_gflops():
    assert "On a CPU the matrix products run at tens of GFLOP/s" in prose("13")
    rates = [float(r) for r in re.findall(r"\( *(" + NUMBER + r") GFLOP/s\)", printed("13"))]
    assert rates and all(10 <= r < 100 for r in rates[:2]), rates  # the numpy column comes first


# ---------------------------------------------------------------- 14 property-based testing


def test_14_the_minimal_counterexample_and_the_example_count():
    assert "The minimal counterexample is one sequence of two tokens, all padding" in prose("14")
    B, T, mask = find(r"after shrinking +: B=(\d+), T=(\d+), H=\d+, Dh=\d+, mask=(\[\[[^\]]*\]\])", printed("14"), "line")
    assert (B, T) == ("1", "2") and json.loads(mask) == [[0, 0]]
    (examples,) = find(r"max_examples=(\d+)", code("14"), "setting")
    assert f"both properties held on {examples} generated examples each" in printed("14")


def test_14_a_property_that_only_checks_sums_misses_a_bug():
    out = printed("14")
    assert "checking only that rows sum to 1 catches some of the bugs, not all" in prose("14")
    assert "for a softmax that is the softmax of -x" in out
    (n_bugs,) = find(r"check_softmax_property: your property holds for minibertgen.ops.softmax_forward and caught all "
                     r"(\d+) planted bugs", out, "solution line")  # fmt: skip
    assert int(n_bugs) == 4


@pytest.mark.parametrize(("name", "checker"), [("01", "check_wordpiece"), ("02", "check_embeddings"),
                                               ("04", "check_relative_distances"), ("14", "check_softmax_property")])
def test_the_exercise_stub_waits_and_the_solution_passes(name, checker):
    out = printed(name)
    assert "Not written yet: fill in my_" in out, "the stub's NotImplementedError is caught and explained"
    assert re.search(rf"^{checker}: ", out, re.M), "the solution passes the checker"


@pytest.mark.parametrize("name", ["01", "02", "03", "09", "10"])
def test_minilm_notebooks_name_the_fetch_command_first(name):
    """The first code cell asks for the checkpoint through require_weights, whose error names the command."""
    first = next("".join(c["source"]) for c in cells(name) if c["cell_type"] == "code")
    assert 'require_weights("minilm-l6")' in first and "minibertgen fetch minilm-l6" in first


def test_require_weights_says_which_command_to_run(tmp_path):
    from minibertgen.fetch import WeightsMissing, require_weights

    with pytest.raises(WeightsMissing, match=r"\n    minibertgen fetch minilm-l6\n") as caught:
        require_weights("minilm-l6", tmp_path / "empty")
    rendered = caught.value._render_traceback_()  # what Jupyter shows instead of a traceback
    assert len(rendered) == 1 and "Traceback" not in rendered[0] and "minibertgen fetch minilm-l6" in rendered[0]
