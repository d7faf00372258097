"""HttpJudge against a local chat-completions server on 127.0.0.1: answers, both orders, position bias, retries,
one-line errors, the content cache and the API key."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.error
from types import SimpleNamespace

import pytest

from alignlab.diagnostics import win_rate
from alignlab.errors import AlignlabError, ConfigError
from alignlab.judges import DEFAULT_TEMPLATE, HttpJudge, chat_completions, load_judge, parse_verdict
from alignlab.judges.chat_completions import render
from tests.judges.chat_server import TEMPLATE, ChatServer, chat_response


@pytest.fixture
def serve(monkeypatch):
    """serve(**options) -> a running ChatServer; every one is shut down after the test."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)  # 127.0.0.1 must be reached directly
    servers = []

    def start(**options):
        servers.append(ChatServer(**options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def delays(monkeypatch):
    """The backoff delays the judge asks for, instead of sleeping them."""
    asked = []
    monkeypatch.setattr(chat_completions, "time", SimpleNamespace(sleep=asked.append))
    return asked


def _judge(server, tmp_path, **options):
    return HttpJudge(server.base_url, "judge-model", template=TEMPLATE, cache_dir=tmp_path / "cache", **options)


def test_answers_in_both_orders(serve, tmp_path):
    server = serve()
    judge = _judge(server, tmp_path)
    got = judge.compare_batch(["p", "q", "r"], ["long answer", "x", "same"], ["short", "longer one", "same"])
    assert got == [1.0, 0.0, 0.5]
    # each pair asked both ways; the identical pair's two orders are one question, asked once
    assert sorted(server.questions) == sorted([("p", "long answer", "short"), ("p", "short", "long answer"),
                                               ("q", "x", "longer one"), ("q", "longer one", "x"),
                                               ("r", "same", "same")])
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and "Authorization" not in request["headers"]
    assert request["body"]["model"] == "judge-model" and request["body"]["temperature"] == 0
    assert [m["role"] for m in request["body"]["messages"]] == ["user"]
    assert judge.requests == 5 and judge.cache_hits == 0
    assert judge.compare("p", "a", "bb") == 0.0 and judge("p", "aaa", "bb") == 1.0


def test_position_bias_cancels(serve, tmp_path):
    server = serve(answer=lambda prompt, a, b: "A")  # always the first shown
    assert _judge(server, tmp_path).compare_batch(["p", "q"], ["a", "b"], ["c", "d"]) == [0.5, 0.5]
    one_order = _judge(server, tmp_path / "other", both_orders=False)
    assert one_order.compare_batch(["p", "q"], ["a", "b"], ["c", "d"]) == [1.0, 1.0]
    # a biased judge with a real preference: the bias cancels, the preference stays
    server = serve(answer=lambda prompt, a, b: "A" if len(a) >= len(b) else "tie")
    assert _judge(server, tmp_path / "third").compare("p", "long", "s") == 0.75  # (1 + (1 - 0.5)) / 2


def test_system_message_params_and_template(serve, tmp_path):
    server = serve()
    judge = _judge(server, tmp_path, system="You are a careful judge.", params={"max_tokens": 4, "seed": 1},
                   both_orders=False)
    judge.compare("p {a}", "{b}", "xx")  # placeholders inside the texts stay as they are
    body = server.requests[0]["body"]
    assert body["messages"][0] == {"role": "system", "content": "You are a careful judge."}
    assert body["max_tokens"] == 4 and body["seed"] == 1 and "temperature" not in body  # params replace the default
    assert body["messages"][1]["content"] == "PROMPT<p {a}>\nFIRST<{b}>\nSECOND<xx>\nAnswer A, B or tie."
    assert render("{prompt}|{a}|{b}|{other}", "{b}", "1", "2") == "{b}|1|2|{other}"
    assert all(placeholder in DEFAULT_TEMPLATE for placeholder in ("{prompt}", "{a}", "{b}"))


@pytest.mark.parametrize("fail_status", [503, None, 429],
                         ids=["503", "dropped-connection", "429"])
def test_a_server_that_fails_twice_is_retried(serve, tmp_path, delays, fail_status):
    server = serve(fail=2, fail_status=fail_status)
    judge = _judge(server, tmp_path, both_orders=False, max_retries=2, backoff=0.01)
    assert judge.compare("p", "long", "s") == 1.0
    assert len(server.requests) == 3 and judge.requests == 3
    assert delays == [0.01, 0.02]  # exponential backoff


def test_retry_after_is_honoured(serve, tmp_path, delays):
    server = serve(fail=1, fail_status=429, retry_after="0.5")
    assert _judge(server, tmp_path, both_orders=False, backoff=0.01).compare("p", "a", "bb") == 0.0
    assert delays == [0.5]


def test_retries_run_out_in_one_line(serve, tmp_path, delays):
    server = serve(fail=10)
    judge = _judge(server, tmp_path, both_orders=False, max_retries=1, backoff=0.01)
    with pytest.raises(AlignlabError, match=r"HTTP 503 \(overloaded\) on all 2 attempts; is the server up") as info:
        judge.compare("p", "a", "b")
    assert "\n" not in str(info.value) and len(server.requests) == 2 and delays == [0.01]


def test_an_unreachable_server_is_retried_then_one_line(tmp_path, delays):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    judge = HttpJudge(f"http://127.0.0.1:{port}/v1", "m", template=TEMPLATE, cache_dir=tmp_path, max_retries=2,
                      backoff=0.01, both_orders=False)
    with pytest.raises(AlignlabError, match=r"on all 3 attempts") as info:
        judge.compare("p", "a", "b")
    assert "refused" in str(info.value).lower() and "\n" not in str(info.value)
    assert judge.requests == 3 and delays == [0.01, 0.02]


def test_a_server_that_never_answers_times_out_and_is_retried(tmp_path, delays):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        judge = HttpJudge(f"http://127.0.0.1:{silent.getsockname()[1]}/v1", "m", template=TEMPLATE,
                          cache_dir=tmp_path, max_retries=1, backoff=0.01, timeout=0.05, both_orders=False)
        with pytest.raises(AlignlabError, match=r"timed out \(TimeoutError\) on all 2 attempts") as info:
            judge.compare("p", "a", "b")
    assert "\n" not in str(info.value) and judge.requests == 2 and delays == [0.01]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_refused_and_the_key_goes_nowhere(serve, tmp_path, monkeypatch, delays, status):
    secret = "sk-secret-redirect-3c1d"
    monkeypatch.setenv("ALIGNLAB_TEST_JUDGE_KEY", secret)
    elsewhere = serve()  # stands for another host: it must receive nothing
    moved = serve(respond=lambda request: (status, b"", {"Location": elsewhere.base_url + "/chat/completions"}))
    judge = _judge(moved, tmp_path, api_key_env="ALIGNLAB_TEST_JUDGE_KEY", max_retries=3, both_orders=False)
    with pytest.raises(AlignlabError) as info:
        judge.compare("p", "a", "b")
    message = str(info.value)
    assert "\n" not in message and secret not in message
    assert f"redirected (HTTP {status}) to {elsewhere.base_url}/chat/completions;" in message
    assert message.endswith(f"set base_url to {elsewhere.base_url}")
    assert elsewhere.requests == [] and delays == []  # nothing followed, nothing retried
    assert len(moved.requests) == 1 and moved.requests[0]["headers"]["Authorization"] == f"Bearer {secret}"


def test_a_relative_redirect_names_the_absolute_location(serve, tmp_path):
    server = serve(respond=lambda request: (302, b"", {"Location": "/login"}))
    with pytest.raises(AlignlabError, match=r"redirected \(HTTP 302\) to http://127\.0\.0\.1:\d+/login; .*"
                                            r"set base_url to the API root there") as info:
        _judge(server, tmp_path, both_orders=False).compare("p", "a", "b")
    assert "\n" not in str(info.value) and len(server.requests) == 1


def test_an_invalid_url_fails_at_once(tmp_path, delays):
    judge = HttpJudge("http://127.0.0.1:1/v 1", "m", template=TEMPLATE, cache_dir=tmp_path, max_retries=3,
                      both_orders=False)
    with pytest.raises(AlignlabError, match=r"invalid URL \(URL can't contain control characters.*\); fix base_url$"
                       ) as info:
        judge.compare("p", "a", "b")
    assert "\n" not in str(info.value) and judge.requests == 1 and delays == []


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:abc/v1", "http://127.0.0.1:99999/v1", "http://h:0/v1",
                                      "http://:80/v1", "http://[::1/v1"])
