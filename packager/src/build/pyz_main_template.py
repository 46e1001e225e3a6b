# Made by ferry: runs __FERRY_NAME__ from this zipapp (python3 __FERRY_NAME__.pyz ...).
import os
import sys

_entry = __FERRY_ENTRY__
_python = __FERRY_PYTHON__
_native = __FERRY_NATIVE__
_build = "__FERRY_BUILD__"


def _cache_root():
    for var in ("FERRY_CACHE_DIR", "CACHE_DIRECTORY"):
        if os.environ.get(var):
            return os.environ[var].split(":")[0]
    if os.environ.get("XDG_CACHE_HOME"):
        return os.path.join(os.environ["XDG_CACHE_HOME"], "ferry")
    if os.environ.get("HOME"):
        return os.path.join(os.environ["HOME"], ".cache", "ferry")
    return "/var/cache/ferry"


def _refuse_noexec(path, root):
    # Extension modules cannot be mapped from a noexec mount: say so plainly
    # instead of failing later in an import.
    if os.statvfs(path).f_flag & getattr(os, "ST_NOEXEC", 8):
        sys.stderr.write(
            "ferry: cache directory %r is on a filesystem mounted noexec, where "
            "__FERRY_NAME__'s native modules cannot load; set FERRY_CACHE_DIR to a "
            "directory on a filesystem mounted with exec\n" % root
        )
        sys.exit(78)


def _extract(archive):
    # Native extension modules cannot load from a zip: unpack once per build,
    # into a temporary sibling renamed into place.
    import tempfile
    import zipfile

    root = _cache_root()
    base = os.path.join(root, "__FERRY_NAME__")
    dest = os.path.join(base, _build)
    if os.path.isdir(dest):
        _refuse_noexec(dest, root)
        return dest
    os.makedirs(base, mode=0o700, exist_ok=True)
    _refuse_noexec(base, root)
    tmp = tempfile.mkdtemp(prefix="." + _build + ".partial-", dir=base)
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            name = info.filename
            if name.startswith("/") or ".." in name.split("/"):
                sys.exit("ferry: refusing unsafe entry %r in %s" % (name, archive))
            if name.startswith("site-packages/") or name.startswith("ferry/"):
                z.extract(info, tmp)
    try:
        os.rename(tmp, dest)
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _main():
    if tuple(sys.version_info[:2]) != tuple(_python):
        sys.stderr.write(
            "ferry: __FERRY_NAME__ was built for Python %d.%d but runs on %d.%d\n"
            % (tuple(_python) + tuple(sys.version_info[:2]))
        )
        sys.exit(78)
    archive = os.path.abspath(sys.argv[0])
    root = _extract(archive) if _native else archive
    sys.path.insert(0, os.path.join(root, "site-packages"))
    if _native:
        import site

        site.addsitedir(os.path.join(root, "site-packages"))
    if _entry["kind"] == "script":
        # Run as a module from its own directory: runpy.run_path on a path
        # inside the archive would find the archive's __main__ (this file)
        # again, and a module import reads the shipped bytecode.
        import runpy

        script_dir, script = os.path.split(_entry["path"])
        sys.path.insert(0, os.path.join(root, script_dir))
        runpy.run_module(os.path.splitext(script)[0], run_name="__main__", alter_sys=True)
        return None
    import importlib

    target = importlib.import_module(_entry["module"])
    for part in _entry["attr"].split("."):
        target = getattr(target, part)
    return target()


sys.exit(_main())
