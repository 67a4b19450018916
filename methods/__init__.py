"""METS, MERL and their text encoders; importing this package registers them."""

from methods import text_encoders  # noqa: F401  (registers minilm, mpnet, tfidf, random-bert, hf:)
from methods import mets  # noqa: F401  (registers the "mets" method)
from methods import merl  # noqa: F401  (registers the "merl" method)
