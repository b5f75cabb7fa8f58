"""quantsweep: sweep llama.cpp weight quants and K/V-cache types, measure KLD, PPL and speed."""

__version__ = "0.1.0"
