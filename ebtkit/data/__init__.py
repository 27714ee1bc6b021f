"""Datasets and tokenizers. Imports no models."""
from .text import (CORPORA, DataError, TextData, get_batch, load_corpus, load_text_file, prepare_text_data)
from .tokenizers import BPETokenizer, ByteTokenizer, build_tokenizer, tokenizer_from_dir

__all__ = ["CORPORA", "DataError", "TextData", "get_batch", "load_corpus", "load_text_file", "prepare_text_data",
           "ByteTokenizer", "BPETokenizer", "build_tokenizer", "tokenizer_from_dir"]
