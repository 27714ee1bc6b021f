"""Tokenizers (data/tokenizers.py): byte and BPE round trips, and the streaming decoder that never emits
invalid UTF-8."""
import pytest

from ebtkit.data.tokenizers import BPETokenizer, ByteTokenizer, StreamDecoder

TEXT = "Héllo → 世界 🌍 and the quick brown fox\n"


def _stream(tok, ids):
    d = StreamDecoder(tok)
    pieces = [d.feed(i) for i in ids]
    return pieces, d.flush()


def test_byte_stream_holds_back_incomplete_sequences():
    tok = ByteTokenizer()
    ids = tok.encode(TEXT)
    pieces, rest = _stream(tok, ids)
    assert "".join(pieces) + rest == TEXT
    first = ids.index(0xC3)                                  # "é" is two bytes: nothing printed after the first
    assert pieces[first] == "" and pieces[first + 1] == "é"
    assert all(p.encode("utf-8").decode("utf-8") == p for p in pieces)


def test_byte_stream_replaces_invalid_bytes_and_a_cut_off_end():
    tok = ByteTokenizer()
    pieces, rest = _stream(tok, [0x61, 0xFF, 0x62, 0xE4, 0xB8])     # a, invalid, b, 2 of 3 bytes of "世"
    assert "".join(pieces) == "a\ufffdb" and rest == "\ufffd"


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(("the quick brown fox → jumps over 世界 🌍. " * 50 + "\n") * 20, 300)


def test_bpe_token_bytes_spell_the_text(bpe):
    ids = bpe.encode(TEXT)
    assert b"".join(bpe.token_bytes(i) for i in ids) == TEXT.encode("utf-8")
    pieces, rest = _stream(bpe, ids)
    assert "".join(pieces) + rest == TEXT == bpe.decode(ids)
