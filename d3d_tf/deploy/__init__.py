"""A trained model for inference: the SavedModel for TF Serving, TFLite, the predictor that
runs either on video files, and what they share (model cards, labels, the export config).
"""
