"""Evaluation metrics that are not classification accuracy (flow EPE, detection mAP, ...)."""
