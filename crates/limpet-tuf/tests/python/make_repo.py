"""A TUF repository signed by python-tuf and securesystemslib, for limpet-tuf to verify.

Usage: make_repo.py OUT_DIR KEYTYPE [LEGACY]

KEYTYPE is ed25519, ecdsa or rsa. Writes OUT_DIR/metadata/{1.root.json, 2.root.json,
timestamp.json, 1.snapshot.json, 1.targets.json} and OUT_DIR/targets/<sha256>.file.txt
(consistent snapshots). Root 1 has Ed25519 keys; root 2 rotates every role to KEYTYPE keys
(root 2 signed by the threshold of root 1 and of root 2, so a client walks the rotation).
With LEGACY, the ECDSA keys use the old keytype name "ecdsa-sha2-nistp256".
Prints JSON: the key objects and key ids securesystemslib computed for the KEYTYPE keys.
Needs `pip install tuf`.
"""

import json
import os
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

ROLES = ["root", "timestamp", "snapshot", "targets"]


def generate(keytype: str, legacy: bool) -> CryptoSigner:
    if keytype == "ed25519":
        return CryptoSigner.generate_ed25519()
    if keytype == "ecdsa":
        signer = CryptoSigner.generate_ecdsa()
        if legacy:
            # The same key under the legacy keytype: a new key object, a new key id.
            pub = signer.public_key
            key = SSlibKey.from_dict(
                "x",
                {
                    "keytype": "ecdsa-sha2-nistp256",
                    "scheme": pub.scheme,
                    "keyval": dict(pub.keyval),
                },
            )
            from securesystemslib.signer._key import compute_default_keyid

            keyid = compute_default_keyid(key.keytype, key.scheme, key.keyval)
            key = SSlibKey(keyid, key.keytype, key.scheme, key.keyval)
            signer = CryptoSigner(signer._private_key, key)
        return signer
    if keytype == "rsa":
        return CryptoSigner.generate_rsa()
    raise SystemExit(f"unknown keytype {keytype}")


def main() -> int:
    out, keytype = sys.argv[1], sys.argv[2]
    legacy = len(sys.argv) > 3 and sys.argv[3] == "LEGACY"
    meta_dir = os.path.join(out, "metadata")
    targets_dir = os.path.join(out, "targets")
    os.makedirs(meta_dir, exist_ok=True)
    os.makedirs(targets_dir, exist_ok=True)
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30)
    pretty = JSONSerializer(compact=False)

    old = {role: generate("ed25519", False) for role in ROLES}
    new = {role: generate(keytype, legacy) for role in ROLES}

    root = Metadata(Root(expires=expires, consistent_snapshot=True))
    for role in ROLES:
        root.signed.add_key(old[role].public_key, role)
    root.sign(old["root"])
    with open(os.path.join(meta_dir, "1.root.json"), "wb") as f:
        f.write(root.to_bytes(pretty))

    # Root 2: every role on the new key type, signed by the old and the new root key.
    root.signed.version = 2
    for role in ROLES:
        root.signed.revoke_key(old[role].public_key.keyid, role)
        root.signed.add_key(new[role].public_key, role)
    root.signatures.clear()
    root.sign(old["root"], append=True)
    root.sign(new["root"], append=True)
    with open(os.path.join(meta_dir, "2.root.json"), "wb") as f:
        f.write(root.to_bytes(pretty))

    payload = b"signed by python-tuf with " + keytype.encode() + b" keys\n"
    target = TargetFile.from_data("file.txt", payload, ["sha256"])
    with open(os.path.join(targets_dir, f"{target.hashes['sha256']}.file.txt"), "wb") as f:
        f.write(payload)
    targets = Metadata(Targets(expires=expires, targets={"file.txt": target}))
    targets.sign(new["targets"])
    with open(os.path.join(meta_dir, "1.targets.json"), "wb") as f:
        f.write(targets.to_bytes(pretty))
    snapshot = Metadata(Snapshot(expires=expires, meta={"targets.json": MetaFile(1)}))
    snapshot.sign(new["snapshot"])
    with open(os.path.join(meta_dir, "1.snapshot.json"), "wb") as f:
        f.write(snapshot.to_bytes(pretty))
    timestamp = Metadata(
        Timestamp(expires=expires, snapshot_meta=MetaFile(1))
    )
    timestamp.sign(new["timestamp"])
    with open(os.path.join(meta_dir, "timestamp.json"), "wb") as f:
        f.write(timestamp.to_bytes(pretty))

    keys = {
        role: {"keyid": new[role].public_key.keyid, "key": new[role].public_key.to_dict()}
        for role in ROLES
    }
    print(json.dumps({"keys": keys, "payload": payload.decode()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
