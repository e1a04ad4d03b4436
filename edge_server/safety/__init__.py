"""The safety layer: the photo quality gate and the red-flag rules (their term syntax, the
validated rule file with its JSON schema for clinicians, and evaluation on a case)."""
