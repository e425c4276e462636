"""langadapt: adapt pretrained language models to new languages, tokenizers and longer contexts."""

__version__ = "0.1.0"
