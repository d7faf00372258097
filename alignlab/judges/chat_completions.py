"""A pairwise LLM judge over an OpenAI-compatible chat-completions endpoint (`POST {base_url}/chat/completions`).

One question shows the prompt and two completions, in the order (first, second), through a template with the
placeholders {prompt}, {a} (the first) and {b} (the second), and the model answers A, B or tie: the first
completion scores 1, 0 or 0.5. LLM judges favour a position, so by default each pair is asked in both orders and
    compare(prompt, a, b) = (score(a, b) + 1 - score(b, a)) / 2,
which cancels a constant bias toward either position and makes compare(prompt, b, a) = 1 - compare(prompt, a, b).

Transport: the standard library's urllib (honouring the usual proxy variables), `timeout` seconds per request.
Only what may pass is retried, up to `max_retries` times, after backoff * 2^k seconds (k = 0, 1, ...; or the
server's Retry-After, up to a minute, when longer): a refused, reset or aborted connection, one the server closed
before answering or cut short, a timeout (or HTTP 408), a temporary DNS failure (EAI_AGAIN), 429 and 5xx. What
cannot pass fails at once, as a one-line AlignlabError naming the cause: an invalid URL, a host that does not
resolve, a TLS certificate that is not trusted, any other connection error, any other HTTP status, a response
that is not chat-completions JSON, an answer that is not A, B or tie. A redirect (3xx) is not followed: urllib
would send the API key to whatever host the Location names (and turn the POST into a GET), so it is an error
naming the Location to set base_url to. Up to `concurrency` questions are in flight at once.

Cache: each answered question is one JSON file, `<cache_dir>/<k[:2]>/<k>.json`, k the content_key of (endpoint,
model, system, template, params, prompt, first, second), written atomically, so a rerun (or the other order of
a win_rate swap) asks nothing twice and a killed run keeps what it had. The API key is read from the environment
variable `api_key_env` names and is sent in the Authorization header only: never written to the cache, a key or
a message.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from alignlab.cache import cache_dir as alignlab_cache_dir
from alignlab.cache import content_key, write_json_atomically
from alignlab.errors import AlignlabError, ConfigError
from alignlab.judges.interface import checked_inputs

DEFAULT_TEMPLATE = """Compare two responses to the same prompt and decide which one is better: more helpful, \
more accurate and better suited to the prompt. Ignore the order in which they are shown and their length.

[Prompt]
{prompt}

[Response A]
{a}

[Response B]
{b}

Answer with a single word: A if Response A is better, B if Response B is better, tie if neither is."""
DEFAULT_PARAMS: Mapping[str, Any] = {"temperature": 0}
CACHE_VERSION = 1
MAX_RETRY_AFTER = 60.0

_PLACEHOLDER = re.compile(r"\{(prompt|a|b)\}")
# "A", "b.", "**Tie**", "[[A]]", "Answer: B", "Verdict - response A": one verdict and nothing else.
_VERDICT = re.compile(
    r"\W*(?:(?:final\s+)?(?:answer|verdict)\s*[:=-]?\s*)?\W*(?:response\s+)?(a|b|tie)\W*", re.IGNORECASE
)
_SCORES = {"a": 1.0, "b": 0.0, "tie": 0.5}


def parse_verdict(answer: str) -> float | None:
    """The first completion's score for an answer naming A (1.0), B (0.0) or tie (0.5), or None for any other
    text."""
    match = _VERDICT.fullmatch(answer.strip())
    return _SCORES[match.group(1).lower()] if match else None


def render(template: str, prompt: str, first: str, second: str) -> str:
    """The template with {prompt}, {a}, {b} replaced in one pass (text that looks like a placeholder inside the
    prompt or a completion stays as it is; other braces in the template are kept)."""
    values = {"prompt": prompt, "a": first, "b": second}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def _check_number(name: str, value: Any, *, minimum: float, integer: bool = False, strict: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    ok = not isinstance(value, bool) and isinstance(value, kinds) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        what = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {what} {'>' if strict else '>='} {minimum:g}, got {value!r}")


def _retryable(status: int) -> bool:
    """Worth asking again: a request timeout, rate limiting, or a server error that may pass."""
    return status in (408, 429) or 500 <= status <= 599


# Connection failures that may pass: ConnectionError is refused, reset, aborted, a broken pipe and
# http.client.RemoteDisconnected (the server closed the connection before answering); SSLEOFError is the same
# cut inside TLS.
_TRANSIENT = (ConnectionError, TimeoutError, http.client.IncompleteRead, ssl.SSLEOFError)


def _transient(error: BaseException) -> bool:
    """Worth asking again (module docstring): a connection failure that may pass, not one in the URL, the name or
    the certificate."""
    if isinstance(error, socket.gaierror):
        return error.errno == socket.EAI_AGAIN  # a resolver that did not answer in time; any other: no such host
    return isinstance(error, _TRANSIENT)


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())[:300]


def _cause(error: BaseException | str) -> str:
    """What went wrong in a failed connection, in one line: the message and the exception's name."""
    if isinstance(error, str):  # urllib's URLError("no host given") and the like
        return _one_line(error) or "URLError"
    text = _one_line(error.strerror if isinstance(error, OSError) and error.strerror else error)
    return f"{text} ({type(error).__name__})" if text else type(error).__name__


