"""Collections, and the API keys that reach them.

A collection is one gallery of people (a class, a school, an app); every enrollment
belongs to one, and a recognition searches one. Paths without ``/collections/<name>``
use `DEFAULT_COLLECTION`, so clients written before collections keep working.

A key is written as ``<key or sha256:hex> [read-only] [collections=a|b]`` (README,
"API keys"): without options it may do everything everywhere; ``collections=`` limits
it to those collections; ``read-only`` to detect, encode, recognize and verify.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

DEFAULT_COLLECTION = "default"
# Letters, digits, '.', '_' and '-', as in a URL path segment and AWS Rekognition's CollectionId.
COLLECTION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class KeySyntaxError(ValueError):
    """A key entry is malformed; the message names the entry by position, never the key itself."""


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """One configured key: the SHA-256 of the key, and what it may reach.

    ``collections`` None means every collection (and the service-wide endpoints: ``/metrics``).
    """

    digest: bytes
    collections: frozenset[str] | None = None
    read_only: bool = False

    def reaches(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    @property
    def unrestricted(self) -> bool:
        """A key for the operator: every collection, every operation."""
        return self.collections is None and not self.read_only


def parse_api_keys(entries: list[str], where: str = "entry") -> tuple[ApiKey, ...]:
    """Keys from their written form, one entry each (blank entries are skipped).

    :param where: how a message names an entry ("entry", "line"), followed by its 1-based position.
    :raises KeySyntaxError: an entry is malformed.
    """
    keys = []
    for position, entry in enumerate(entries, start=1):
        words = entry.split()
        if words:
            keys.append(_parse_entry(words, f"{where} {position}"))
    return tuple(keys)


def _parse_entry(words: list[str], where: str) -> ApiKey:
    secret, *options = words
    if secret.startswith("sha256:"):
        digest = secret.removeprefix("sha256:").lower()
        if not _HEX_DIGEST.fullmatch(digest):
            raise KeySyntaxError(f"{where}: a sha256: key must hold 64 hex digits")
        key = ApiKey(bytes.fromhex(digest))
    else:
        key = ApiKey(hashlib.sha256(secret.encode()).digest())
    for number, option in enumerate(options, start=1):
        if option == "read-only":
            key = dataclasses.replace(key, read_only=True)
        elif option.startswith("collections="):
            names = option.removeprefix("collections=").split("|")
            bad = [name for name in names if not COLLECTION_NAME.fullmatch(name)]
            if bad:
                raise KeySyntaxError(f"{where}: {bad[0]!r} is not a collection name "
                                     "(1-64 letters, digits, '.', '_' or '-')")
            key = dataclasses.replace(key, collections=frozenset(names))
        else:
            # Not quoted: a key with a space in it would otherwise reach the log in halves.
            raise KeySyntaxError(f"{where}: option {number} is neither read-only nor collections=a|b")
    return key
