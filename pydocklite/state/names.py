"""Docker-style names for unnamed containers: adjective_surname (our own word lists)."""
from __future__ import annotations

import os

ADJECTIVES = (
    "agile", "amber", "ancient", "ardent", "azure", "bold", "brave", "breezy", "bright",
    "calm", "candid", "cheerful", "civic", "clever", "cosmic", "crisp", "curious", "daring",
    "dapper", "eager", "earnest", "electric", "elegant", "fearless", "festive", "fluent",
    "frosty", "gentle", "gleaming", "golden", "graceful", "hardy", "hazy", "honest",
    "humble", "jolly", "keen", "kind", "lively", "loyal", "lucid", "lunar", "merry",
    "mellow", "mighty", "modest", "nimble", "noble", "patient", "placid", "plucky",
    "polite", "proud", "quick", "quiet", "radiant", "rapid", "serene", "sharp", "shiny",
    "silent", "sleepy", "snappy", "solar", "spry", "steady", "stoic", "sturdy", "sunny",
    "swift", "tender", "tidy", "tranquil", "upbeat", "vivid", "warm", "wise", "witty",
    "zany", "zealous",
)

# People whose work made computing and science possible.
SURNAMES = (
    "agnesi", "al_khwarizmi", "babbage", "backus", "banach", "bardeen", "bose", "boyle",
    "brahe", "cantor", "carson", "cauchy", "cerf", "chandrasekhar", "clarke", "conway",
    "copernicus", "curie", "darwin", "dijkstra", "dirac", "euclid", "euler", "faraday",
    "fermat", "feynman", "fourier", "franklin", "galois", "gauss", "germain", "goldberg",
    "goodall", "hamming", "hawking", "heisenberg", "hertz", "hilbert", "hodgkin", "hollerith",
    "hopper", "huffman", "hypatia", "jackson", "johnson", "joule", "kepler", "knuth",
    "kovalevskaya", "lamarr", "laplace", "leavitt", "leibniz", "liskov", "lovelace",
    "maxwell", "meitner", "mendel", "mirzakhani", "napier", "nash", "newton", "noether",
    "ohm", "pascal", "pasteur", "planck", "poincare", "ramanujan", "ritchie", "riemann",
    "sagan", "shannon", "somerville", "tesla", "thompson", "torvalds", "turing", "volta",
    "wiles", "wu", "yalow", "zuse",
)


def generate_name(retry: int = 0, rng=None) -> str:
    """A random adjective_surname; after a clash (retry > 0) a digit is appended, as Docker
    does. rng: a random.Random (tests); else the system's (os.urandom: importing `random`
    cost ~0.4 ms of each run)."""
    choice = rng.choice if rng is not None else _choice
    name = f"{choice(ADJECTIVES)}_{choice(SURNAMES)}"
    if retry > 0:
        name += str(choice(range(10)))
    return name


def _choice(seq):
    return seq[int.from_bytes(os.urandom(4), "big") % len(seq)]


def is_valid_name(name: str) -> bool:
    """Docker's rule for user-given names (the leading "/" of the API is stripped first)."""
    from pydocklite.naming import is_valid
    return is_valid(name)
