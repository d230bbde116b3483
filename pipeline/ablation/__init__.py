"""Controlled ablations: the best configuration retrained with one change at a time, and what they show.

``plan`` (which variants and runs, plain Python), ``rates`` (the nuisance learning rate each side
is compared at), ``runs`` (training, TensorFlow), ``workers`` (the runs in worker processes),
``stats`` (paired differences, intervals, power and verdicts, numpy + scipy), ``plot`` (the
effects figure) and ``section`` (the report's section on them). The questions an ablation answers
are declared in ``pipeline.questions``; the verdict records are ``pipeline.verdicts``. The report
reads this folder; nothing here imports ``pipeline.report``.
"""
