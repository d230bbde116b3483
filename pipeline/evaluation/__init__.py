"""Evaluation of a trained classifier: metrics (scikit-learn), the scikit-learn baselines, loading the model
and its inputs, and the confusion plot. (Ablations are ``pipeline.ablation``.)"""
