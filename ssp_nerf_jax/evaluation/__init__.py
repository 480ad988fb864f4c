"""Evaluation: metrics, scores, lip-sync, periodic eval."""
