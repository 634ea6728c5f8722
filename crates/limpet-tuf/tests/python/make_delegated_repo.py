"""Writes a TUF repository with python-tuf's metadata API, for limpet-tuf to read.

Usage: make_delegated_repo.py OUT_DIR

OUT_DIR/metadata holds root (version 1), timestamp, snapshot and targets; targets delegates
"team/*" to role "team" (terminating) and "*" to role "bins", which delegates with
succinct_roles (hash bins, bit_length 4, "bin-0" to "bin-f") whose bins list what they are
delegated. Consistent snapshots: metadata also under VERSION.NAME.json, targets under
HASH.NAME. Targets carry sha256 and sha512 hashes. Prints a JSON object mapping each target
name to its content (ASCII), for the caller to compare. Needs `pip install tuf`.
"""

import datetime
import hashlib
import json
import os
import sys

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer


def main() -> int:
    out = sys.argv[1]
    meta_dir = os.path.join(out, "metadata")
    targets_dir = os.path.join(out, "targets")
    os.makedirs(meta_dir)
    os.makedirs(targets_dir)
    expires = datetime.datetime.now(datetime.timezone.utc).replace(
        microsecond=0
    ) + datetime.timedelta(days=30)
    signers = {
        name: CryptoSigner.generate_ed25519()
        for name in ["root", "timestamp", "snapshot", "targets", "team", "bins"]
    }

    root = Metadata(Root(expires=expires, consistent_snapshot=True))
    for role in ["root", "timestamp", "snapshot", "targets"]:
        root.signed.add_key(signers[role].public_key, role)

    contents = {
        "team/app.img": b"team payload",
        "binned/one.txt": b"first binned payload",
        "binned/two.txt": b"second binned payload",
    }
    files = {
        name: TargetFile.from_data(name, data, ["sha256", "sha512"])
        for name, data in contents.items()
    }

    team = Metadata(Targets(expires=expires))
    team.signed.targets["team/app.img"] = files["team/app.img"]

    bins_keyid = signers["bins"].public_key.keyid
    succinct = SuccinctRoles([bins_keyid], 1, 4, "bin")
    bins = Metadata(Targets(expires=expires))
    bins.signed.delegations = Delegations(
        {bins_keyid: signers["bins"].public_key}, succinct_roles=succinct
    )
    bin_roles = {}
    for name in succinct.get_roles():
        bin_roles[name] = Metadata(Targets(expires=expires))
    for target in ["binned/one.txt", "binned/two.txt"]:
        bin_roles[succinct.get_role_for_target(target)].signed.targets[target] = files[
            target
        ]

    targets = Metadata(Targets(expires=expires))
    team_keyid = signers["team"].public_key.keyid
    targets.signed.delegations = Delegations(
        {
            team_keyid: signers["team"].public_key,
            bins_keyid: signers["bins"].public_key,
        },
        roles={
            "team": DelegatedRole("team", [team_keyid], 1, True, paths=["team/*"]),
            "bins": DelegatedRole("bins", [bins_keyid], 1, False, paths=["*/*"]),
        },
    )

    serializer = JSONSerializer(compact=False)

    def write(name: str, md: Metadata, signer: CryptoSigner) -> bytes:
        md.sign(signer)
        data = md.to_bytes(serializer)
        for file in [f"{name}.json", f"{md.signed.version}.{name}.json"]:
            with open(os.path.join(meta_dir, file), "wb") as f:
                f.write(data)
        return data

    snapshot = Metadata(Snapshot(expires=expires))
    for name, md, signer in [
        ("team", team, signers["team"]),
        ("bins", bins, signers["bins"]),
        ("targets", targets, signers["targets"]),
    ] + [(name, md, signers["bins"]) for name, md in bin_roles.items()]:
        write(name, md, signer)
        snapshot.signed.meta[f"{name}.json"] = MetaFile(version=md.signed.version)
    write("root", root, signers["root"])
    snapshot_bytes = write("snapshot", snapshot, signers["snapshot"])
    timestamp = Metadata(Timestamp(expires=expires))
    timestamp.signed.snapshot_meta = MetaFile(
        version=snapshot.signed.version,
        length=len(snapshot_bytes),
        hashes={"sha512": hashlib.sha512(snapshot_bytes).hexdigest()},
    )
    timestamp.sign(signers["timestamp"])
    with open(os.path.join(meta_dir, "timestamp.json"), "wb") as f:
        f.write(timestamp.to_bytes(serializer))

    for name, data in contents.items():
        directory, _, base = name.rpartition("/")
        os.makedirs(os.path.join(targets_dir, directory), exist_ok=True)
        for digest in files[name].hashes.values():
            with open(os.path.join(targets_dir, directory, f"{digest}.{base}"), "wb") as f:
                f.write(data)
    print(json.dumps({name: data.decode() for name, data in contents.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
