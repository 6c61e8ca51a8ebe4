"""Key material: Ed25519 signers, the encrypted key store, signing and key rotation.

Example::

    from keys import Ed25519Signer, sign_credential
    issuer = Ed25519Signer.generate()
    token = sign_credential(credential, issuer)      # compact JWS, Ed25519, zip DEF
"""

from keys.ed25519 import (
    Ed25519Signer,
    Signer,
    is_usable_public_key,
    jwk_thumbprint,
    public_jwk,
    verify_signature,
)
from keys.jws import (
    ALG_ED25519,
    ALG_EDDSA,
    sign_compact,
    sign_credential,
    sign_portrait_manifest,
    sign_presentation,
    sign_status_list,
    sign_timestamp,
    sign_trust_list,
)
from keys.keystore import KeyStore, KeyStoreError, SigningKeyStore
from keys.rotation import (
    KEY_RETENTION_SECONDS,
    RotationError,
    active_key,
    compromise,
    initial_keys,
    published_keys,
    rotate,
    stopped_signing,
)

__all__ = [
    "ALG_ED25519",
    "ALG_EDDSA",
    "KEY_RETENTION_SECONDS",
    "Ed25519Signer",
    "KeyStore",
    "KeyStoreError",
    "RotationError",
    "Signer",
    "SigningKeyStore",
    "active_key",
    "compromise",
    "initial_keys",
    "is_usable_public_key",
    "jwk_thumbprint",
    "public_jwk",
    "published_keys",
    "rotate",
    "sign_compact",
    "sign_credential",
    "sign_portrait_manifest",
    "sign_presentation",
    "sign_status_list",
    "sign_timestamp",
    "sign_trust_list",
    "stopped_signing",
    "verify_signature",
]
