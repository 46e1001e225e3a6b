"""A ferry repository read by python-tuf's own client, which ferry did not
write: refresh from the provisioned root, then the channel's manifest and
the artifact it names, each downloaded and verified by python-tuf.

Usage: tuf_client.py ROOT_JSON BASE_URL APP CHANNEL TARGET WORKDIR
Prints one JSON line: {"manifest": ..., "artifact_sha256": ..., "root_version": N}.
"""

import hashlib
import json
import os
import sys

from tuf.ngclient import Updater

root_path, base_url, app, channel, target, workdir = sys.argv[1:7]
metadata_dir = os.path.join(workdir, "metadata")
download_dir = os.path.join(workdir, "downloads")
os.makedirs(metadata_dir, exist_ok=True)
os.makedirs(download_dir, exist_ok=True)
with open(root_path, "rb") as f:
    bootstrap = f.read()

updater = Updater(
    metadata_dir=metadata_dir,
    metadata_base_url=base_url + "/metadata/",
    target_dir=download_dir,
    target_base_url=base_url + "/targets/",
    bootstrap=bootstrap,
)
updater.refresh()


def fetch(path):
    info = updater.get_targetinfo(path)
    if info is None:
        sys.exit(f"target {path} is not in the trusted metadata")
    return updater.download_target(info)


with open(fetch(f"{app}/{channel}.json"), "rb") as f:
    manifest = json.load(f)
artifact = manifest["artifacts"][target]["target"]
with open(fetch(artifact), "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
print(json.dumps({
    "manifest": manifest,
    "artifact_sha256": digest,
    "root_version": updater._trusted_set.root.version,
}))
