"""The stock WinoGrande task's prompt, target and choices, imported from the installed lm-evaluation-harness (the
shipped winogrande definition uses exactly the harness's functions; only its dataset revision is pinned)."""
from lm_eval.tasks.winogrande.preprocess_winogrande import doc_to_choice, doc_to_target, doc_to_text  # noqa: F401
