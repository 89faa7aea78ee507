"""Checking a spec against its table and code without running it (`geneva-backfill validate`)."""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from ..api.job_contract import BackfillWork
from .plan import check_columns, check_where
from .table import TableLocation
from .udf import UdfRunner, check_target

TRIAL_ROWS = 8


@dataclass
class ValidationReport:
    table_uri: str
    table_version: int
    rows: int
    column_exists: bool
    output_type: pa.DataType
    trial_rows: int


def validate_spec(spec: BackfillWork, *, trial: bool = True) -> ValidationReport:
    """Raise BackfillError for the first problem found: storage, table, columns, types,
    filter, the function's importability, and (with trial) what it returns for a few rows."""
    loc = TableLocation.from_ref(spec.table)
    ds = loc.open()
    out_type, exists = check_columns(spec, ds)
    check_where(spec, ds)
    check_target(spec.udf)
    trial_rows = 0
    if trial:
        sample = ds.to_table(columns=list(spec.udf.input_columns), filter=spec.where or None, limit=TRIAL_ROWS)
        if sample.num_rows:
            # Runs in this process: fine for checking types, a heavy model is loaded here too.
            UdfRunner(spec.udf)(sample.combine_chunks().to_batches()[0])
            trial_rows = sample.num_rows
    return ValidationReport(loc.uri, ds.version, ds.count_rows(), exists, out_type, trial_rows)
