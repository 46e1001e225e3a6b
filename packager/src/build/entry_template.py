# Made by ferry: starts __FERRY_NAME__ from its bundle.
# The launcher runs: python -I <bundle>/ferry/entry.py <argv0> <args...>
import os
import site
import sys

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_entry = __FERRY_ENTRY__
_python = __FERRY_PYTHON__


def _paths():
    # The app's packages go before any system site directory, and the system's
    # own site-packages are dropped: the bundle is the app's whole world.
    system_sites = set(site.getsitepackages())
    before = [p for p in sys.path if p not in system_sites]
    site.addsitedir(os.path.join(_root, "site-packages"))
    added = [p for p in sys.path if p not in before and p not in system_sites]
    sys.path[:] = before + added


def _main():
    if tuple(sys.version_info[:2]) != tuple(_python):
        sys.stderr.write(
            "ferry: __FERRY_NAME__ was built for Python %d.%d but runs on %d.%d\n"
            % (tuple(_python) + tuple(sys.version_info[:2]))
        )
        sys.exit(78)
    sys.argv = sys.argv[1:] or [sys.executable]
    _paths()
    # `ferry build` runs every binary it makes once this way: the entry
    # point is resolved (its module imported, the function looked up) and
    # not called.
    checking = os.environ.pop("FERRY_CHECK_ENTRY", "") == "1"
    if _entry["kind"] == "script":
        import runpy

        path = os.path.join(_root, _entry["path"])
        if checking:
            return 0 if os.path.isfile(path) else "ferry: entry script %s is missing" % path
        sys.argv[0] = sys.argv[0] or path
        runpy.run_path(path, run_name="__main__")
        return None
    import importlib

    target = importlib.import_module(_entry["module"])
    for part in _entry["attr"].split("."):
        target = getattr(target, part)
    if checking:
        return 0 if callable(target) else "ferry: %s:%s is not callable" % (
            _entry["module"],
            _entry["attr"],
        )
    return target()


sys.exit(_main())
