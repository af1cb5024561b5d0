"""Search: Best-of-N with a latent verifier (the winner finished from its cached hidden state), cost models."""

from vhslab.search.best_of_n import SearchError, SearchResult, best_of_n, finish_from_cache, initial_noise
from vhslab.search.costs import CostModel, load_cost_model

__all__ = ["CostModel", "SearchError", "SearchResult", "best_of_n", "finish_from_cache", "initial_noise", "load_cost_model"]
