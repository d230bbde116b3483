"""Evaluation of a trained classifier: metrics (scikit-learn) and the confusion plot."""
