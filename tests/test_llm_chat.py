"""The generic chat transport on its own (no HTTP: attempts are local coroutines). Over HTTP: test_judge_client.py."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from medgrpo_ray.config.schema import JudgeConfig
from medgrpo_ray.llm.chat import ChatClient, ChatSettings, ReplyError, retry_after_s

KEY_ENV = "MEDGRPO_TEST_LLM_KEY"
FAKE_KEY = "sk-test-LLMCANARY-0c1d2e3f"


def settings(**overrides) -> ChatSettings:
    values = dict(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="", timeout_s=1.0, max_attempts=3,
                  backoff_initial_s=0.0, backoff_max_s=0.0, max_in_flight=2, requests_per_minute=0.0, temperature=0.0,
                  max_tokens=8, price_per_1k_input=0.0, price_per_1k_output=0.0, section="summariser")
    return ChatSettings(**{**values, **overrides})


def test_settings_come_from_a_config_section_and_errors_name_it():
    s = ChatSettings.from_config(JudgeConfig(model="x"), "judge")
    assert (s.section, s.model, s.max_attempts) == ("judge", "x", JudgeConfig().max_attempts)
    with pytest.raises(ValueError, match=r"summariser\.timeout_s=0 .* must be > 0"):
        settings(timeout_s=0)
    with pytest.raises(ValueError, match=r"'other' lacks the chat settings \['base_url'"):
        ChatSettings.from_config(SimpleNamespace(model="x"), "other")


def test_retries_count_attempts_and_a_final_failure_is_an_outcome(monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    with ChatClient(settings(api_key_env=KEY_ENV)) as chat:
        replies = iter([ReplyError("not json"), ReplyError("not json"), "fine"])

        async def flaky() -> str:
            reply = next(replies)
            if isinstance(reply, Exception):
                raise reply
            return reply

        out = chat.run(chat.with_retries(flaky))
        assert out.ok and out.value == "fine" and out.attempts == 3

        async def leaky() -> str:
            raise RuntimeError(f"bug holding {FAKE_KEY}")

        bad = chat.run(chat.with_retries(leaky))  # not retryable: one attempt, then an explicit failure
        assert not bad.ok and bad.attempts == 1 and bad.reason == "error"
        assert FAKE_KEY not in bad.error and "***" in bad.error
        st = chat.stats()
        assert (st.retries, dict(st.attempt_errors)) == (2, {"unparseable": 2, "error": 1})
    assert chat.closed
    with pytest.raises(RuntimeError, match="closed"):
        chat.run(chat.with_retries(flaky))


def test_missing_key_names_the_setting(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ValueError, match=rf"summariser\.api_key_env: environment variable '{KEY_ENV}'"):
        ChatClient(settings(api_key_env=KEY_ENV))


def test_retry_after_headers():
    def exc(headers: dict) -> SimpleNamespace:
        return SimpleNamespace(response=SimpleNamespace(headers=headers))

    assert retry_after_s(exc({"retry-after": "2.5"})) == 2.5
    assert retry_after_s(exc({"retry-after-ms": "300"})) == 0.3
    assert retry_after_s(exc({})) is None and retry_after_s(None) is None


def test_importing_the_transport_and_the_judge_loads_no_openai():
    code = ("import sys, medgrpo_ray.llm.chat, medgrpo_ray.judge.client; "
            "print(sorted({'openai', 'tenacity'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
