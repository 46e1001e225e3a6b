//! A sandbox's state directory on the host, and the script that runs as PID 1
//! of its namespaces until it becomes systemd.
//!
//! The state directory holds what the sandbox sees as `/etc/systemd` (a
//! whitelist of the vendor units, a directory for test units, configs), its
//! `/etc/machine-id` and `/etc/hostname`, and the records [`super::gc`] needs to
//! clean up after a test process that died: the owner, systemd's pid and PID
//! namespace, the cgroup.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::procs;

/// The vendor units a sandbox boots with, and nothing else: D-Bus, journald,
/// the standard targets and the shutdown path. Everything the host enables
/// (and `systemd-tmpfiles-setup.service`, which would wipe the host's `/tmp`)
/// stays out, because `SYSTEMD_UNIT_PATH` names only these directories.
pub(crate) const BASE_UNITS: &[&str] = &[
    "dbus.socket",
    "dbus.service",
    "systemd-journald.socket",
    "systemd-journald.service",
    "basic.target",
    "sysinit.target",
    "sockets.target",
    "timers.target",
    "paths.target",
    "slices.target",
    "local-fs-pre.target",
    "local-fs.target",
    "swap.target",
    "multi-user.target",
    "network-pre.target",
    "network.target",
    "network-online.target",
    "nss-lookup.target",
    "time-sync.target",
    "remote-fs-pre.target",
    "remote-fs.target",
    "shutdown.target",
    "umount.target",
    "final.target",
    "exit.target",
    "systemd-exit.service",
    "halt.target",
    "systemd-halt.service",
    "poweroff.target",
    "systemd-poweroff.service",
    "reboot.target",
    "systemd-reboot.service",
];

/// `(directory, unit)` symlinks that pull the base services into the boot.
const WANTS: &[(&str, &str)] = &[
    ("sockets.target.wants", "dbus.socket"),
    ("sockets.target.wants", "systemd-journald.socket"),
    ("sysinit.target.wants", "systemd-journald.service"),
    ("multi-user.target.wants", "dbus.service"),
];

/// Where Debian keeps the vendor units.
const VENDOR_UNITS: &str = "/usr/lib/systemd/system";

/// systemd's unit search path inside: these directories and nothing else. No
/// trailing `:`, which would append the default (host) directories.
pub(crate) const UNIT_PATH: &str = "/etc/systemd/system.control:/run/systemd/system.control:/run/systemd/transient:/etc/systemd/system:/run/systemd/system:/etc/systemd/sandbox-base-units";

