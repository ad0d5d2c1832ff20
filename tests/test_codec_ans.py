"""The compiled range coder (medzoo.codec.ans) against constriction's AnsCoder, word for word."""

import numpy as np
import pytest

from medzoo.codec import ans
from medzoo.codec.hyperprior import _frequencies
from medzoo.errors import DataError

ESCAPE_BITS = 18


def _tables(rng, count):
    """Categorical tables like the coder's: Laplace-like, flat, one dominant symbol, tiny, wide."""
    tables = []
    for k in range(count):
        n = [2, 3, 41, 300, 2047][k % 5]
        x = np.arange(n) - n // 2
        shape = [np.exp(-np.abs(x) / rng.uniform(0.3, 30)), np.ones(n), np.where(x == 0, 1.0, 1e-9),
                 rng.random(n) ** 4][k % 4]
        tables.append(_frequencies(shape / shape.sum()))
    return tables


def _constriction_stream(groups, contexts, tables, shifts):
    """What :func:`medzoo.codec.lossless._code_errors` wrote with constriction: per group (pushed last first),
    the low bits, the escapes, the symbols, each with ``encode_reverse``."""
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    models = [constriction.stream.model.Categorical(t, perfect=False) for t in tables]
    for (symbols, escapes, lows), k in zip(reversed(groups), reversed(contexts)):
        if shifts[k]:
            coder.encode_reverse(lows.astype(np.int32), constriction.stream.model.Uniform(1 << int(shifts[k])))
        if escapes.size:
            coder.encode_reverse(escapes.astype(np.int32), constriction.stream.model.Uniform(1 << ESCAPE_BITS))
        coder.encode_reverse(symbols.astype(np.int32), models[k])
    return coder.get_compressed()


def _random_groups(rng, tables, shifts, count):
    """Errors in stream order with their groups' contexts and bounds, and the split constriction codes."""
    halves = np.array([(len(t) - 2) // 2 for t in tables])
    contexts = rng.integers(0, len(tables), size=count)
    sizes = rng.integers(1, 60, size=count)
    errors, groups = [], []
    for k, size in zip(contexts, sizes):
        spread = (halves[k] + 3) << shifts[k]
        e = rng.integers(-spread, spread + 1, size=size)
        e[rng.random(size) < 0.02] = rng.integers(-(1 << 16), 1 << 16)  # far escapes
        high = e >> shifts[k]
        escaped = np.abs(high) > halves[k]
        symbols = np.where(escaped, 2 * halves[k] + 1, high + halves[k])
        groups.append((symbols, high[escaped] + (1 << (ESCAPE_BITS - 1)), e - (high << shifts[k])))
        errors.append(e)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return np.concatenate(errors).astype(np.int64), contexts, bounds, halves, groups


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_compiled_encoder_writes_constrictions_words_and_decodes_them(seed):
    """Random groups over tables of 2 to 2,049 symbols, with low bits (shifts 0-7) and escapes: the compiled
    encoder's words are constriction's, and the compiled decoder reads constriction's words back into the
    errors, wavefront by wavefront."""
    rng = np.random.default_rng(seed)
    tables = _tables(rng, 7)
    shifts = np.array([0, 1, 0, 3, 7, 0, 2])
    errors, contexts, bounds, halves, groups = _random_groups(rng, tables, shifts, 200)
    cdfs, starts = ans.pack([ans.quantised_cdf(t) for t in tables])
    words = np.empty(2 * errors.size + 2, dtype=np.uint32)
    used = ans.encode_groups(errors, np.arange(errors.size), contexts, bounds, shifts, halves, cdfs, starts,
                             ESCAPE_BITS, words)
    want = _constriction_stream(groups, contexts, tables, shifts)
    assert any(g[1].size for g in groups) and used > 100
    np.testing.assert_array_equal(words[:used], want)

    # decode: a "wavefront" is a run of groups whose contexts ascend (the stream's order within one)
    decoder = ans.Decoder(want)
    g, got = 0, []
    while g < len(contexts):
        end = g + 1
        while end < len(contexts) and contexts[end] > contexts[end - 1]:
            end += 1
        ctx = np.concatenate([np.full(bounds[i + 1] - bounds[i], contexts[i]) for i in range(g, end)])
        pixels = rng.permutation(ctx.size)  # pixel order is free: the stream holds each context's in turn
        ctx_in_pixel_order = np.empty_like(ctx)
        ctx_in_pixel_order[pixels] = ctx
        out = np.empty(ctx.size, dtype=np.int64)
        ans.decode_wavefront(decoder.words, decoder.cursor, ctx_in_pixel_order, len(tables), cdfs, starts, shifts,
                             halves, ESCAPE_BITS, out)
        stream = errors[bounds[g]:bounds[end]]
        by_pixel = np.empty_like(stream)
        order = np.argsort(ctx_in_pixel_order, kind="stable")  # each context's pixels in pixel order
        by_pixel[order] = stream
        np.testing.assert_array_equal(out, by_pixel)
        got.append(out)
        g = end
    assert sum(o.size for o in got) == errors.size


def test_quantised_tables_give_every_symbol_at_least_one_part_in_2_to_the_24():
    """The cumulative table starts at 0, ends at 2^24 and rises by at least 1 per symbol, even for symbols of
    probability 0; a table of one symbol is refused."""
    cdf = ans.quantised_cdf(np.array([0.0, 1.0, 0.0, 0.0]))
    assert cdf[0] == 0 and cdf[-1] == 1 << 24 and (np.diff(cdf) >= 1).all()
    with pytest.raises(DataError):
        ans.quantised_cdf(np.array([1.0]))
    for bad in ([0.5, np.nan], [0.5, -0.1, 0.6], [0.0, 0.0], [np.inf, 1.0]):  # constriction refuses these too
        with pytest.raises(DataError, match="finite, non-negative"):
            ans.quantised_cdf(np.array(bad))


def test_a_stream_ending_in_a_zero_word_is_refused():
    """No encoder writes a last word of 0 (constriction refuses one too): a damaged payload is a DataError."""
    with pytest.raises(DataError, match="zero word"):
        ans.Decoder(np.array([7, 0], dtype=np.uint32))
    assert ans.Decoder(np.zeros(0, dtype=np.uint32)).cursor.tolist() == [0, 0]


def test_a_damaged_or_truncated_stream_is_refused_not_decoded_into_other_pixels():
    """Decoding starts where encoding ended and must end where it started (state 0, every word read): a payload
    cut short or with a word changed fails that check; a context beyond the payload's count is refused before
    the compiled decoder indexes with it."""
    from medzoo.codec import lossless

    rng = np.random.default_rng(3)
    signal = np.cumsum(rng.integers(-40, 41, size=(1, 48, 40)), axis=2) + 3000
    payload = lossless.encode_signal(signal, "uint16")
    np.testing.assert_array_equal(lossless.decode_signal(payload, signal.shape), signal)
    changed = bytearray(payload)
    changed[-9] ^= 0x10  # a word inside the range-coded part
    for damaged in (payload[:-4], bytes(changed)):
        with pytest.raises(DataError):
            lossless.decode_signal(damaged, signal.shape)
    words = np.array([5, 9], dtype=np.uint32)
    decoder = ans.Decoder(words)
    cdfs, starts = ans.pack([ans.quantised_cdf(np.array([0.5, 0.5]))])
    out = np.empty(2, dtype=np.int64)
    assert not ans.decode_wavefront(words, decoder.cursor, np.array([0, 1]), 1, cdfs, starts, np.zeros(1, np.int64),
                                    np.zeros(1, np.int64), ESCAPE_BITS, out)
