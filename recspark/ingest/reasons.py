"""Reason codes written to the quarantine table's ``reason`` column, one per rejected row.

Validation checks run in a fixed order and the first failing check names the reason (see
:mod:`recspark.ingest.validate`). ``duplicate_conflict`` is not a validation reason: it marks a
valid row that lost to a later-written row of the same event with other values (see
:mod:`recspark.ingest.dedupe`).
"""

MALFORMED_ROW = "malformed_row"  # the row does not split into the source's fields (count or quoting)
INVALID_ENCODING = "invalid_encoding"  # a field holds U+FFFD: the bytes do not match `encoding`
MISSING_USER_ID = "missing_user_id"  # user_id is null or blank
MISSING_ITEM_ID = "missing_item_id"  # item_id is null or blank
MISSING_EVENT_TYPE = "missing_event_type"  # the mapped event_type column is null or blank
MISSING_TIMESTAMP = "missing_timestamp"  # event_ts is null or blank
TIMESTAMP_UNIT_MISMATCH = "timestamp_unit_mismatch"  # event_ts is implausible in its unit, plausible in another
TIMESTAMP_INVALID = "timestamp_invalid"  # event_ts does not parse in the source's timestamp_unit
TIMESTAMP_IN_FUTURE = "timestamp_in_future"  # event_ts is later than the run's latest accepted time
RATING_NOT_NUMERIC = "rating_not_numeric"  # rating is present but not a finite number
MISSING_RATING = "missing_rating"  # rating is null or blank while the source requires one
RATING_OUT_OF_RANGE = "rating_out_of_range"  # rating is outside [rating_min, rating_max]
WEIGHT_INVALID = "weight_invalid"  # weight is present but not a finite number > 0
MISSING_TAG = "missing_tag"  # a tag row's tag is null or blank
UNKNOWN_ITEM = "unknown_item"  # a tag references an item_id absent from every items source
DUPLICATE_CONFLICT = "duplicate_conflict"  # same event as a later-written row, other rating/weight

ALL_REASONS = frozenset(
    {
        MALFORMED_ROW,
        INVALID_ENCODING,
        MISSING_USER_ID,
        MISSING_ITEM_ID,
        MISSING_EVENT_TYPE,
        MISSING_TIMESTAMP,
        TIMESTAMP_UNIT_MISMATCH,
        TIMESTAMP_INVALID,
        TIMESTAMP_IN_FUTURE,
        RATING_NOT_NUMERIC,
        MISSING_RATING,
        RATING_OUT_OF_RANGE,
        WEIGHT_INVALID,
        MISSING_TAG,
        UNKNOWN_ITEM,
        DUPLICATE_CONFLICT,
    }
)
