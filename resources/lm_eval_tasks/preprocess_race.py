"""The stock RACE task's prompt, target and choices, imported from the installed lm-evaluation-harness (the
shipped race_middle/race_high definitions use exactly the harness's functions)."""
from lm_eval.tasks.race.preprocess_race import doc_to_choice, doc_to_target, doc_to_text  # noqa: F401
