"""The national registry: the offline root, the registered cities, the next federation list.

State lives in one directory: ``keys/`` (the national root in an encrypted
:class:`keys.KeyStore`) and ``registry.json`` (the cities and the last published version),
written atomically. Every operation reads the registry, checks, and writes a new one whole,
so a failed command changes nothing.

A city is registered with its own root fingerprint, obtained out of band (the city prints
it at ``cardsvc init``). Its keys are never typed in: they are pulled from its root-signed
trust list, checked against that fingerprint, and flattened into the federation list, so a
verifier checks one chain (national root -> city key) and a city root alone signs nothing
a verifier relies on.

Example::

    fingerprint = init_registry(directory, passphrase=b"...", name="CN")
    add_issuer(directory, code="CN-YW", name_en="Yiwu", name_zh="义乌",
               trust_list_jwt=jwt, trust_list_source="https://yw.example/v1/trust-list",
               city_root_fingerprint=fp, status_url=..., api_url=..., now=now)
    claims, jwt = publish(directory, passphrase=b"...", now=now)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from keys._atomic import write_atomically
from keys.ed25519 import jwk_thumbprint, public_jwk
from keys.jws import sign_federation_list
from keys.keystore import KeyStore, KeyStoreError, SigningKeyStore
from keys.pkcs11 import HsmKeyStore, Pkcs11Uri
from schemas._jose import b64url_decode, parse_json_object, split_compact
from schemas.codes import FmcError, Malformed, TrustListRollback, TrustListStale
from schemas.federation import (
    MAX_BLOCKS_PER_ISSUER,
    SEQUENCE_MAX,
    FederationClaims,
    IssuerEntry,
    IssuerState,
    SequenceBlock,
)
from schemas.trust_list import IssuerKey, KeyState
from verifier.trust import verify_trust_list

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_LIFETIME_SECONDS",
    "NATIONAL_ROOT_KID",
    "NationalError",
    "RegisteredIssuer",
    "Registry",
    "RootAccess",
    "add_issuer",
    "federation_claims",
    "grant_block",
    "init_registry",
    "load_registry",
    "publish",
    "root_token",
    "set_issuer_state",
    "update_issuer",
]

NATIONAL_ROOT_KID = "national-root"
DEFAULT_BLOCK_SIZE = 100  # nine cities fit in 1..999 at first; more blocks are granted later
DEFAULT_LIFETIME_SECONDS = 7 * 86_400  # verifiers must sync weekly; publish daily
_REGISTRY_FILE = "registry.json"
_FORMAT = 1


class NationalError(Exception):
    """A refused national operation, with a stable code (nothing was changed)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class RegisteredIssuer:
    """A city as the national registry holds it: its entry plus where its list comes from."""

    entry: IssuerEntry
    trust_list_source: str


@dataclass(frozen=True, slots=True)
class Registry:
    name: str
    root_fingerprint: str
    published_version: int
    issuers: tuple[RegisteredIssuer, ...]

    def issuer(self, code: str) -> RegisteredIssuer:
        for registered in self.issuers:
            if registered.entry.code == code:
                return registered
        raise NationalError("ISSUER_NOT_FOUND", f"no issuer {code!r} is registered")


def _registry_path(directory: Path) -> Path:
    return directory / _REGISTRY_FILE


_ROOT_HSM_FILE = "root-hsm.json"  # the national root's PKCS#11 URI, when in a token


@dataclass(frozen=True, slots=True)
class RootAccess:
    """How to open the national root: the passphrase of the file store, or the PIN of the
    token (``init --keys pkcs11:…``) that is plugged in only to publish (P13)."""

    passphrase: bytes | None = None
    pin: str | None = None


