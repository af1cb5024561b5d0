"""The VHS latent verifier: the model (an MLP connector from a DiT site into a causal LM, P(yes)),
its training data and recipe, evaluation, the per-site sweep, and the release loader.

    from vhslab.verifier import LatentVerifier, load_verifier, train_verifier, evaluate_verifier
"""

from vhslab.verifier.evaluate import evaluate_scores
from vhslab.verifier.load import load_verifier
from vhslab.verifier.model import LatentVerifier, VerifierConfig, VerifierError, check_generator, from_release
from vhslab.verifier.report import VerifierEvaluation, evaluate_verifier
from vhslab.verifier.steps import StepVerdicts, verdict_by_step
from vhslab.verifier.sweep import run_verifier_sweep, sweep_summary, verifier_table
from vhslab.verifier.train import VerifierTrainConfig, train_verifier
from vhslab.verifier.trained import SweepResult, TrainedVerifier, sweep_sites, train_on_store

__all__ = ["LatentVerifier", "StepVerdicts", "SweepResult", "TrainedVerifier", "VerifierConfig", "VerifierError", "VerifierEvaluation", "VerifierTrainConfig",
           "check_generator", "evaluate_scores", "evaluate_verifier", "from_release", "load_verifier",
           "run_verifier_sweep", "sweep_sites", "sweep_summary", "train_on_store", "train_verifier", "verdict_by_step", "verifier_table"]
