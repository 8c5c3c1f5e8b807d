"""Property-based checks (hypothesis, bounded) of the live ingest paths against hostile input.

The ingest validator, the MQTT message handler and the NGSI decoder get generated input: JSON of
any shape, near-valid readings and entities with one field replaced by anything, bytes that are
not JSON. Whatever comes in, nothing escapes: each item is stored or rejected with a reason, the
raw input kept with a rejection is bounded, and valid input sent after it is still stored.
"""
from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pandas as pd
from _store_helpers import validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from dashboard.importers import ImportProblem, run_import
from dashboard.importers.ngsi import import_ngsi
from dashboard.mqtt import Message, MqttIngest
from dashboard.store.ingest import Ingestor
from dashboard.store.schema import assets, rejected

FUZZ = settings(max_examples=80, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
#: Longest raw text and reason a rejection may hold: 4,096 and 500 characters, plus the marker of a cut.
RAW_BOUND, REASON_BOUND = 4_200, 600

KEYS = ["asset", "metric", "ts", "value", "id", "type", "data", "dateObserved", "dateObservedTo",
        "dateObservedFrom", "location", "coordinates", "pm25", "co", "temperature", "averageVehicleSpeed",
        "intensity", "refRoadSegment", "refPointOfInterest", "unitCode", "observedAt", "object", "@value"]
NASTY = ["r1", "s1", "nowhere", "speed_kmh", "pm25", "AirQualityObserved", "TrafficFlowObserved", "Point",
         "LineString", "Property", "Relationship", "GeoProperty", "9999-12-31T00:00:00Z", "0001-01-01T00:00:00Z",
         "2262-04-12T00:00:00Z", "2026-03-29T02:30:00", "1e400", "NaN", "-0", "", " ", "\x00", "\ud800",
         "x" * 5000, "urn:ngsi-ld:X:", "GP", "KMH", "%s", "'; DROP TABLE readings;--"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.sampled_from(NASTY))
anything = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=4)), inner, max_size=5)), max_leaves=20)


def now_iso(offset_s: float = -600) -> str:
    return pd.Timestamp(time.time() + offset_s, unit="s", tz="UTC").isoformat()


def reading(**changes) -> dict:
    r = {"asset": "r1", "metric": "speed_kmh", "ts": int(time.time()) - 600, "value": 42.0}
    r.update(changes)
    return r


def entity(**changes) -> dict:
    """A valid NGSI-LD key-values AirQualityObserved entity inside the small city's district north."""
    e = {"id": "urn:ngsi-ld:AirQualityObserved:fz-1", "type": "AirQualityObserved", "dateObserved": now_iso(),
         "location": {"type": "Point", "coordinates": [116.05, 40.15]}, "pm25": 12.0, "no2": 20.0,
         "refPointOfInterest": "fz-1"}
    e.update(changes)
    return e


def mutated(template) -> st.SearchStrategy:
    """``template`` with one of its fields (or a new one) set to anything, or dropped."""
    fields = list(template())
    return st.one_of(
        st.builds(lambda k, v: template(**{k: v}), st.sampled_from(fields + KEYS), anything),
        st.builds(lambda k: {f: v for f, v in template().items() if f != k}, st.sampled_from(fields)))


def json_bytes(v) -> bytes:
    return json.dumps(v, allow_nan=True).encode()


payloads = st.one_of(
    st.builds(json_bytes, anything),
    st.builds(json_bytes, mutated(reading)),
    st.builds(json_bytes, st.lists(mutated(reading), min_size=1, max_size=4)),
    st.builds(json_bytes, mutated(entity)),
    st.builds(lambda es: json_bytes({"subscriptionId": "s", "data": es}), st.lists(mutated(entity), max_size=3)),
    st.binary(max_size=300),
    st.builds(lambda n: b"[" * n + b"]" * n, st.integers(min_value=30, max_value=200_000)),
    st.builds(lambda n: json_bytes({"asset": "r1", "pad": "x" * n}), st.integers(min_value=0, max_value=20_000)),
)


def check_bounded(conn, after_id: int) -> list:
    """Return the rejections after ``after_id``, having checked each has a reason and bounded text."""
    rows = conn.execute(select(rejected.c.source, rejected.c.raw, rejected.c.reason, rejected.c.line)
                        .where(rejected.c.id > after_id)).all()
    for r in rows:
        assert r.reason and len(r.reason) <= REASON_BOUND, r.reason[:200]
        assert len(r.raw) <= RAW_BOUND, (len(r.raw), r.raw[:200])
        assert len(r.source) <= 500
    return rows


def last_rejection(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.coalesce(func.max(rejected.c.id), 0))).scalar()


# ----------------------------------------------------------------------------- the MQTT message handler


