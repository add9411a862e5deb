"""Deep recommenders in plain PyTorch (no Spark imports): models, training, ranking, compression.

The Spark side (examples, Petastorm, TorchDistributor, batch scoring) builds on these modules.
"""
