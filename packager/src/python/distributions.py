# Asked by ferry after installing: the distributions in a site-packages
# directory and the console scripts they declare (each one's own, and all
# of them by name).
import importlib.metadata as md
import json
import sys

site = sys.argv[1]
dists = []
scripts = {}
for d in md.distributions(path=[site]):
    url = None
    try:
        url = (json.loads(d.read_text("direct_url.json") or "null") or {}).get("url")
    except Exception:
        pass
    own = {ep.name: ep.value for ep in d.entry_points if ep.group == "console_scripts"}
    dists.append({"name": d.metadata["Name"], "version": d.version, "url": url, "scripts": own})
    for name, value in own.items():
        scripts.setdefault(name, value)
print(json.dumps({"dists": dists, "console_scripts": scripts}))
