"""Hand-run scripts that record reference outputs of other libraries' models (they need torch
and write the fixtures under tests/golden/; the tests never import torch)."""
