"""The report stage's library: turn the search's trials into answers to the guide's questions.

No TensorFlow and no MLflow here (``pipeline.tracking.report_artifacts`` logs the result).
"""

from pipeline.report.build import Inputs, build_report

__all__ = ["Inputs", "build_report"]