def _fatal(error: BaseException | str) -> str:
    """A connection failure that retrying cannot fix, and what to do about it."""
    if isinstance(error, http.client.InvalidURL):
        return f"invalid URL ({_one_line(error)}); fix base_url"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host ({_cause(error)}); check the host name in base_url"
    if isinstance(error, ssl.SSLCertVerificationError):
        return (f"the TLS certificate is not trusted ({_one_line(error.verify_message or error)}); check the host "
                "in base_url, or point SSL_CERT_FILE at the CA bundle that signed it")
    return f"{_cause(error)}; not retried: check base_url and the network"


def _redirect(endpoint: str, status: int, headers: Any) -> AlignlabError:
    """The error for a 3xx: the Location, made absolute, and the base_url it stands for."""
    location = headers.get("Location") if headers is not None else None
    if not location:
        return AlignlabError(f"judge endpoint {endpoint}: HTTP {status} redirect without a Location; alignlab "
                             "follows no redirects: set base_url to the endpoint's real address")
    target = _one_line(urllib.parse.urljoin(endpoint, location))
    base = target.rstrip("/").removesuffix("/chat/completions")
    fix = (f"set base_url to {base}" if base != target.rstrip("/")
           else "set base_url to the API root there (alignlab posts to base_url/chat/completions)")
    return AlignlabError(f"judge endpoint {endpoint}: the endpoint redirected (HTTP {status}) to {target}; alignlab "
                         f"follows no redirects, which would resend the API key: {fix}")


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Follows no redirect: a 3xx reaches HttpJudge._post as an HTTPError (module docstring)."""

    def redirect_request(self, *args: Any) -> None:
        return None


class _Missing:
    """What _field returns for a path that is not in the data: `where` names the first missing step."""

    def __init__(self, where: str) -> None:
        self.where = where


def _field(data: Any, path: Sequence[str | int]) -> Any:
    """data[path[0]][path[1]]..., or a _Missing naming the first step that is not there
    (`choices[0].message`)."""
    where = ""
    for step in path:
        where += f"[{step}]" if isinstance(step, int) else (f".{step}" if where else step)
        if isinstance(step, int):
            if not isinstance(data, list) or len(data) <= step:
                return _Missing(where)
        elif not isinstance(data, dict) or step not in data:
            return _Missing(where)
        data = data[step]
    return data


def _error_detail(body: bytes) -> str:
    """An error response's message: OpenAI's {"error": {"message": ...}} or the start of the body."""
    try:
        message = _field(json.loads(body), ("error", "message"))
        if isinstance(message, str) and message.strip():
            return " ".join(message.split())[:300]
    except ValueError:
        pass
    text = " ".join(body.decode("utf-8", "replace").split())
    return text[:300] or "no body"


def _retry_after(headers: Any) -> float:
    try:
        return min(max(float(headers.get("Retry-After", 0)), 0.0), MAX_RETRY_AFTER)
    except (TypeError, ValueError):
        return 0.0  # an HTTP date: fall back on the backoff


class HttpJudge:
    """A pairwise judge that asks a chat model through an OpenAI-compatible chat-completions endpoint.

    base_url: the API root, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1 (the judge posts to
    base_url/chat/completions). model: the model name the endpoint serves. template: the user message, with
    {prompt}, {a}, {b} (DEFAULT_TEMPLATE). system: an optional system message. api_key_env: the name of the
    environment variable holding the API key (read here; None sends no key). params: further request fields
    (default {"temperature": 0}; given, they replace the default). both_orders: ask each pair both ways (module
    docstring). max_retries, backoff (seconds), timeout (seconds per request), concurrency: the transport.
    cache: keep answers under cache_dir (default <alignlab cache>/judgements).

    `requests` counts HTTP requests sent (each retry is one), `cache_hits` questions answered from the cache.
    """

    pairwise = True

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        template: str = DEFAULT_TEMPLATE,
        system: str | None = None,
        api_key_env: str | None = None,
        params: Mapping[str, Any] | None = None,
        both_orders: bool = True,
        max_retries: int = 4,
        backoff: float = 1.0,
        timeout: float = 60.0,
        concurrency: int = 4,
        cache: bool = True,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        try:
            parts = urllib.parse.urlsplit(base_url) if isinstance(base_url, str) else None
            bad_port = parts is not None and parts.port == 0  # .port raises for text or out of range
        except ValueError as exc:
            raise ConfigError(f"base_url {base_url!r} is not a valid URL: {exc}") from None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or bad_port:
            raise ConfigError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"model must name the endpoint's model, got {model!r}")
        if not isinstance(template, str):
            raise ConfigError(f"template must be text, got {type(template).__name__}")
        missing = [name for name in ("prompt", "a", "b") if "{" + name + "}" not in template]
        if missing:
            raise ConfigError(
                f"template lacks {', '.join('{' + name + '}' for name in missing)}; it must show {{prompt}}, "
                "{a} and {b}"
            )
        if system is not None and not isinstance(system, str):
            raise ConfigError(f"system must be text, got {type(system).__name__}")
        if params is not None and not isinstance(params, Mapping):
            raise ConfigError(f"params must be a mapping of request fields, got {type(params).__name__}")
        params = dict(DEFAULT_PARAMS if params is None else params)
        if {"model", "messages"} & set(params):
            raise ConfigError("params must be a mapping of request fields other than model and messages")
        try:
            json.dumps(params)
        except (TypeError, ValueError):
            raise ConfigError(f"params must be JSON values, got {params!r}") from None
        if not isinstance(both_orders, bool):
            raise ConfigError(f"both_orders must be true or false, got {both_orders!r}")
        _check_number("max_retries", max_retries, minimum=0, integer=True)
        _check_number("backoff", backoff, minimum=0)
        _check_number("timeout", timeout, minimum=0, strict=True)
        _check_number("concurrency", concurrency, minimum=1, integer=True)
        if not isinstance(cache, bool):
            raise ConfigError(f"cache must be true or false, got {cache!r}")
        if not cache and cache_dir is not None:
            raise ConfigError("cache_dir is set but cache is false; drop one of them")
        self._api_key = None
        if api_key_env is not None:
            if not isinstance(api_key_env, str) or not api_key_env:
                raise ConfigError(f"api_key_env must name an environment variable, got {api_key_env!r}")
            self._api_key = os.environ.get(api_key_env) or None
            if self._api_key is None:
                raise ConfigError(f"api_key_env: the environment variable {api_key_env} is not set (or empty)")
        self.base_url = base_url.rstrip("/")
        self.endpoint = self.base_url + "/chat/completions"
        self.model, self.template, self.system, self.params = model, template, system, params
        self.api_key_env, self.both_orders = api_key_env, both_orders
        self.max_retries, self.backoff, self.timeout = max_retries, backoff, timeout
        self.concurrency = concurrency
        self.cache_dir = (Path(cache_dir) if cache_dir is not None else alignlab_cache_dir() / "judgements") \
            if cache else None
        self.requests = 0
        self.cache_hits = 0
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(_RefuseRedirects)

    def __repr__(self) -> str:
        return f"HttpJudge(base_url={self.base_url!r}, model={self.model!r})"

    # --------------------------------------------------------------------------------------------- interface
    def compare_batch(
        self, prompts: Sequence[str], completions_a: Sequence[str], completions_b: Sequence[str]
    ) -> list[float]:
        """Probability that a is better for each (prompt, a, b): the verdict, averaged over both orders."""
        prompts, completions_a, completions_b = checked_inputs(
            prompts=prompts, completions_a=completions_a, completions_b=completions_b)
        questions = list(zip(prompts, completions_a, completions_b))
        if self.both_orders:
            questions += [(p, b, a) for p, a, b in questions]
        scores = self._scores(list(dict.fromkeys(questions)))  # a question asked twice is sent once
        out = []
        for p, a, b in zip(prompts, completions_a, completions_b):
            forward = scores[(p, a, b)]
            out.append((forward + 1.0 - scores[(p, b, a)]) / 2.0 if self.both_orders else forward)
        return out

    def compare(self, prompt: str, a: str, b: str) -> float:
        """Probability that `a` is better than `b` as a completion of `prompt`."""
        return self.compare_batch([prompt], [a], [b])[0]

    def __call__(self, prompt: str, a: str, b: str) -> float:
        """compare(prompt, a, b)."""
        return self.compare(prompt, a, b)

    # --------------------------------------------------------------------------------------------- questions
    def _scores(self, questions: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], float]:
        """The first completion's score for each distinct (prompt, first, second), from the cache or the model."""
        scores: dict[tuple[str, str, str], float] = {}
        ask = []
        for question in questions:
            cached = self._cached(question)
            if cached is None:
                ask.append(question)
            else:
                scores[question] = cached
        self.cache_hits += len(questions) - len(ask)
        if len(ask) <= 1 or self.concurrency == 1:
            scores.update((question, self._ask(question)) for question in ask)
            return scores
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(ask)))
        try:
            scores.update(zip(ask, pool.map(self._ask, ask)))
        finally:
            pool.shutdown(cancel_futures=True)  # after an error: stop what has not started
        return scores

    def _key(self, question: tuple[str, str, str]) -> str:
        prompt, first, second = question
        return content_key({"version": CACHE_VERSION, "endpoint": self.endpoint, "model": self.model,
                            "system": self.system, "template": self.template, "params": self.params,
                            "prompt": prompt, "first": first, "second": second})

    def _cache_path(self, question: tuple[str, str, str]) -> Path | None:
        if self.cache_dir is None:
            return None
        key = self._key(question)
        return self.cache_dir / key[:2] / f"{key}.json"

    def _cached(self, question: tuple[str, str, str]) -> float | None:
        path = self._cache_path(question)
        if path is None or not path.is_file():
            return None
        try:
            score = json.loads(path.read_text(encoding="utf-8"))["score"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable (another writer's file, a damaged disk): ask again and rewrite it
        return float(score) if score in (0.0, 0.5, 1.0) else None

    def _ask(self, question: tuple[str, str, str]) -> float:
        prompt, first, second = question
        messages = [] if self.system is None else [{"role": "system", "content": self.system}]
        messages.append({"role": "user", "content": render(self.template, prompt, first, second)})
        body = json.dumps({"model": self.model, "messages": messages, **self.params}).encode("utf-8")
        answer = self._answer(self._post(body))
        score = parse_verdict(answer)
        if score is None:
            shown = " ".join(answer.split())
            raise AlignlabError(
                f"judge {self.model} at {self.endpoint} answered {shown[:80]!r}, which is not A, B or tie; make "
                "the template ask for one of them (unparsed answers are not cached)"
            )
        path = self._cache_path(question)
        if path is not None:
            write_json_atomically(path, {"score": score, "answer": answer, "model": self.model})
        return score

    # --------------------------------------------------------------------------------------------- transport
    def _post(self, body: bytes) -> bytes:
        """The response body of one successful POST, retrying what may pass (module docstring)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self.requests += 1
            request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
            if self._api_key is not None:  # unredirected: never copied onto a redirected request
                request.add_unredirected_header("Authorization", f"Bearer {self._api_key}")
            delay = self.backoff * 2**attempt
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    return response.read()
            except urllib.error.HTTPError as exc:  # before URLError, its base class
                if 300 <= exc.code <= 399:
                    exc.close()
                    raise _redirect(self.endpoint, exc.code, exc.headers) from None
                try:
                    detail = _error_detail(exc.read())
                except (OSError, http.client.HTTPException):
                    detail = "the body could not be read"
                if not _retryable(exc.code):
                    raise AlignlabError(f"judge endpoint {self.endpoint}: HTTP {exc.code} ({detail})"
                                        f"{self._status_hint(exc.code)}") from None
                failure = f"HTTP {exc.code} ({detail})"
                delay = max(delay, _retry_after(exc.headers))
            except (OSError, http.client.HTTPException) as exc:
                error = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                if not isinstance(error, BaseException) or not _transient(error):
                    raise AlignlabError(f"judge endpoint {self.endpoint}: {_fatal(error)}") from None
                failure = _cause(error)
            if attempt < self.max_retries:
                time.sleep(delay)
        raise AlignlabError(
            f"judge endpoint {self.endpoint}: {failure} on all {self.max_retries + 1} attempts; is the server "
            "up? (max_retries, backoff and timeout set how long alignlab waits)"
        )

    def _status_hint(self, status: int) -> str:
        if status in (401, 403):
            return (f"; check the key in ${self.api_key_env}" if self.api_key_env
                    else "; set api_key_env to the environment variable that holds the API key")
        if status == 404:
            return f"; is base_url right? alignlab posts to {self.endpoint}"
        return ""

    def _answer(self, body: bytes) -> str:
        """choices[0].message.content of a chat-completions response; a one-line error naming what is wrong."""
        try:
            data = json.loads(body)
        except ValueError:
            shown = " ".join(body.decode("utf-8", "replace").split())[:80]
            raise AlignlabError(f"judge endpoint {self.endpoint}: the response is not JSON ({shown!r})") from None
        content = _field(data, ("choices", 0, "message", "content"))
        if isinstance(content, _Missing):
            raise AlignlabError(f"judge endpoint {self.endpoint}: the response has no field '{content.where}' "
                                "(is it an OpenAI-compatible chat-completions endpoint?)")
        if not isinstance(content, str):
            raise AlignlabError(f"judge endpoint {self.endpoint}: response field 'choices[0].message.content' is "
                                f"{json.dumps(content)}, not text")
        return content


__all__ = ["DEFAULT_PARAMS", "DEFAULT_TEMPLATE", "HttpJudge", "parse_verdict", "render"]