def test_a_bad_port_or_host_is_a_config_error(base_url):
    with pytest.raises(ConfigError, match="base_url") as info:
        HttpJudge(base_url, "m")
    assert "\n" not in str(info.value)


_CERTIFICATE = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
_CERTIFICATE.verify_message = "self-signed certificate"


@pytest.mark.parametrize(("error", "transient", "message"), [
    (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), True, "Connection refused"),
    (ConnectionResetError(104, "Connection reset by peer"), True, "Connection reset by peer"),
    (ConnectionAbortedError(103, "Software caused connection abort"), True, "connection abort"),
    (http.client.RemoteDisconnected("Remote end closed connection without response"), True, "RemoteDisconnected"),
    (http.client.IncompleteRead(b"{", 10), True, "IncompleteRead"),
    (TimeoutError("timed out"), True, "timed out"),
    (urllib.error.URLError(TimeoutError("timed out")), True, "timed out"),
    (urllib.error.URLError(socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")), True,
     "Temporary failure in name resolution"),
    (urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known")), False,
     r"cannot resolve the host \(Name or service not known \(gaierror\)\); check the host name in base_url$"),
    (urllib.error.URLError(_CERTIFICATE), False,
     r"the TLS certificate is not trusted \(self-signed certificate\); .*SSL_CERT_FILE"),
    (http.client.InvalidURL("nonnumeric port: 'x'"), False, r"invalid URL \(nonnumeric port: 'x'\); fix base_url$"),
    (urllib.error.URLError(OSError(113, "No route to host")), False,
     r"No route to host \(OSError\); not retried: check base_url and the network$"),
    (urllib.error.URLError("no host given"), False, r"no host given; not retried"),
], ids=["refused", "reset", "aborted", "disconnected", "incomplete", "timeout", "connect-timeout", "eai-again",
        "no-such-host", "certificate", "invalid-url", "no-route", "urlerror-text"])
