"""Request types the API's bodies share: names, ids and the metrics document.

They are checked at the edge, so that nothing a handler stores can fail later: a name that
is only spaces, a NUL in a name (PostgreSQL refuses it in text), an id the id columns cannot
hold (PostgreSQL's are 32-bit), a figure that is not a number.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    WithJsonSchema,
)

from loadbell.domain.text import one_line, plain_name
from loadbell.store.tables import MAX_ID

# A name people read: one line, not blank, trimmed; at most 200 characters.
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(plain_name)]

# A short identifier such as a metric's name or a threshold's expression: one line.
Line = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(one_line)]

# An id in a request body: what the id columns hold on every database (store.tables.MAX_ID).
Id = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]


def _number(value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"must be a number, not {value!r}")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be a whole number, 0 or more, not {value!r}")
    return value


# A JSON number (not a numeric string, not a boolean, not NaN).
Number = Annotated[float | int, PlainValidator(_number), WithJsonSchema({"type": "number"})]
# A whole number, 0 or more.
Count = Annotated[int, PlainValidator(_count), WithJsonSchema({"type": "integer", "minimum": 0})]


class Checks(BaseModel):
    model_config = ConfigDict(extra="allow")
    passes: Count | None = None
    fails: Count | None = None


class Threshold(BaseModel):
    """A threshold of the load test and whether it held (``domain/metrics.py``)."""

    model_config = ConfigDict(extra="allow")
    metric: Line = Field(description="e.g. http_req_duration")
    expression: Line = Field(description="e.g. p(95)<500")
    ok: StrictBool = Field(description="true when the threshold held")
    value: Number | None = Field(default=None, description="the observed value, if known")


class Metrics(BaseModel):
    """The metrics document of a run or a live report (``domain/metrics.py``). Every key is
    optional; the known figures are numbers, ``thresholds`` a list of thresholds, and any
    other key is kept as given (templates may use it)."""

    model_config = ConfigDict(extra="allow")
    requests: Count | None = Field(default=None, description="total requests")
    rps: Number | None = Field(default=None, description="throughput, requests per second")
    avg_ms: Number | None = Field(default=None, description="average response time, ms")
    p95_ms: Number | None = Field(default=None, description="95th percentile, ms")
    error_rate: Number | None = Field(default=None, description="failed / total, 0..1")
    apdex: Number | None = Field(default=None, description="0..1")
    apdex_t_ms: Number | None = Field(default=None, description="the Apdex threshold T, ms")
    vus: Count | None = Field(default=None, description="virtual users now")
    vus_max: Count | None = Field(default=None, description="most virtual users reached")
    duration_s: Number | None = Field(default=None, description="how long the test ran, s")
    checks: Checks | None = None
    thresholds: list[Threshold] | None = None

    def document(self) -> dict[str, Any]:
        """The document to store: what the client sent, without the keys it left out."""
        return self.model_dump(exclude_unset=True)