def root_token(directory: Path) -> str | None:
    """The PKCS#11 URI of the token holding the national root, or None (file store)."""
    try:
        return str(json.loads((directory / _ROOT_HSM_FILE).read_text("utf-8"))["keys"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise NationalError("REGISTRY_CORRUPT", f"{_ROOT_HSM_FILE} is damaged") from exc


def _store(directory: Path, access: RootAccess, uri: str | None) -> SigningKeyStore:
    if uri is not None:
        if not access.pin:
            raise NationalError("NO_PIN", "set FMC_NATIONAL_PIN and plug in the root token")
        try:
            return HsmKeyStore.open(uri, pin=access.pin)
        except KeyStoreError as exc:
            raise NationalError("ROOT_UNAVAILABLE", str(exc)) from None
    if not access.passphrase:
        raise NationalError("NO_PASSPHRASE", "set FMC_NATIONAL_PASSPHRASE: the national root"
                            " is never kept in clear")
    try:
        return KeyStore(directory / "keys", passphrase=access.passphrase)
    except KeyStoreError as exc:
        raise NationalError("NO_PASSPHRASE", str(exc)) from None


def _save(directory: Path, registry: Registry) -> None:
    document = {
        "format": _FORMAT,
        "name": registry.name,
        "root_fingerprint": registry.root_fingerprint,
        "published_version": registry.published_version,
        "issuers": [
            {"entry": registered.entry.to_payload(), "source": registered.trust_list_source}
            for registered in registry.issuers
        ],
    }
    text = json.dumps(document, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    write_atomically(_registry_path(directory), text.encode("utf-8"), mode=0o600)


def load_registry(directory: Path) -> Registry:
    try:
        raw = _registry_path(directory).read_bytes()
    except FileNotFoundError:
        raise NationalError("NOT_INITIALISED", f"run `cardsvc national init --dir {directory}`"
                            ) from None
    try:
        document = parse_json_object(raw)
        if document.get("format") != _FORMAT:
            raise Malformed("unknown registry format")
        name, fingerprint = document["name"], document["root_fingerprint"]
        version, issuers = document["published_version"], document["issuers"]
        if not isinstance(name, str) or not isinstance(fingerprint, str) or \
                type(version) is not int or not isinstance(issuers, list):
            raise Malformed("registry fields have the wrong types")
        return Registry(name, fingerprint, version, tuple(
            RegisteredIssuer(IssuerEntry.from_payload(item["entry"]), str(item["source"]))
            for item in issuers
        ))
    except (FmcError, KeyError, TypeError) as exc:
        raise NationalError("REGISTRY_CORRUPT", f"{_registry_path(directory)} is damaged"
                            ) from exc


def init_registry(
    directory: Path, *, passphrase: bytes | None = None, name: str,
    keys_uri: str | None = None, pin: str | None = None,
) -> tuple[str, bool]:
    """Create the national root and an empty registry; (fingerprint, created).

    ``keys_uri``: make the root inside a PKCS#11 token (never extractable) instead of the
    passphrase-encrypted file store; only the URI is kept in the directory."""
    if _registry_path(directory).exists():
        return load_registry(directory).root_fingerprint, False
    if keys_uri is not None:
        try:
            Pkcs11Uri.parse(keys_uri)
        except KeyStoreError as exc:
            raise NationalError("BAD_KEYS_URI", str(exc)) from None
    store = _store(directory, RootAccess(passphrase, pin), keys_uri)
    try:
        root = store.generate(NATIONAL_ROOT_KID)
    except KeyStoreError as exc:
        raise NationalError("ROOT_UNAVAILABLE", str(exc)) from None
    if keys_uri is not None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(directory / _ROOT_HSM_FILE,
                         json.dumps({"keys": keys_uri}).encode(), mode=0o600)
    fingerprint = jwk_thumbprint(public_jwk(root.public_key))
    _save(directory, Registry(name, fingerprint, 0, ()))
    return fingerprint, True


def _city_keys(
    trust_list_jwt: str, *, code: str, city_root_fingerprint: str, now: int,
    held: IssuerEntry | None,
) -> tuple[bytes, tuple[IssuerKey, ...], int, tuple[IssuerKey, ...]]:
    """The city's root key, keys, trust-list version and interchange keys (``ik``), after
    checking its root signature."""
    try:
        city_list = verify_trust_list(trust_list_jwt.strip(),
                                      root_fingerprint=city_root_fingerprint)
        if city_list.expires_at <= now:
            raise TrustListStale("the city's trust list has expired")
        if held is not None and city_list.version < held.trust_list_version:
            raise TrustListRollback(f"city trust list version {city_list.version} < "
                                    f"registered {held.trust_list_version}")
    except FmcError as refused:
        raise NationalError(refused.code.value, refused.detail) from None
    if city_list.issuer != code:
        raise NationalError("ISSUER_MISMATCH",
                            f"the trust list is issued by {city_list.issuer!r}, not {code!r}")
    # The header's root key has just been matched to the fingerprint and the signature.
    _, header, _, _ = split_compact(trust_list_jwt.strip())
    root_key = b64url_decode(parse_json_object(header)["jwk"]["x"])
    keys = city_list.keys
    if held is not None:
        # A key once reported compromised stays compromised nationally, even if the city
        # later drops it from its own list: its signatures must never come back.
        compromised = {k.kid: k for k in held.keys if k.state is KeyState.COMPROMISED}
        kept = tuple(compromised.get(k.kid, k) for k in keys)
        dropped = tuple(k for kid, k in compromised.items() if kid not in city_list.keys_by_kid)
        keys = kept + dropped
    return root_key, keys, city_list.version, _interchange_keys(city_list.interchange_keys,
                                                                held)


def _interchange_keys(
    listed: tuple[IssuerKey, ...], held: IssuerEntry | None
) -> tuple[IssuerKey, ...]:
    """The city's interchange keys as its list says, except that one once compromised
    nationally stays compromised (and listed) even if the city dropped it."""
    if held is None:
        return listed
    compromised = {k.kid: k for k in held.interchange_keys if k.state is KeyState.COMPROMISED}
    by_kid = {k.kid for k in listed}
    return tuple(compromised.get(k.kid, k) for k in listed) + tuple(
        k for kid, k in compromised.items() if kid not in by_kid)


def _free_block(registry: Registry, size: int) -> SequenceBlock:
    """The lowest run of ``size`` sequence numbers no issuer (even a removed one) holds."""
    if not 1 <= size <= SEQUENCE_MAX:
        raise NationalError("BAD_BLOCK_SIZE", f"a block holds 1 to {SEQUENCE_MAX} numbers")
    taken = sorted(b for r in registry.issuers for b in r.entry.sequence_blocks)
    first = 1
    for block in taken:
        if first + size - 1 < block.first:
            break
        first = max(first, block.last + 1)
    if first + size - 1 > SEQUENCE_MAX:
        raise NationalError("SEQUENCE_EXHAUSTED", f"no free block of {size} sequence numbers")
    return SequenceBlock(first, first + size - 1)


def _refuse_kids_in_use(registry: Registry, code: str, keys: tuple[IssuerKey, ...]) -> None:
    """Kids are unique nationally (a verifier finds the key, and so the city, by kid
    alone): refuse a city key whose kid another city, even a removed one, already has."""
    others = {key.kid: r.entry.code for r in registry.issuers if r.entry.code != code
              for key in r.entry.keys}
    clashes = sorted(f"{key.kid} ({others[key.kid]})" for key in keys if key.kid in others)
    if clashes:
        raise NationalError("KID_IN_USE", f"kids already used by another city: "
                            f"{', '.join(clashes)}; give {code} its own CARDSVC_KID_PREFIX"
                            " and rotate its keys")


def _checked(registry: Registry) -> Registry:
    """Refuse to keep anything a verifier would refuse (names, URLs, overlaps, sizes)."""
    if registry.issuers:
        try:
            FederationClaims.from_payload(
                federation_claims(registry, now=1, lifetime_seconds=1).to_payload())
        except FmcError as refused:
            raise NationalError("INVALID_ISSUER", refused.detail) from None
    return registry


def add_issuer(
    directory: Path, *, code: str, name_en: str, name_zh: str, trust_list_jwt: str,
    trust_list_source: str, city_root_fingerprint: str, status_url: str, api_url: str,
    now: int, block_size: int = DEFAULT_BLOCK_SIZE,
) -> IssuerEntry:
    registry = load_registry(directory)
    if any(r.entry.code == code for r in registry.issuers):
        raise NationalError("ISSUER_EXISTS", f"{code} is already registered")
    root_key, keys, version, interchange = _city_keys(
        trust_list_jwt, code=code, now=now, held=None,
        city_root_fingerprint=city_root_fingerprint)
    _refuse_kids_in_use(registry, code, keys)
    entry = IssuerEntry(code, name_en, name_zh, IssuerState.ACTIVE, root_key, keys,
                        status_url, api_url, (_free_block(registry, block_size),), version,
                        interchange)
    registered = RegisteredIssuer(entry, trust_list_source)
    _save(directory, _checked(replace(registry, issuers=(*registry.issuers, registered))))
    return entry


def update_issuer(
    directory: Path, *, code: str, trust_list_jwt: str, now: int,
    trust_list_source: str | None = None, status_url: str | None = None,
    api_url: str | None = None,
) -> IssuerEntry:
    """Re-pull a city's keys (after a rotation or a compromise), checked against the city
    root registered at ``add-issuer``: a new city root needs remove and a new code."""
    registry = load_registry(directory)
    held = registry.issuer(code)
    if held.entry.state is IssuerState.REMOVED:
        raise NationalError("ISSUER_REMOVED", f"{code} was removed")
    fingerprint = jwk_thumbprint(public_jwk(held.entry.root_key))
    _, keys, version, interchange = _city_keys(trust_list_jwt, code=code, now=now,
                                               held=held.entry,
                                               city_root_fingerprint=fingerprint)
    _refuse_kids_in_use(registry, code, keys)
    entry = replace(held.entry, keys=keys, trust_list_version=version,
                    interchange_keys=interchange,
                    status_url=status_url or held.entry.status_url,
                    api_url=api_url or held.entry.api_url)
    updated = RegisteredIssuer(entry, trust_list_source or held.trust_list_source)
    _save(directory, _checked(_with(registry, updated)))
    return entry


def grant_block(directory: Path, *, code: str, block_size: int = DEFAULT_BLOCK_SIZE
                ) -> IssuerEntry:
    """Grant a city the lowest free run of ``block_size`` sequence numbers, when one of
    its prefixes ran out (FOREIGNER_CODE_EXHAUSTED). A run right after one of its own
    blocks extends that block. Up to MAX_BLOCKS_PER_ISSUER (8) blocks per city."""
    registry = load_registry(directory)
    held = registry.issuer(code)
    if held.entry.state is IssuerState.REMOVED:
        raise NationalError("ISSUER_REMOVED", f"{code} was removed")
    granted = _free_block(registry, block_size)
    blocks = sorted((*held.entry.sequence_blocks, granted))
    merged: list[SequenceBlock] = []
    for block in blocks:
        if merged and merged[-1].last + 1 == block.first:
            merged[-1] = SequenceBlock(merged[-1].first, block.last)
        else:
            merged.append(block)
    if len(merged) > MAX_BLOCKS_PER_ISSUER:
        raise NationalError("TOO_MANY_BLOCKS", f"{code} already holds "
                            f"{len(held.entry.sequence_blocks)} blocks, the most a city may")
    updated = RegisteredIssuer(replace(held.entry, sequence_blocks=tuple(merged)),
                               held.trust_list_source)
    _save(directory, _checked(_with(registry, updated)))
    return updated.entry


def set_issuer_state(directory: Path, *, code: str, state: IssuerState) -> IssuerEntry:
    """Suspend, reinstate or remove a city; removal is final (its sequence blocks stay
    reserved so no other city ever reissues its foreigner codes)."""
    registry = load_registry(directory)
    held = registry.issuer(code)
    if held.entry.state is IssuerState.REMOVED:
        raise NationalError("ISSUER_REMOVED", f"{code} was removed; removal is final")
    updated = RegisteredIssuer(replace(held.entry, state=state), held.trust_list_source)
    _save(directory, _with(registry, updated))
    return updated.entry


def _with(registry: Registry, updated: RegisteredIssuer) -> Registry:
    return replace(registry, issuers=tuple(
        updated if r.entry.code == updated.entry.code else r for r in registry.issuers))


def federation_claims(registry: Registry, *, now: int, lifetime_seconds: int) -> FederationClaims:
    """The next list: one version above the last published, never reused."""
    return FederationClaims(registry.name, registry.published_version + 1, now,
                            now + lifetime_seconds, tuple(r.entry for r in registry.issuers))


def publish(
    directory: Path, *, passphrase: bytes | None = None, now: int, pin: str | None = None,
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
) -> tuple[FederationClaims, str]:
    """Sign the next federation list and record its version (the caller writes the JWT)."""
    if lifetime_seconds <= 0:
        raise NationalError("BAD_LIFETIME", "the lifetime must be positive")
    registry = load_registry(directory)
    if not registry.issuers:
        raise NationalError("NO_ISSUERS", "add an issuer before publishing")
    try:
        root = _store(directory, RootAccess(passphrase, pin),
                      root_token(directory)).load(NATIONAL_ROOT_KID)
    except KeyStoreError as exc:
        raise NationalError("ROOT_UNAVAILABLE", str(exc)) from None
    if jwk_thumbprint(public_jwk(root.public_key)) != registry.root_fingerprint:
        raise NationalError("ROOT_MISMATCH", "the key store holds another national root")
    claims = federation_claims(registry, now=now, lifetime_seconds=lifetime_seconds)
    jwt = sign_federation_list(claims, root)
    _save(directory, replace(registry, published_version=claims.version))
    return claims, jwt
