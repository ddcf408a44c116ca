"""Evaluation under one stated protocol: metrics, the evaluation of raw scores, score sources and reports."""
