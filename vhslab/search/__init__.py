"""Search: Best-of-N on every verifier path (the VHS winner finished from its cached hidden state),
noise search, cost models and the budget table."""

from vhslab.search.best_of_n import SearchResult, best_of_n, check_search, search_path
from vhslab.search.costs import CostModel, load_cost_model
from vhslab.search.generation import Prompted, SearchError, finish_from_cache, initial_noise
from vhslab.search.noise_search import noise_search

__all__ = ["CostModel", "Prompted", "SearchError", "SearchResult", "best_of_n", "check_search", "finish_from_cache",
           "initial_noise", "load_cost_model", "noise_search", "search_path"]
