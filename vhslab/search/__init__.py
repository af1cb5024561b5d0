"""Search: Best-of-N with a latent verifier (the winner finished from its cached hidden state)."""

from vhslab.search.best_of_n import SearchError, SearchResult, best_of_n, finish_from_cache, initial_noise

__all__ = ["SearchError", "SearchResult", "best_of_n", "finish_from_cache", "initial_noise"]