def test_only_transient_failures_are_retried(tmp_path, delays, error, transient, message):
    judge = HttpJudge("http://127.0.0.1:1/v1", "m", template=TEMPLATE, cache_dir=tmp_path, max_retries=2,
                      backoff=0.01, both_orders=False)

    def fail(request, timeout):
        raise error

    judge._opener = SimpleNamespace(open=fail)
    with pytest.raises(AlignlabError, match=message) as info:
        judge.compare("p", "a", "b")
    assert "\n" not in str(info.value)
    if transient:
        assert str(info.value).endswith("(max_retries, backoff and timeout set how long alignlab waits)")
        assert "on all 3 attempts" in str(info.value) and judge.requests == 3 and delays == [0.01, 0.02]
    else:
        assert "attempts" not in str(info.value) and judge.requests == 1 and delays == []


@pytest.mark.parametrize(("status", "body", "message"), [
    (400, b'{"error": {"message": "model \'x\' does not exist"}}', r"HTTP 400 \(model 'x' does not exist\)$"),
    (401, b'{"error": {"message": "invalid key"}}', r"HTTP 401 \(invalid key\); set api_key_env"),
    (404, b"not here", r"HTTP 404 \(not here\); is base_url right\? alignlab posts to http://.*/v1/chat/completions"),
    (200, b"<html>hello</html>", r"the response is not JSON \('<html>hello</html>'\)"),
    (200, b'{"choices": []}', r"the response has no field 'choices\[0\]'"),
    (200, b'{"object": "list"}', r"the response has no field 'choices'"),
    (200, json.dumps(chat_response(None)).encode(), r"response field 'choices\[0\].message.content' is null"),
    (200, json.dumps(chat_response("I prefer the first one")).encode(),
     r"answered 'I prefer the first one', which is not A, B or tie"),
], ids=["400", "401", "404", "html", "no-choices", "no-field", "null-content", "unparsed"])
def test_bad_responses_are_one_line_errors(serve, tmp_path, status, body, message):
    server = serve(respond=lambda request: (status, body))
    judge = _judge(server, tmp_path, both_orders=False, max_retries=3)
    with pytest.raises(AlignlabError, match=message) as info:
        judge.compare("p", "a", "b")
    assert "\n" not in str(info.value)
    assert len(server.requests) == 1  # not retried
    with pytest.raises(AlignlabError):
        judge.compare("p", "a", "b")
    assert len(server.requests) == 2  # and not cached: a rerun asks again


def test_the_cache_makes_a_rerun_free(serve, tmp_path):
    server = serve()
    prompts, a, b = ["p", "q", "r"], ["long answer", "x", "mm"], ["short", "longer one", "m"]
    first = _judge(server, tmp_path).compare_batch(prompts, a, b)
    assert len(server.requests) == 6
    again = _judge(server, tmp_path)
    assert again.compare_batch(prompts, a, b) == first and len(server.requests) == 6
    assert again.requests == 0 and again.cache_hits == 6
    # win_rate's random swaps ask the other order of the same questions: still free
    result = win_rate(a, b, again, prompts=prompts, seed=5, n_bootstrap=10)
    assert result.scores == first and len(server.requests) == 6
    # the key covers what changes the answer: another model, template or params is asked anew
    HttpJudge(server.base_url, "other-model", template=TEMPLATE, cache_dir=tmp_path / "cache").compare("p", "a", "b")
    _judge(server, tmp_path, params={"temperature": 0.5}).compare("p", "a", "b")
    assert len(server.requests) == 10
    # cache=False keeps nothing
    uncached = HttpJudge(server.base_url, "m2", template=TEMPLATE, cache=False)
    uncached.compare("p", "a", "b")
    uncached.compare("p", "a", "b")
    assert len(server.requests) == 14


