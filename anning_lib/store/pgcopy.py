"""PostgreSQL's binary COPY format for measurement rows, built with numpy (no Python loop per row)."""

from __future__ import annotations

import numpy as np

# 11-byte signature, then int32 flags (0: no OIDs) and int32 header-extension length (0)
PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
# int16 -1 ends the stream
PGCOPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
_PGCOPY_ROW = np.dtype([
    ("nfields", ">i2"), ("len_point_id", ">i4"), ("point_id", ">i4"), ("len_ts", ">i4"), ("ts", ">i8"),
    ("len_value", ">i4"), ("value", ">f8"), ("len_quality", ">i4"), ("quality", ">i2"),
])
_PG_EPOCH_US = 946_684_800 * 1_000_000
"""2000-01-01 UTC, the zero of PostgreSQL's binary timestamps, in microseconds since 1970-01-01 [us]."""


def pgcopy_binary(point_id: np.ndarray, ts_us: np.ndarray, value: np.ndarray, quality: np.ndarray) -> bytes:
    """Tuples ``(integer, timestamptz, double precision, smallint)`` in PostgreSQL's binary COPY format.

    Built with one structured numpy array (no Python loop per row). Format: PostgreSQL documentation, "COPY",
    section "Binary Format": per tuple an int16 field count, then per field an int32 byte length and the
    big-endian value; timestamps as int64 microseconds since 2000-01-01 UTC. The stream's header
    (:data:`PGCOPY_HEADER`) and trailer (:data:`PGCOPY_TRAILER`) are not included.

    Parameters
    ----------
    point_id : numpy.ndarray of int
    ts_us : numpy.ndarray of int
        Instants as microseconds since 1970-01-01 UTC [us].
    value : numpy.ndarray of float
    quality : numpy.ndarray of int
    """
    rows = np.empty(len(point_id), dtype=_PGCOPY_ROW)
    rows["nfields"], rows["len_point_id"], rows["len_ts"], rows["len_value"], rows["len_quality"] = 4, 4, 8, 8, 2
    rows["point_id"] = point_id
    rows["ts"] = ts_us - _PG_EPOCH_US
    rows["value"] = value
    rows["quality"] = quality
    return rows.tobytes()
