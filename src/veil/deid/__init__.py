"""Clinical text de-identification: PHI tagging, surrogates, evaluation (see README)."""
