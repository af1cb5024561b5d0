"""The shapes world: GenEval-style prompts and their phrasing, the prompt suites, procedural scenes,
the detector and the exact evaluator (GenEval rules), and the gold set it is validated on."""
