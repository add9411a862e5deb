"""The one module that imports Petastorm: Spark DataFrame -> Parquet cache -> per-rank torch batches.

``make_converter`` materialises a DataFrame once under the configured cache directory (Petastorm's
``make_spark_converter``; the cache is keyed by the DataFrame's plan, so converting the same plan
twice reuses the files). The returned ``SparkDatasetConverter`` is a small picklable handle (file
URLs and row count) that training processes receive; ``shard_batches`` opens one rank's shard of
it with ``cur_shard``/``shard_count``, the ``dummy`` reader pool (the thread pool returned 0 rows
for a shard in about 30 % of reads here) and Petastorm's ``BatchedDataLoader`` (about 10x the
rows/s of the default per-row loader here). ``delete_converter`` removes the cached files.
"""
from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Iterator

import numpy as np
import pyarrow.fs
import torch
from pyspark.sql import DataFrame, SparkSession



@contextlib.contextmanager
def _legacy_pyarrow_warnings_silenced() -> Iterator[None]:
    """petastorm 0.13.1 uses pyarrow's legacy ``LocalFileSystem`` / ``localfs`` (FutureWarnings on
    pyarrow 14, at import and on every reader it opens, also inside training processes): nothing an
    operator can act on, so they are silenced around those calls only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"pyarrow\.(localfs|LocalFileSystem) is deprecated",
                                category=FutureWarning)
        yield


with _legacy_pyarrow_warnings_silenced():
    from petastorm.pytorch import BatchedDataLoader
    from petastorm.spark import SparkDatasetConverter, make_spark_converter
    from petastorm.spark.spark_dataset_converter import register_delete_dir_handler


def _delete_cache_dir(dataset_url: str) -> None:
    """Delete one converter's cached files (``delete_converter`` and petastorm's exit hook call it)
    through ``pyarrow.fs``, which resolves file://, hdfs:// and s3:// URLs; petastorm's default
    handler goes through the legacy pyarrow filesystem."""
    filesystem, path = pyarrow.fs.FileSystem.from_uri(dataset_url)
    if filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
        filesystem.delete_dir(path)


register_delete_dir_handler(_delete_cache_dir)

PARENT_CACHE_DIR_CONF = SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF
# Small row groups: Petastorm shards by row group, so each rank needs at least one.
ROW_GROUP_SIZE_BYTES = 4 * 1024 * 1024


def cache_dir_url(path: str) -> str:
    """``path`` as a URL Petastorm accepts: local paths become absolute ``file://`` URLs."""
    if "://" in path:
        return path
    return "file://" + os.path.abspath(path)


def make_converter(
    spark: SparkSession, df: DataFrame, cache_dir: str, min_row_groups: int = 1
) -> SparkDatasetConverter:
    """Materialise ``df`` as Parquet under ``cache_dir`` (a path or URL) for Petastorm readers.

    ``min_row_groups``: the data is spread over at least this many files (each holds at least one
    row group), so that many shards are non-empty when ``df`` has that many rows. Floating
    columns are stored as float32.
    """
    spark.conf.set(PARENT_CACHE_DIR_CONF, cache_dir_url(cache_dir))
    if df.rdd.getNumPartitions() < min_row_groups:
        df = df.repartition(min_row_groups)
    return make_spark_converter(df, parquet_row_group_size_bytes=ROW_GROUP_SIZE_BYTES, dtype="float32")


def shard_batches(
    converter: SparkDatasetConverter,
    cur_shard: int,
    shard_count: int,
    batch_size: int,
    seed: int,
    columns: tuple[str, ...] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """One pass over shard ``cur_shard`` of ``shard_count``: dicts of column name -> tensor with
    ``batch_size`` rows (the last batch may be shorter).

    Row groups are assigned to shards by Petastorm; their reading order is shuffled with
    ``seed`` (pass e.g. ``seed + epoch`` for a new order each epoch, the same order on re-runs).
    A shard with fewer rows than another simply yields fewer batches.
    """
    if not 0 <= cur_shard < shard_count:
        raise ValueError(f"cur_shard must be in [0, {shard_count}), got {cur_shard}")
    reader_args = {
        "cur_shard": cur_shard,
        "shard_count": shard_count,
        "reader_pool_type": "dummy",
        "shuffle_row_groups": True,
        "seed": seed,
    }
    if columns is not None:
        reader_args["schema_fields"] = list(columns)
    loader_fn = functools.partial(BatchedDataLoader, transform_fn=_writable_tensor)
    context = converter.make_torch_dataloader(
        batch_size=batch_size, num_epochs=1, data_loader_fn=loader_fn, **reader_args)
    with _legacy_pyarrow_warnings_silenced():
        loader = context.__enter__()
    try:
        yield from loader
    finally:
        context.__exit__(None, None, None)


def _writable_tensor(column: np.ndarray) -> torch.Tensor:
    """A tensor owning a copy of ``column``: Parquet reads give read-only arrays, which
    ``torch.as_tensor`` would share (and warn about writes being undefined)."""
    return torch.from_numpy(np.array(column, copy=True))


def delete_converter(converter: SparkDatasetConverter) -> None:
    """Remove the converter's cached Parquet files."""
    converter.delete()