def test_mqtt_handler_fuzz_every_message_is_stored_or_rejected_and_the_next_one_is_stored(small_city):
    """Issue 14.1: whatever a message holds, it is stored or rejected, and the message after it is stored."""
    eng = small_city["engine"]
    sub = MqttIngest(eng, "mqtt://127.0.0.1:1", ["fuzz/#"])  # never started: only its writer is used
    sub.writer.max_payload = 16_384
    seq = itertools.count()
    t0 = int(time.time()) - 86_400

    @FUZZ
    @given(payload=payloads)
    def run(payload):
        n = next(seq)
        before = last_rejection(eng)
        good = Message("fuzz/good", json_bytes(reading(ts=t0 + n, value=float(n % 100))))
        out = sub._store([Message(f"fuzz/{n}", payload), good], retry=False)  # must not raise
        with eng.connect() as conn:
            stored = conn.execute(text("SELECT r.value FROM readings r JOIN assets a ON a.pk = r.asset_pk "
                                       "WHERE a.id = 'r1' AND r.metric = 'speed_kmh' AND r.ts = :t"),
                                  {"t": t0 + n}).scalar()
            rows = check_bounded(conn, before)
        assert stored == float(n % 100), "the valid message after the fuzzed one was not stored"
        assert out.rejected == len(rows)
        assert all(r.source in ("mqtt", f"mqtt:fuzz/{n}") for r in rows)  # readings: "mqtt", with the topic
        if len(payload) > 16_384:
            too_big = f"payload of {len(payload):,} bytes is larger than 16,384 (PANORAMA_MQTT_MAX_PAYLOAD)"
            assert [r.reason for r in rows] == [too_big]
        try:
            json.loads(payload.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            assert len(rows) == 1  # not JSON at all: the message rejected as a whole, with its reason

    run()


# ----------------------------------------------------------------------------- the ingest validator

cells = st.one_of(anything, st.sampled_from(["r1", "s1", "p1", "speed_kmh", "pm25", "load_mw"]),
                  st.integers(min_value=int(time.time()) - 86_400, max_value=int(time.time())))


def test_ingest_validator_fuzz_each_row_is_stored_or_rejected_with_a_reason(small_city):
    eng = small_city["engine"]
    ing = Ingestor(eng)

    @FUZZ
    @given(rows=st.lists(st.fixed_dictionaries({"asset": cells, "metric": cells, "ts": cells, "value": cells}),
                         min_size=1, max_size=8))
    def run(rows):
        frame = pd.DataFrame(rows)
        good, reason = validate(ing, frame)
        assert len(reason) == len(rows)
        for i, r in enumerate(reason):
            assert r is None or r == "" or (isinstance(r, str) and 0 < len(r) <= REASON_BOUND)
            if r is None:
                assert i in set(good["_row"])
        assert np.isfinite(good["value"].to_numpy(dtype=float)).all()
        before = last_rejection(eng)
        out = ing.ingest(frame, source="fuzz")
        assert out.accepted + out.duplicates + out.rejected == len(rows)
        with eng.connect() as conn:
            assert len(check_bounded(conn, before)) == out.rejected

    run()


# ----------------------------------------------------------------------------- the NGSI decoder


def test_ngsi_decoder_fuzz_each_entity_is_stored_or_rejected_and_none_lands_outside(small_city):
    eng = small_city["engine"]

    @FUZZ
    @given(body=st.one_of(st.lists(st.one_of(mutated(entity), anything), min_size=1, max_size=4), anything))
    def run(body):
        before = last_rejection(eng)
        try:
            report = run_import(eng, lambda conn: import_ngsi(conn, body, "fuzz", "UTC"))
        except ImportProblem as exc:  # the body holds no entities at all: one reason for the whole
            assert not isinstance(body, (list, dict)) or "nested deeper" in str(exc), exc
            return
        with eng.connect() as conn:
            check_bounded(conn, before)  # (a rejection recorded by an earlier example is not repeated)
            outside = conn.execute(select(func.count()).select_from(assets)
                                   .where(assets.c.district_id.is_(None))).scalar()
        data = body["data"] if isinstance(body, dict) and isinstance(body.get("data"), list) else body
        n = len(data) if isinstance(data, list) else 1
        whole = {ln for ln, r in report.problems if r.startswith((f"entity {ln}:", f"entity {ln} ("))}
        assert report.counts.get("entities", 0) + len(whole) == n  # each entity stored or rejected
        assert outside == 0  # no asset was added outside the city's districts

    run()


def test_raw_input_kept_with_a_rejection_is_cut_to_a_few_kilobytes(small_city):
    """Issue 14.12: raw input was stored whole (a 50 MB body went into ``rejected.raw``)."""
    from dashboard.store.services import ingest_service_requests

    eng = small_city["engine"]
    huge = "x" * 200_000
    before = last_rejection(eng)
    Ingestor(eng).ingest([reading(asset=huge)], source="big")
    ingest_service_requests(eng, [{"id": "q1", "category": "nowhere", "district": "north",
                                   "opened_at": int(time.time()) - 60, "description": huge}], source="big")
    with eng.connect() as conn:
        rows = check_bounded(conn, before)  # a reading, a service request
    run_import(eng, lambda conn: import_ngsi(conn, [entity(pm25=huge), entity(type="Parking", pad=huge)], "big"))
    with eng.connect() as conn:
        rows = check_bounded(conn, before)  # and an NGSI attribute, an NGSI entity
    assert len(rows) == 4
    for r in rows:
        assert r.raw.endswith(" characters in all]") and "… [cut: 2" in r.raw, r.raw[-80:]
