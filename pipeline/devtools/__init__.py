"""Tools for developers of the pipeline itself (never imported by a stage): the import graph, dvc.yaml deps."""
