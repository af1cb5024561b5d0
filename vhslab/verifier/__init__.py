"""The VHS latent verifier: the model (an MLP connector from a DiT site into a causal LM, P(yes)),
its training data and recipe, evaluation, the per-site sweep, and the release loader.

    from vhslab.verifier import LatentVerifier, train_verifier, evaluate_scores
"""

from vhslab.verifier.model import LatentVerifier, VerifierConfig, VerifierError, check_generator, from_release

__all__ = ["LatentVerifier", "VerifierConfig", "VerifierError", "check_generator", "from_release"]
