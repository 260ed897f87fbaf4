"""The contamination audit (`bireco-audit`): which evaluation texts the training rows already contain.

`overlap` matches texts (normal form, word shingles, MinHash LSH, exact Jaccard), `texts` collects the training and
evaluation texts, `measure` counts per task and field, `cli` is the console script. Reading an audit.json (the
summary.json counts, the mteb `training_datasets` declaration) is `bireco.eval.contamination`'s: evaluation and
export read audits without importing the audit. See docs/audit.md.
"""

from bireco.eval.contamination import contamination_by_task, declare_training_datasets

__all__ = ["contamination_by_task", "declare_training_datasets"]