def test_a_damaged_cache_entry_is_asked_again(serve, tmp_path):
    server = serve()
    judge = _judge(server, tmp_path, both_orders=False)
    judge.compare("p", "aa", "b")
    (entry,) = (tmp_path / "cache").rglob("*.json")
    entry.write_text("{trunc")
    assert _judge(server, tmp_path, both_orders=False).compare("p", "aa", "b") == 1.0
    assert len(server.requests) == 2 and json.loads(entry.read_text())["score"] == 1.0


def test_the_api_key_is_sent_and_never_stored(serve, tmp_path, monkeypatch):
    secret = "sk-test-5f2a9c0e11"
    monkeypatch.setenv("ALIGNLAB_TEST_JUDGE_KEY", secret)
    server = serve()
    judge = _judge(server, tmp_path, api_key_env="ALIGNLAB_TEST_JUDGE_KEY")
    judge.compare_batch(["p"], ["aa"], ["b"])
    assert all(r["headers"]["Authorization"] == f"Bearer {secret}" for r in server.requests)
    files = list((tmp_path / "cache").rglob("*"))
    assert any(f.is_file() for f in files)
    assert not any(secret in f.read_text() for f in files if f.is_file())
    assert secret not in repr(judge) and secret not in str(vars(judge).get("params"))
    monkeypatch.delenv("ALIGNLAB_TEST_JUDGE_KEY")
    with pytest.raises(ConfigError, match="api_key_env: the environment variable ALIGNLAB_TEST_JUDGE_KEY is not set"):
        _judge(server, tmp_path, api_key_env="ALIGNLAB_TEST_JUDGE_KEY")


def test_concurrent_questions_keep_their_answers(serve, tmp_path):
    server = serve()
    a = [f"{'x' * i}" for i in range(1, 13)]
    b = [f"{'y' * (13 - i)}" for i in range(1, 13)]
    got = _judge(server, tmp_path, concurrency=6).compare_batch(["p"] * 12, a, b)
    assert got == [1.0 if len(x) > len(y) else 0.0 if len(x) < len(y) else 0.5 for x, y in zip(a, b)]
    assert len(server.requests) == 24


def test_from_a_spec(serve, tmp_path):
    server = serve()
    judge = load_judge(f"{server.base_url}#judge-model")
    assert isinstance(judge, HttpJudge) and judge.model == "judge-model" and judge.template == DEFAULT_TEMPLATE
    spec = tmp_path / "judge.yaml"
    template = TEMPLATE.replace("\n", "\n  ")  # a YAML block scalar, indented
    spec.write_text(f"kind: http\nbase_url: {server.base_url}\nmodel: m\ntemplate: |\n  {template}\n"
                    f"max_retries: 0\ncache_dir: {tmp_path / 'c'}\n")
    judge = load_judge(spec)
    assert judge.template.rstrip("\n") == TEMPLATE and judge.max_retries == 0
    assert judge.compare("p", "aa", "b") == 1.0


@pytest.mark.parametrize(("options", "message"), [
    ({"base_url": "ftp://host/v1"}, "base_url must be an http:// or https:// URL"),
    ({"model": ""}, "model must name"),
    ({"template": "{prompt} {a}"}, r"template lacks \{b\}"),
    ({"max_retries": -1}, "max_retries must be an integer >= 0"),
    ({"backoff": "1"}, "backoff must be a number >= 0"),
    ({"timeout": 0}, "timeout must be a number > 0"),
    ({"concurrency": 0}, "concurrency must be an integer >= 1"),
    ({"params": {"model": "x"}}, "params must be a mapping of request fields other than model and messages"),
    ({"params": ["temperature"]}, "params must be a mapping"),
    ({"both_orders": "yes"}, "both_orders must be true or false"),
    ({"cache": False, "cache_dir": "x"}, "cache_dir is set but cache is false"),
])
def test_options_are_checked(options, message):
    arguments = {"base_url": "http://127.0.0.1:1/v1", "model": "m", **options}
    with pytest.raises(ConfigError, match=message):
        HttpJudge(**arguments)


@pytest.mark.parametrize(("answer", "score"), [("A", 1.0), ("b", 0.0), ("Tie.", 0.5), ("[[B]]", 0.0),
                                                ("**A**", 1.0), ("Answer: tie", 0.5), ("Verdict: Response B", 0.0),
                                                ("A is better", None), ("AB", None), ("", None)])
def test_parse_verdict(answer, score):
    assert parse_verdict(answer) == score
