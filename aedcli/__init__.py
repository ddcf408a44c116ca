"""aed: real-time video anomaly detection by adversarial knowledge distillation.

A tiny frame-level conv-transformer *student* reproduces the low-resolution anomaly maps of slow,
object-centric *teachers* (Croitoru et al., "Lightning Fast Video Anomaly Detection via Adversarial
Knowledge Distillation", arXiv 2211.15597). See ``docs/architecture.md`` for how data flows.
"""

__version__ = "0.2.0"
