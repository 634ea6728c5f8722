"""Independent check of a limpet-tuf repository with python-tuf's ngclient.

Usage: ngclient_check.py METADATA_URL TARGETS_URL ROOT_JSON WORK_DIR (TARGET_NAME EXPECTED_FILE)...

Refreshes top-level metadata, then for each TARGET_NAME looks it up (following delegations),
downloads it and compares it with the bytes of EXPECTED_FILE. Prints one JSON line per
target. Exit 0 on success. Needs `pip install tuf`.
"""

import json
import os
import sys

from tuf.ngclient import Updater


def main() -> int:
    metadata_url, targets_url, root_json, work = sys.argv[1:5]
    pairs = sys.argv[5:]
    metadata_dir = os.path.join(work, "metadata")
    download_dir = os.path.join(work, "downloads")
    os.makedirs(metadata_dir, exist_ok=True)
    os.makedirs(download_dir, exist_ok=True)
    with open(root_json, "rb") as f:
        root_bytes = f.read()
    updater = Updater(
        metadata_dir=metadata_dir,
        metadata_base_url=metadata_url,
        target_dir=download_dir,
        target_base_url=targets_url,
        bootstrap=root_bytes,
    )
    updater.refresh()
    for name, expected in zip(pairs[::2], pairs[1::2]):
        info = updater.get_targetinfo(name)
        if info is None:
            print(f"target {name} not found", file=sys.stderr)
            return 1
        path = updater.download_target(info)
        with open(path, "rb") as f, open(expected, "rb") as g:
            if f.read() != g.read():
                print(f"{name}: downloaded bytes differ", file=sys.stderr)
                return 1
        print(json.dumps({"target": name, "custom": info.custom, "path": path}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
