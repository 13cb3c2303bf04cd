"""Every shape of delivery-log query the log bench asks (``bench/delivery_log.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.seed_log import Seeded

STATUSES = ("succeeded", "failed", "pending")
# common, rare (5 % of runs' events) and rarest (outside runs, about 0.5 %)
EVENT_TYPES = ("test.started", "test.threshold_failed", "project.updated")


@dataclass(frozen=True)
class Query:
    label: str
    path: str
    token: str | None  # API token; None: the web session
    web: bool = False


def queries(s: Seeded) -> list[Query]:
    big, small = s.orgs[0], s.orgs[-1]
    channel, small_channel = s.channels[big][0], s.channels[small][0]
    run, small_run = s.runs[big][len(s.runs[big]) // 2], s.runs[small][0]
    middle, early = s.max_delivery_id // 2, max(s.max_delivery_id // 100, 2)
    out: list[Query] = []

    def api(label: str, query: str = "", token: str | None = None) -> None:
        path = "/api/v1/deliveries" + (f"?{query}" if query else "")
        out.append(Query(f"API {label}", path, token or s.token))

    api("no filter")
    api("no filter, page at the middle", f"before_id={middle}")
    api("no filter, page near the start", f"before_id={early}")
    for status in STATUSES:
        api(f"status={status}", f"status={status}")
        api(f"status={status}, page near the start", f"status={status}&before_id={early}")
    for kind in EVENT_TYPES:
        api(f"event_type={kind}", f"event_type={kind}")
    api("event_type=project.updated, page near the start",
        f"event_type=project.updated&before_id={early}")  # fmt: skip
    api("channel_id", f"channel_id={channel}")
    api("channel_id, page at the middle", f"channel_id={channel}&before_id={middle}")
    api("channel_id of the small organization", f"channel_id={small_channel}")
    api("run_id", f"run_id={run}")
    api("run_id, after_id", f"run_id={run}&after_id=1")
    api("status=failed & event_type=test.finished", "status=failed&event_type=test.finished")
    api("status=pending & event_type=project.updated", "status=pending&event_type=project.updated")
    api("channel_id & status=pending", f"channel_id={channel}&status=pending")
    api("channel_id & event_type=test.threshold_failed",
        f"channel_id={channel}&event_type=test.threshold_failed")  # fmt: skip
    api("channel_id & status=pending & event_type=project.updated",
        f"channel_id={channel}&status=pending&event_type=project.updated")  # fmt: skip
    api("run_id & status=failed", f"run_id={run}&status=failed")
    api("limit=500", "limit=500")
    small_token = s.small_org_token
    api("small org token: no filter", token=small_token)
    api("small org token: status=pending", "status=pending", small_token)
    api("small org token: event_type=project.updated", "event_type=project.updated", small_token)
    api("small org token: run_id", f"run_id={small_run}", small_token)

    def web(label: str, org: int, query: str = "") -> None:
        path = f"/orgs/{org}/deliveries" + (f"?{query}" if query else "")
        out.append(Query(f"web {label}", path, None, web=True))

    web("log, no filter", big)
    web("log, older page at the middle", big, f"before_id={middle}")
    web("log, status=failed", big, "status=failed")
    web("log, status=pending", big, "status=pending")
    web("log, event_type=test.threshold_failed", big, "event_type=test.threshold_failed")
    web("log, channel_id & status=pending", big, f"channel_id={channel}&status=pending")
    web("log, run_id", big, f"run_id={run}")
    web("log of the small organization", small)
    web("log of the small organization, event_type=project.updated", small,
        "event_type=project.updated")  # fmt: skip
    out.append(Query("web run page (its deliveries)", f"/runs/{run}", None, web=True))
    return out
