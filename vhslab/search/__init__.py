"""Search: Best-of-N on every verifier path (the VHS winner finished from its cached hidden state),
noise search, the path registry, cost models and the budget table (`vhslab.search.table`)."""

from vhslab.search.bench import BenchResult, run_bench
from vhslab.search.best_of_n import Picture, SearchResult, Timer, best_of_n, check_search, generate_picture, search_path
from vhslab.search.costs import CostModel, load_cost_model, round_sizes
from vhslab.search.generation import Prompted, SearchError, decode, decode_ae, finish_from_cache, initial_noise
from vhslab.search.noise_search import noise_search
from vhslab.search.paths import PATHS, SearchPath, SearchRun, charged, named_paths, path_of, register
from vhslab.search.table import TableResult, bestofn_table

__all__ = [
           "PATHS",
           "BenchResult",
           "CostModel",
           "Picture",
           "Prompted",
           "SearchError",
           "SearchPath",
           "SearchResult",
           "SearchRun",
           "TableResult",
           "Timer",
           "best_of_n",
           "bestofn_table",
           "charged",
           "check_search",
           "decode",
           "decode_ae",
           "finish_from_cache",
           "generate_picture",
           "initial_noise",
           "load_cost_model",
           "named_paths",
           "noise_search",
           "path_of",
           "register",
           "round_sizes",
           "run_bench",
           "search_path",
]
