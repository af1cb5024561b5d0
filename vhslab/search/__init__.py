"""Search: Best-of-N on every verifier path (the VHS winner finished from its cached hidden state),
noise search, search that prunes early on the multi-step teacher (`prune_search`, `prune_compare`), the
path registry, cost models and the budget table (`vhslab.search.table`)."""

from vhslab.search.bench import BenchResult, run_bench
from vhslab.search.best_of_n import Picture, SearchResult, Timer, best_of_n, check_search, generate_picture, search_path
from vhslab.search.costs import CostModel, load_cost_model, round_sizes
from vhslab.search.generation import Prompted, SearchError, decode, decode_ae, finish_from_cache, initial_noise
from vhslab.search.noise_search import noise_search
from vhslab.search.paths import PATHS, SearchPath, SearchRun, charged, named_paths, path_of, register
from vhslab.search.prune import (
    Cost,
    LatentScorer,
    PixelScorer,
    PruneResult,
    StepScorer,
    StepState,
    prune_search,
    teacher_best_of_n,
)
from vhslab.search.prune_table import PruneComparison, prune_compare, pruning_table
from vhslab.search.table import TableResult, bestofn_table

__all__ = [
           "PATHS",
           "BenchResult",
           "Cost",
           "CostModel",
           "LatentScorer",
           "Picture",
           "PixelScorer",
           "Prompted",
           "PruneComparison",
           "PruneResult",
           "SearchError",
           "SearchPath",
           "SearchResult",
           "SearchRun",
           "StepScorer",
           "StepState",
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
           "prune_compare",
           "prune_search",
           "pruning_table",
           "register",
           "round_sizes",
           "run_bench",
           "search_path",
           "teacher_best_of_n",
]
