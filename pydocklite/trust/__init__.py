"""Image trust: sigstore signatures checked against a containers-policy.json, and signing.

The image service (images.py) and `load` (distribution/archive.py) call it; it calls
registry/ (registry/attachments.py fetches and pushes the `sha256-<hex>.sig` attachments).

    policy.py     containers-policy.json: strict parsing, transports and scopes, selection
    identity.py   signedIdentity rules (matchRepoDigestOrExact, remapIdentity, ...)
    payload.py    the simple-signing payload: make and strictly parse
    verify.py     a selection + an image's signatures -> Verdict, or SignatureRefused
    verdict.py    Verdict / SignatureCheck: the fact kept in the image record (inspect: Trust)
    keys.py       public and private keys, sign and verify (the only user of cryptography,
                  imported on first use and only for the key type at hand)
    keyfile.py    PEM blocks and the encrypted cosign/sigstore private-key format
    secretbox.py  NaCl secretbox (XSalsa20-Poly1305) in pure Python, for keyfile.py
    sign.py       signing keys, signing a manifest in a registry, generating key files
    errors.py     TrustError: PolicyError, SignatureRefused, KeyFileError

`ps`, `images`, `run` of a local image and an unsigned pull never import cryptography.
"""
