"""Caption providers over real local HTTP servers (tests/caption_server.py, two instances on 127.0.0.1): agreement,
a malformed caption, 429 with Retry-After, persistent 500, timeouts, one regeneration round, the reply cache, and
the API key kept out of logs, errors, records and the cache."""
from __future__ import annotations

import json
import logging
import time
from collections import Counter

import pytest

from caption_server import caption_servers, caption_text, required_terms  # noqa: F401  (fixture)
from medgrpo_ray.config.curation import ProviderConfig
from medgrpo_ray.curation.caption_units import build_unit
from medgrpo_ray.curation.caption_run import generate_and_decide
from medgrpo_ray.curation.providers import CaptionCache, CaptionProvider
from medgrpo_ray.curation.validate import ProviderError
from test_curation_captions import S, FakeEmbedder, video

KEY_ENV = "MEDGRPO_TEST_CAPTION_KEY"
KEY = "sk-test-caption-7f3a9c1d2e4b"


@pytest.fixture(autouse=True)
def api_key(monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, KEY)
    caplog.set_level(logging.DEBUG)
    yield
    assert KEY not in caplog.text  # never logged, whatever the test did


def units(*ks):
    v = video()
    return [build_unit("video_summary", v, S, k) for k in ks]


def provider(server, name, tmp_path, **kw) -> CaptionProvider:
    server.control.expected_key = KEY  # the key from the environment reaches the server, or it answers 401
    cfg = dict(name=name, base_url=server.base_url, model=f"{name}-model", api_key_env=KEY_ENV,
               requests_per_minute=0.0, max_in_flight=4, timeout_s=5.0, max_retries=2, backoff_initial_s=0.01,
               backoff_max_s=2.0, cache_dir=str(tmp_path / "cache" / name))
    cfg.update(kw)
    return CaptionProvider(ProviderConfig(**cfg))


def no_key_anywhere(*things):
    for thing in things:
        assert KEY not in json.dumps(thing, default=str)


def test_agree_keeps_both_and_a_rerun_is_served_by_the_cache(caption_servers, tmp_path):
    sa, sb = caption_servers
    us = units(0, 1, 2)
    with provider(sa, "gpt", tmp_path) as a, provider(sb, "gemini", tmp_path) as b:
        records, counts = generate_and_decide(us, a, b, FakeEmbedder())
        assert a.stats().calls == 3 and a.stats().retries == 0
    assert counts == Counter(keep_both=3)
    assert sorted(r["qa_type"] for r in records) == ["video_summary_gemini"] * 3 + ["video_summary_gpt"] * 3
    assert records[0]["curation"]["models"] == {"gpt": "gpt-model", "gemini": "gemini-model"}
    assert sa.control.requests == sb.control.requests == 3 and sa.control.outcomes == Counter(ok=3)
    assert all("Required facts:" in u and '{"caption"' in u for u in sa.control.users)

    with provider(sa, "gpt", tmp_path) as a2, provider(sb, "gemini", tmp_path) as b2:
        again, counts2 = generate_and_decide(us, a2, b2, FakeEmbedder())
        assert a2.cache_hits == b2.cache_hits == 3 and a2.stats().calls == b2.stats().calls == 0
    assert sa.control.requests == sb.control.requests == 3  # no HTTP call on the rerun
    assert again == records and counts2 == counts
    no_key_anywhere(records)
    for name in ("gpt", "gemini"):
        assert KEY.encode() not in (tmp_path / "cache" / name / CaptionCache.FILENAME).read_bytes()


def test_malformed_json_on_one_side_keeps_the_other(caption_servers, tmp_path):
    sa, sb = caption_servers
    sb.control.reply = lambda user: '{"caption": "the grasper retracts'  # truncated JSON, delivered with 200
    with provider(sa, "gpt", tmp_path) as a, provider(sb, "gemini", tmp_path) as b:
        records, counts = generate_and_decide(units(0), a, b, FakeEmbedder())
    assert counts == Counter(keep_one=1)
    assert [r["qa_type"] for r in records] == ["video_summary_gpt"]
    assert records[0]["curation"]["decision_reason"] == "one_grounded"
    assert sb.control.requests == 1  # a malformed caption is a reply, judged by the rule, not retried


def test_429_then_success_honours_retry_after(caption_servers, tmp_path):
    sa, _ = caption_servers
    sa.control.configure(script=["429", "ok"], retry_after_s=0.5)
    with provider(sa, "gpt", tmp_path) as a:
        t0 = time.monotonic()
        [reply] = a.caption(units(0))
        elapsed = time.monotonic() - t0
        st = a.stats()
    assert not isinstance(reply, ProviderError) and json.loads(reply)["caption"]
    assert elapsed >= 0.5  # the server's Retry-After, not the 0.01 s backoff
    assert st.calls == 2 and st.retries == 1 and st.attempt_errors == Counter(rate_limited=1)
    assert sa.control.outcomes == Counter({"429": 1, "ok": 1})


def test_persistent_500_is_a_provider_error_and_the_documented_decision(caption_servers, tmp_path):
    sa, sb = caption_servers
    sb.control.configure(fault_rate=1.0, fault_kinds=("500",))
    with provider(sa, "gpt", tmp_path) as a, provider(sb, "gemini", tmp_path) as b:
        [err] = b.caption(units(0))
        assert isinstance(err, ProviderError) and err.startswith("gemini: server_error after 3 attempt(s)")
        assert "***" in err and KEY not in err  # the server echoed the bearer token; the client scrubbed it
        assert b.failures == Counter(server_error=1) and sb.control.requests == 3
        assert len(b.cache) == 0  # failures are not cached

        records, counts = generate_and_decide(units(0), a, b, FakeEmbedder())
        assert counts == Counter(keep_one=1)
        assert records[0]["qa_type"] == "video_summary_gpt"
        assert records[0]["curation"]["decision_reason"] == "other_provider_error"

        sa.control.configure(fault_rate=1.0, fault_kinds=("500",))  # both fail: regenerate once, then drop
        before = sa.control.requests
        records, counts = generate_and_decide(units(1), a, b, FakeEmbedder())
        assert records == [] and counts == Counter(drop=1)
        assert sa.control.requests - before == 6  # two rounds of 3 attempts
    no_key_anywhere(records)


def test_timeout_after_retries_is_a_provider_error(caption_servers, tmp_path):
    sa, _ = caption_servers
    sa.control.configure(script=["timeout", "timeout"], timeout_sleep_s=0.6)
    with provider(sa, "gpt", tmp_path, timeout_s=0.25, max_retries=1) as a:
        [err] = a.caption(units(0))
        assert a.stats().attempt_errors == Counter(timeout=2)
    assert isinstance(err, ProviderError) and err.startswith("gpt: timeout after 2 attempt(s)")


def test_regeneration_names_the_missing_facts(caption_servers, tmp_path):
    sa, sb = caption_servers
    us = units(0)
    dropped = us[0].required[-1]

    def forgetful(user):  # leaves out the last required fact unless the prompt says it was omitted
        terms = required_terms(user)
        keep = terms if "omitted" in user else [t for t in terms if t != dropped.term]
        return json.dumps({"caption": caption_text(keep)})

    sa.control.reply = sb.control.reply = forgetful
    with provider(sa, "gpt", tmp_path) as a, provider(sb, "gemini", tmp_path) as b:
        records, counts = generate_and_decide(us, a, b, FakeEmbedder())
    assert counts == Counter(keep_both=1) and len(records) == 2
    assert sa.control.requests == sb.control.requests == 2
    retry = sa.control.users[-1]
    assert "Your previous caption omitted or contradicted: " + dropped.describe() in retry