/// Runs as `sh -c` as PID 1 of the new namespaces, started by `unshare`:
/// `$1` the state directory, `$2` the hostname, `$3` 1 for a private `/tmp`,
/// `$4` the systemd binary, `$5` [`UNIT_PATH`], then `host inside` pairs to
/// bind (checked by [`check_bind`]). It makes `/run`, `/dev`, the cgroup tree,
/// `/etc/systemd`, the machine and boot IDs private, binds, then execs systemd.
pub(crate) const INIT_SCRIPT: &str = r#"set -eu
S=$1 NAME=$2 PRIVTMP=$3 SYSTEMD=$4 UNIT_PATH=$5
shift 5
exec >>"$S/init.log" 2>&1
echo "init: pid $$"
# Private /run for the sandbox's sockets and its volatile journal. -n: no utab
# update, else libmount creates /run/mount on the HOST before /run is covered.
mount -n -t tmpfs -o mode=755,nosuid,nodev,size=64m ferry-sandbox-run /run
# Private minimal /dev: the host's /dev/log, /dev/console, /dev/kmsg stay out of reach.
mount -t tmpfs -o mode=755,nosuid,size=4m ferry-sandbox-dev /dev
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/full c 1 7
mknod -m 666 /dev/random c 1 8
mknod -m 666 /dev/urandom c 1 9
mknod -m 666 /dev/tty c 5 0
mkdir -m 755 /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev ferry-sandbox-shm /dev/shm
mount -t mqueue mqueue /dev/mqueue
ln -s /proc/self/fd /dev/fd
ln -s fd/0 /dev/stdin
ln -s fd/1 /dev/stdout
ln -s fd/2 /dev/stderr
# A fresh cgroup2 mount: in the new cgroup namespace its root is the sandbox's cgroup.
umount -R /sys/fs/cgroup 2>/dev/null || umount -l /sys/fs/cgroup 2>/dev/null || true
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# Missing bind targets outside the private /run and /tmp: a private overlay of
# their nearest existing ancestor (upper layer in /run), so the mount point is
# made in the sandbox only. Before the /etc binds, which an overlay would hide.
k=0
n=0
for a in "$@"; do
  k=$((k + 1))
  [ $((k % 2)) = 0 ] && [ ! -e "$a" ] || continue
  case $a in /run/*|/tmp/*|/var/tmp/*) continue ;; esac
  p=$(dirname "$a")
  while [ ! -e "$p" ]; do p=$(dirname "$p"); done
  if ! grep -Fqx "$p" /run/ferry-overlays 2>/dev/null; then
    n=$((n + 1))
    o=/run/ferry-overlay/$n
    mkdir -p "$o/upper" "$o/work"
    mount -t overlay -o "lowerdir=$p,upperdir=$o/upper,workdir=$o/work" ferry-sandbox-overlay "$p"
    echo "$p" >>/run/ferry-overlays
  fi
done
# Private /etc/systemd (test units, whitelisted base units, configs), machine-id, hostname.
mount --bind "$S/etc-systemd" /etc/systemd
mount --bind "$S/machine-id" /etc/machine-id
# A boot ID of its own: journal entries and PrivateTmp= directory names carry it.
mount --bind "$S/boot_id" /proc/sys/kernel/random/boot_id
if [ -e /etc/hostname ]; then mount --bind "$S/hostname" /etc/hostname; fi
hostname "$NAME"
# Binds are staged under the private /run first, so that a host path may live in
# the host's /tmp even when a private /tmp is about to cover it.
mkdir /run/ferry-stage
k=0
for a in "$@"; do
  k=$((k + 1))
  [ $((k % 2)) = 1 ] || continue
  st=/run/ferry-stage/$(((k + 1) / 2))
  if [ -d "$a" ]; then mkdir "$st"; else touch "$st"; fi
  mount --bind "$a" "$st"
done
if [ "$PRIVTMP" = 1 ]; then
  mount -t tmpfs -o mode=1777,nosuid,nodev ferry-sandbox-tmp /tmp
  mount -t tmpfs -o mode=1777,nosuid,nodev ferry-sandbox-tmp /var/tmp
fi
k=0
for a in "$@"; do
  k=$((k + 1))
  [ $((k % 2)) = 0 ] || continue
  st=/run/ferry-stage/$((k / 2))
  if [ ! -e "$a" ]; then
    # Only in private file systems: /run, a private /tmp, or an overlay made above.
    case $a in
      /tmp/*|/var/tmp/*) [ "$PRIVTMP" = 1 ] || { echo "init: bind target $a missing"; exit 1; } ;;
    esac
    if [ -d "$st" ]; then mkdir -p "$a"; else mkdir -p "$(dirname "$a")"; touch "$a"; fi
  fi
  mount --move "$st" "$a"
done
rmdir /run/ferry-stage/* /run/ferry-stage 2>/dev/null || true
echo "init: exec $SYSTEMD"
# container=... puts systemd in container mode: no umount storm at shutdown,
# `systemctl exit` and Manager.Exit() allowed. No generators (an empty directory).
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  container=ferry-sandbox SYSTEMD_UNIT_PATH="$UNIT_PATH" \
  SYSTEMD_GENERATOR_PATH=/etc/systemd/sandbox-no-generators \
  SYSTEMD_ENVIRONMENT_GENERATOR_PATH=/etc/systemd/sandbox-no-generators \
  "$SYSTEMD" --system </dev/null
"#;

/// Fills the new state directory `dir` for a sandbox whose hostname is `name`.
/// The owner record comes first, so that no other process's `gc` ever takes
/// the directory for a leftover.
pub(crate) fn prepare(dir: &Path, name: &str, machine_id: &str, boot_id: &str) -> Result<()> {
    fs::create_dir_all(dir.parent().unwrap_or(dir))
        .with_context(|| format!("cannot create `{}`", dir.display()))?;
    fs::create_dir(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let me = std::process::id();
    let started = procs::start_time(me).context("cannot read this process's start time")?;
    fs::write(dir.join("owner"), format!("{me} {started}\n"))
        .with_context(|| format!("cannot write `{}`", dir.join("owner").display()))?;

    let etc = dir.join("etc-systemd");
    let base = etc.join("sandbox-base-units");
    for sub in [
        base.clone(),
        etc.join("system"),
        etc.join("sandbox-no-generators"),
    ] {
        fs::create_dir_all(&sub).with_context(|| format!("cannot create `{}`", sub.display()))?;
    }
    for unit in BASE_UNITS {
        copy_unit(&Path::new(VENDOR_UNITS).join(unit), &base.join(unit))?;
    }
    for (wants, unit) in WANTS {
        let wants = base.join(wants);
        fs::create_dir_all(&wants)
            .with_context(|| format!("cannot create `{}`", wants.display()))?;
        symlink(&Path::new("..").join(unit), &wants.join(unit))?;
    }
    symlink(Path::new("multi-user.target"), &base.join("default.target"))?;
    write(
        &etc.join("journald.conf"),
        "[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n",
    )?;
    write(
        &etc.join("system.conf"),
        "[Manager]\nDefaultTimeoutStopSec=10s\n",
    )?;
    write(&dir.join("machine-id"), &format!("{machine_id}\n"))?;
    write(&dir.join("boot_id"), &format!("{}\n", uuid_form(boot_id)))?;
    write(&dir.join("hostname"), &format!("{name}\n"))?;
    Ok(())
}

/// Copies a vendor unit; an alias stays a symlink (a copied alias fails to
/// load with "File exists").
fn copy_unit(from: &Path, to: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(from).with_context(|| {
        let package = if from.to_string_lossy().contains("dbus") {
            "dbus"
        } else {
            "systemd"
        };
        format!(
            "the systemd unit `{}` is missing (needed by the systemd sandbox)\nhint: apt-get install {package}",
            from.display()
        )
    })?;
    if meta.file_type().is_symlink() {
        let target =
            fs::read_link(from).with_context(|| format!("cannot read `{}`", from.display()))?;
        symlink(&target, to)
    } else {
        fs::copy(from, to)
            .map(drop)
            .with_context(|| format!("cannot copy `{}` to `{}`", from.display(), to.display()))
    }
}

fn symlink(target: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("cannot link `{}` to `{}`", link.display(), target.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))
}

/// A fresh ID for a machine or a boot: 128 random bits as 32 lowercase hex
/// digits, marked as a version 4 UUID like `systemd-id128 new` does.
pub(crate) fn new_id128() -> Result<String> {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read `/dev/urandom`")?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `0123…` as `/proc/sys/kernel/random/boot_id` shows it: `01234567-89ab-…`.
fn uuid_form(id: &str) -> String {
    [&id[..8], &id[8..12], &id[12..16], &id[16..20], &id[20..]].join("-")
}

/// Removes the host's `/tmp/systemd-private-<boot id>-*` and
/// `/var/tmp/systemd-private-<boot id>-*`: the `PrivateTmp=` directories of a
/// sandbox's units. systemd removes them when a unit stops, but not when the
/// sandbox is killed. The sandbox's own boot ID is in their names, so no other
/// sandbox's directories can match.
pub(crate) fn remove_private_tmp_dirs(boot_id: &str) -> Result<()> {
    if boot_id.len() != 32 {
        return Ok(());
    }
    let prefix = format!("systemd-private-{boot_id}-");
    for base in ["/tmp", "/var/tmp"] {
        let Ok(entries) = fs::read_dir(base) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let path = entry.path();
                fs::remove_dir_all(&path)
                    .with_context(|| format!("cannot remove `{}`", path.display()))?;
            }
        }
    }
    Ok(())
}

/// Checks a caller's machine ID: 32 lowercase hex digits, not all zero.
pub(crate) fn check_machine_id(id: &str) -> Result<()> {
    let hex = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !hex || id.bytes().all(|b| b == b'0') {
        bail!("bad machine ID `{id}`: it must be 32 lowercase hex digits, not all zero (like `/etc/machine-id`)");
    }
    Ok(())
}

/// Checks a sandbox name, which becomes its hostname and part of its state
/// directory's and cgroup's names.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !first_ok || !rest_ok || name.len() > 40 {
        bail!("bad sandbox name `{name}`: use 1 to 40 ASCII letters, digits, `-` or `_`, starting with a letter or digit");
    }
    Ok(())
}

/// Checks one `(host, inside)` bind before anything is launched, so that a
/// mistake is a clear error instead of a failed boot. The host path must
/// exist; the inside path must be absolute and not one the sandbox needs. A
/// missing inside path is created without touching the host: directly in the
/// private `/run` (or `/tmp`, `/var/tmp` when private), elsewhere in a private
/// overlay of its nearest existing ancestor, which must then be a directory
/// with nothing mounted below it (and not `/`, nor in the shared `/tmp`).
pub(crate) fn check_bind(host: &Path, inside: &Path, private_tmp: bool) -> Result<()> {
    if !host.exists() {
        bail!(
            "cannot bind `{}` into the sandbox: it does not exist",
            host.display()
        );
    }
    let text = inside.to_string_lossy();
    if !inside.is_absolute()
        || inside
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        || text.contains('\n')
    {
        bail!(
            "bad bind target `{}`: it must be an absolute path without `..`",
            inside.display()
        );
    }
    let under = |dir: &str| inside.starts_with(dir) && inside != Path::new(dir);
    let vital = [
        "/",
        "/run",
        "/dev",
        "/proc",
        "/sys",
        "/etc",
        "/usr",
        "/etc/machine-id",
        "/etc/hostname",
    ];
    if vital.iter().any(|v| inside == Path::new(v))
        || ["/proc", "/sys", "/etc/systemd"]
            .iter()
            .any(|d| inside.starts_with(d))
    {
        bail!(
            "cannot bind over `{}`: the sandbox itself needs it",
            inside.display()
        );
    }
    let private = under("/run") || (private_tmp && (under("/tmp") || under("/var/tmp")));
    if private || inside.exists() {
        return Ok(());
    }
    if under("/tmp") || under("/var/tmp") {
        bail!(
            "bind target `{}` does not exist, and the sandbox shares the host's `/tmp`\nhint: set `private_tmp: true`, or bind to a path under `/run`",
            inside.display()
        );
    }
    // The mount point will be made in an overlay of its nearest existing
    // ancestor, inside the sandbox only.
    let parent = inside
        .ancestors()
        .skip(1)
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let unfit = if parent == Path::new("/")
        || ["/dev", "/proc", "/sys", "/run"]
            .iter()
            .any(|d| parent.starts_with(d))
    {
        Some("the sandbox cannot overlay it".to_string())
    } else if !parent.is_dir() {
        Some("it is not a directory".to_string())
    } else if parent.to_string_lossy().contains([',', ':', '\\']) {
        Some("its path has a `,`, `:` or `\\` (overlay options)".to_string())
    } else {
        let mounts: Vec<String> = procs::mounts_under(parent)
            .into_iter()
            .filter(|m| Path::new(m) != parent)
            .collect();
        (!mounts.is_empty()).then(|| {
            format!(
                "file systems are mounted below it ({}), which an overlay would hide",
                mounts.join(", ")
            )
        })
    };
    if let Some(why) = unfit {
        bail!(
            "cannot create the bind target `{}` in the sandbox: its nearest existing parent `{}` cannot get a private overlay: {why}\nhint: bind to an existing path, or to one under `/run`",
            inside.display(),
            parent.display()
        );
    }
    Ok(())
}

/// The state directories' parent.
pub(crate) fn root() -> PathBuf {
    PathBuf::from(super::STATE_ROOT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids_are_fresh_and_well_formed() {
        let a = new_id128().unwrap();
        let b = new_id128().unwrap();
        assert_eq!(uuid_form(&a).len(), 36);
        assert_eq!(uuid_form(&a).replace('-', ""), a);
        assert_ne!(a, b);
        check_machine_id(&a).unwrap();
        assert!(check_machine_id("0".repeat(32).as_str()).is_err());
        assert!(check_machine_id("ABCDEF0123456789abcdef0123456789").is_err());
    }

    #[test]
    fn names_are_checked() {
        check_name("board1").unwrap();
        check_name("a-b_c").unwrap();
        for bad in ["", "-x", "a/b", "a b", "a.b", &"x".repeat(41)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn binds_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        check_bind(dir.path(), Path::new("/run/x"), false).unwrap();
        check_bind(dir.path(), Path::new("/tmp/ferry-nowhere/x"), true).unwrap();
        let err = format!(
            "{:#}",
            check_bind(dir.path(), Path::new("/tmp/ferry-nowhere/x"), false).unwrap_err()
        );
        assert!(err.contains("does not exist"), "{err}");
        // Made in an overlay of `/var/lib` (or `/etc`), never on the host.
        check_bind(dir.path(), Path::new("/var/lib/ferry-nowhere/x"), false).unwrap();
        check_bind(dir.path(), Path::new("/etc/ferry-nowhere"), false).unwrap();
        assert!(check_bind(dir.path(), Path::new("/ferry-nowhere"), false).is_err());
        assert!(check_bind(dir.path(), Path::new("/sys/ferry-nowhere"), false).is_err());
        assert!(check_bind(dir.path(), Path::new("/dev/ferry-nowhere"), false).is_err());
        assert!(check_bind(Path::new("/ferry-nowhere"), Path::new("/run/x"), false).is_err());
        assert!(check_bind(dir.path(), Path::new("run/x"), false).is_err());
        assert!(check_bind(dir.path(), Path::new("/run/../etc"), false).is_err());
        assert!(check_bind(dir.path(), Path::new("/run"), false).is_err());
    }

    #[test]
    fn the_unit_path_is_closed() {
        // A trailing `:` would append the host's unit directories.
        assert!(!UNIT_PATH.ends_with(':') && !UNIT_PATH.contains("::"));
        assert!(!UNIT_PATH.contains("/usr/lib") && !UNIT_PATH.contains("/lib/systemd"));
        assert!(INIT_SCRIPT.contains("SYSTEMD_UNIT_PATH=\"$UNIT_PATH\""));
    }
}
