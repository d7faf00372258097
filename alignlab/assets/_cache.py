"""The user cache for built artefacts: the versioned content key of an artefact (its root, `cache_dir`, is
alignlab.cache's).

An artefact is a directory ``<cache_dir>/<kind>/<name>-<key>`` whose ``key`` hashes everything its bytes
depend on; it is built with ``alignlab.cache.build_dir_atomically``, so a reader sees either nothing or a
complete artefact, and two processes building the same artefact at once (e.g. ranks under ``accelerate
launch``) each build privately; the first rename wins and the loser discards its copy.
"""

from __future__ import annotations

from typing import Any

import tokenizers
import transformers

from alignlab import cache

cache_dir = cache.cache_dir  # the root lives with the other cache knowledge, in alignlab.cache

# Bump when a builder changes what it writes for the same inputs, so old cache entries are not reused.
BUILDER_VERSION = "1"


def _major(version: str) -> str:
    return version.split(".")[0]


def artefact_key(payload: dict[str, Any]) -> str:
    """``alignlab.cache.content_key`` of ``payload`` plus the builder version and the transformers/tokenizers major versions.

    ``payload`` must be JSON-serialisable; bytes inputs (the corpus) should be passed as their own sha256.
    """
    full = {
        "payload": payload,
        "builder_version": BUILDER_VERSION,
        "transformers_major": _major(transformers.__version__),
        "tokenizers_major": _major(tokenizers.__version__),
    }
    return cache.content_key(full)

