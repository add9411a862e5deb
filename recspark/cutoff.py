"""The default ranking cut-off ``k``: declared once for ``evaluation.k`` and the deep models'
validation ``ndcg@k`` (under a config the latter is always ``evaluation.k``). Import-light, so
the torch-only entry point can use it without Spark."""

DEFAULT_K = 10
