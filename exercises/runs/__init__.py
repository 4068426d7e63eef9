"""The "you should see" runs: one short run per assignment on the committed checkpoint (see common.py)."""
