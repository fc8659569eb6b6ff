"""Keyed pseudonyms (HMAC-SHA-256) for direct identifiers, and the key they are made with.

The key comes from an environment variable (PHM_PSEUDONYM_KEY by default,
64 hex characters) or a key file outside the repository (`phm keygen`
creates a local development key); it is never logged, put in a table, an
MLflow run or a Spark plan. HMAC, H((K ^ opad) || H((K ^ ipad) || m)), is
computed by our Spark function `phm_hmac_sha256` (org.phm.udf.HmacSha256Hex,
jvm/src) from the padded keys in a one-row broadcast frame, so the plan shows
column names only. For a short identifier it hashes two SHA-256 blocks, where
the same definition in Spark SQL's sha2 hashed four (docs/ingest.md). Each kind of
identifier is its own domain (`nhs_number:9990000018`), so equal text of
different kinds gets different pseudonyms. `key_id`, an HMAC of a fixed
label, tells which key made a pseudonym without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from phm.errors import UserError

BLOCK = 64  # SHA-256 block size in bytes
KEY_ID_LABEL = b"phm-pseudonym-key-id"
IPAD, OPAD = "_hmac_ipad", "_hmac_opad"
HMAC_FUNCTION, HMAC_CLASS = "phm_hmac_sha256", "org.phm.udf.HmacSha256Hex"


class MissingKeyError(UserError):
    """No pseudonymisation key is configured."""


def load_key(env_var: str, key_file: str) -> bytes:
    """The key from `env_var` if set, else from `key_file`; hex text of 32+ bytes."""
    text = os.environ.get(env_var)
    origin = f"environment variable {env_var}"
    if not text:
        path = Path(key_file).expanduser()
        if not path.is_file():
            raise MissingKeyError(
                f"no pseudonymisation key: set {env_var} or create {path} (`phm keygen` makes a development key)"
            )
        text = path.read_text().strip()
        origin = str(path)
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise MissingKeyError(f"the pseudonymisation key in {origin} is not hex text; regenerate it") from None
    if len(key) < 32:
        raise MissingKeyError(f"the pseudonymisation key in {origin} is shorter than 32 bytes; regenerate it")
    return key


def write_new_key(key_file: str) -> Path:
    """Create a random 32-byte key file readable by its owner only (never overwrites)."""
    path = Path(key_file).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return path


def key_id(key: bytes) -> str:
    return hmac.new(key, KEY_ID_LABEL, hashlib.sha256).hexdigest()[:12]


def pads(key: bytes) -> tuple[bytes, bytes]:
    """The HMAC inner and outer padded keys (RFC 2104)."""
    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


# The columns that carry a key's padded halves while pseudonyms are computed (a second pair, for the key
# being rotated to, lets both keys' pseudonyms be computed in one pass: phm.governance.rekey).
KEY_COLUMNS = (IPAD, OPAD)
NEW_KEY_COLUMNS = ("_hmac_new_ipad", "_hmac_new_opad")


def with_key(spark: SparkSession, df: DataFrame, key: bytes, columns: tuple[str, str] = KEY_COLUMNS) -> DataFrame:
    """df with the padded key columns (dropped again by `without_key`), and the session's HMAC function
    registered for `pseudonym`."""
    spark.udf.registerJavaFunction(HMAC_FUNCTION, HMAC_CLASS, "string")
    inner, outer = pads(key)
    keys = spark.createDataFrame([(bytearray(inner), bytearray(outer))], f"{columns[0]} binary, {columns[1]} binary")
    return df.crossJoin(F.broadcast(keys))


def without_key(df: DataFrame, columns: tuple[str, str] = KEY_COLUMNS) -> DataFrame:
    return df.drop(*columns)


def hmac_sha256(message: Column, columns: tuple[str, str] = KEY_COLUMNS) -> Column:
    """HMAC-SHA-256 (hex) of a string column under the key joined by `with_key`; null stays null."""
    return F.call_function(HMAC_FUNCTION, F.col(columns[0]), F.col(columns[1]), message)


def pseudonym(kind: str, value: Column, columns: tuple[str, str] = KEY_COLUMNS) -> Column:
    """The keyed pseudonym of an identifier of `kind` (dates as ISO text)."""
    text = F.date_format(value, "yyyy-MM-dd") if kind == "date_of_birth" else value
    return F.when(text.isNotNull(), hmac_sha256(F.concat(F.lit(kind + ":"), text), columns))


def reference_pseudonym(key: bytes, kind: str, value: str) -> str:
    """The same pseudonym computed in Python (tests, re-identification lookups)."""
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
