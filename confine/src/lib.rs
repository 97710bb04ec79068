//! Confinement of the programs mirror-sync runs (rsync on the master and the slaves, and the
//! master's rsync daemon): the `mirror-confine` helper restricts itself with Landlock, then execs
//! the program, so the kernel lets it write only beneath the directories it was given and read only
//! those, the read-only paths it was given, and what a dynamically linked program needs to start,
//! resolve names and users (shared libraries, locale data, a few files of `/etc`).
//!
//! The restriction is applied in the helper, never in the master or slave process: they stay free
//! to write their database and logs. A restricted process cannot lift the restriction, and it
//! passes to every process it forks (rsync's receiver and generator, the daemon's workers).
//!
//! No device node, FIFO or socket can be made in a confined tree, whoever runs the helper.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};

/// The helper's program name, looked up beside the running binary, then in `PATH`.
pub const HELPER_NAME: &str = "mirror-confine";

/// What a dynamically linked program (rsync) reads to start and to resolve names, users and
/// locales. Paths that do not exist here are skipped.
pub const SYSTEM_READ: &[&str] = &[
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib32",
    "/usr/libx32",
    "/lib",
    "/lib64",
    "/lib32",
    "/usr/share/locale",
    "/usr/share/zoneinfo",
    "/etc/ld.so.cache",
    "/etc/ld.so.preload",
    "/etc/ld.so.conf",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/localtime",
    "/dev/urandom",
];

/// Readable and writable whatever the policy: rsync and the daemon redirect to it.
const DEV_NULL: &str = "/dev/null";

/// The Landlock ABI whose file-system rights are handled (ABI 5 added the last of them, ioctl on
/// devices); signal and abstract-socket scoping come with ABI 6 and are asked for in best effort.
const FS_ABI: ABI = ABI::V5;

/// What a confined program may touch, besides [`SYSTEM_READ`] and its own binary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Everything beneath these may be read, created, changed and removed (no device nodes); a
    /// file here may be read and written.
    pub write: Vec<PathBuf>,
    /// Everything beneath these may be read (directories listed, files read).
    pub read: Vec<PathBuf>,
}

impl Policy {
    /// The helper's argv: `--rw DIR ... --ro PATH ... -- PROGRAM ARGS...`. The program is given as
    /// it will be executed: absolute, or looked up in `PATH` by the helper.
    pub fn helper_args<S: AsRef<OsStr>>(&self, program: &Path, args: &[S]) -> Vec<OsString> {
        let mut out = Vec::with_capacity(2 * (self.write.len() + self.read.len()) + args.len() + 2);
        for (flag, paths) in [("--rw", &self.write), ("--ro", &self.read)] {
            for p in paths {
                out.push(flag.into());
                out.push(p.as_os_str().to_owned());
            }
        }
        out.push("--".into());
        out.push(program.as_os_str().to_owned());
        out.extend(args.iter().map(|a| a.as_ref().to_owned()));
        out
    }
}

/// What a started program may use, set by the helper before it starts it (and so inherited by
/// every process the program forks): a lower CPU priority, and an address-space limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// `--nice N`: the program's nice value (0 to 19; only ever lowers the priority).
    pub nice: Option<u8>,
    /// `--memory BYTES`: `RLIMIT_AS`, soft and hard: an allocation beyond it fails.
    pub memory_bytes: Option<u64>,
    /// `--ionice idle` or `--ionice best-effort:N`: the I/O scheduling class (never real-time).
    pub io: Option<IoClass>,
}

/// An I/O scheduling class a run may be put in: only ever lower than the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoClass {
    /// Disk time only when no one else wants it.
    Idle,
    /// The default class at level 0 (highest) to 7 (lowest).
    BestEffort(u8),
}

impl IoClass {
    /// `idle`, `best-effort` (level 4, the default's) or `best-effort:N`.
    pub fn parse(text: &str) -> Option<IoClass> {
        match text {
            "idle" => Some(IoClass::Idle),
            "best-effort" => Some(IoClass::BestEffort(4)),
            _ => {
                let level = text.strip_prefix("best-effort:")?.parse::<u8>().ok()?;
                (level <= 7).then_some(IoClass::BestEffort(level))
            }
        }
    }

    fn text(self) -> String {
        match self {
            IoClass::Idle => "idle".into(),
            IoClass::BestEffort(n) => format!("best-effort:{n}"),
        }
    }
}

/// util-linux's `ionice`, which sets the class of a process by its id: neither `nix` nor `rustix`
/// wraps `ioprio_set(2)`, and this workspace forbids `unsafe`.
const IONICE: &str = "/usr/bin/ionice";

impl Limits {
    fn args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = Vec::new();
        if let Some(n) = self.nice {
            out.extend(["--nice".into(), n.to_string().into()]);
        }
        if let Some(m) = self.memory_bytes {
            out.extend(["--memory".into(), m.to_string().into()]);
        }
        if let Some(io) = self.io {
            out.extend(["--ionice".into(), io.text().into()]);
        }
        out
    }
}

/// Applies `limits` to this process (before it execs or starts the program).
pub fn apply_limits(limits: &Limits) -> Result<(), String> {
    if let Some(n) = limits.nice {
        rustix::process::setpriority_process(None, i32::from(n)).map_err(|e| format!("cannot set nice {n}: {e}"))?;
    }
    if let Some(m) = limits.memory_bytes {
        let limit = rustix::process::Rlimit { current: Some(m), maximum: Some(m) };
        rustix::process::setrlimit(rustix::process::Resource::As, limit)
            .map_err(|e| format!("cannot limit memory to {m} bytes: {e}"))?;
    }
    if let Some(io) = limits.io {
        let (class, level) = match io {
            IoClass::Idle => ("3", None),
            IoClass::BestEffort(n) => ("2", Some(n.to_string())),
        };
        let mut ionice = std::process::Command::new(IONICE);
        ionice.args(["-c", class]);
        if let Some(level) = level {
            ionice.args(["-n", &level]);
        }
        let done = ionice
            .args(["-p", &std::process::id().to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("cannot run {IONICE}: {e}"))?;
        if !done.success() {
            return Err(format!("{IONICE} could not set the I/O class {}", io.text()));
        }
    }
    Ok(())
}

/// How the helper starts a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// `None` (`--unconfined`): no Landlock, the parent-death guard only.
    pub policy: Option<Policy>,
    /// `--parent PID`: the helper stays, as the program's parent, and kills the program and what
    /// it forked (its process group) when PID, the helper's parent, dies; if PID has died already,
    /// the program is not started.
    pub parent: Option<u32>,
    /// Applied confined or not.
    pub limits: Limits,
}

impl Launch {
    /// The helper's argv for `program args`.
    pub fn helper_args<S: AsRef<OsStr>>(&self, program: &Path, args: &[S]) -> Vec<OsString> {
        let mut out: Vec<OsString> = self.limits.args();
        if let Some(pid) = self.parent {
            out.push("--parent".into());
            out.push(pid.to_string().into());
        }
        match &self.policy {
            Some(policy) => out.extend(policy.helper_args(program, args)),
            None => {
                out.push("--unconfined".into());
                out.extend(Policy::default().helper_args(program, args));
            }
        }
        out
    }
}

/// The helper's command line, parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Invocation {
    /// `--probe`: restrict an empty process and say whether it worked.
    Probe,
    Run {
        launch: Launch,
        program: OsString,
        args: Vec<OsString>,
    },
}

pub fn parse_args(mut argv: impl Iterator<Item = OsString>) -> Result<Invocation, String> {
    let mut policy = Policy::default();
    let (mut unconfined, mut parent) = (false, None);
    let mut limits = Limits::default();
    loop {
        let Some(flag) = argv.next() else {
            return Err("usage: mirror-confine [--parent PID] [--unconfined | [--rw DIR]... [--ro PATH]...] \
                        -- PROGRAM [ARG]..."
                .into());
        };
        match flag.as_bytes() {
            b"--probe" => return Ok(Invocation::Probe),
            b"--" => break,
            b"--unconfined" => unconfined = true,
            b"--parent" => {
                let pid = argv.next().and_then(|p| p.to_str().and_then(|p| p.parse::<u32>().ok()));
                parent = Some(pid.filter(|p| *p > 1).ok_or("--parent needs a process id")?);
            }
            b"--nice" => {
                let n = argv.next().and_then(|p| p.to_str().and_then(|p| p.parse::<u8>().ok()));
                limits.nice = Some(n.filter(|n| *n <= 19).ok_or("--nice needs 0 to 19")?);
            }
            b"--memory" => {
                let m = argv.next().and_then(|p| p.to_str().and_then(|p| p.parse::<u64>().ok()));
                limits.memory_bytes =
                    Some(m.filter(|m| *m >= 1 << 20).ok_or("--memory needs a byte count of 1 MiB or more")?);
            }
            b"--ionice" => {
                let class = argv.next().and_then(|c| c.to_str().and_then(IoClass::parse));
                limits.io = Some(class.ok_or("--ionice needs idle, best-effort or best-effort:0-7")?);
            }
            b"--rw" | b"--ro" => {
                let path = argv.next().ok_or_else(|| format!("{} needs a path", flag.to_string_lossy()))?;
                let path = PathBuf::from(path);
                if !path.is_absolute() {
                    return Err(format!("{}: {} is not absolute", flag.to_string_lossy(), path.display()));
                }
                if flag == "--rw" { policy.write.push(path) } else { policy.read.push(path) }
            }
            _ => return Err(format!("unknown argument {}", flag.to_string_lossy())),
        }
    }
    if unconfined && policy != Policy::default() {
        return Err("--unconfined takes no --rw or --ro".into());
    }
    let program = argv.next().ok_or("no program after --")?;
    let launch = Launch { policy: (!unconfined).then_some(policy), parent, limits };
    Ok(Invocation::Run { launch, program, args: argv.collect() })
}

/// Checks that our parent is still `parent` (it may have died between starting us and now).
pub fn check_parent(parent: u32) -> Result<(), String> {
    let now = nix::unistd::getppid().as_raw();
    if u32::try_from(now).ok() != Some(parent) {
        return Err(format!("the parent process {parent} is gone"));
    }
    Ok(())
}

/// How often the supervising helper checks that its parent is alive.
const PARENT_CHECK: std::time::Duration = std::time::Duration::from_millis(50);

/// Runs `command` as a child in our process group and waits for it; if `parent` (ours) dies first,
/// kills the whole group: the program and every process it forked (rsync's receiver, the daemon's
/// workers), not only the program as a parent-death signal would. Ends as the program ended.
pub fn supervise(mut command: std::process::Command, parent: u32) -> std::process::ExitCode {
    use nix::sys::signal::{Signal, killpg, raise};
    use std::os::unix::process::ExitStatusExt;
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mirror-confine: cannot start {:?}: {e}", command.get_program());
            return std::process::ExitCode::from(126);
        }
    };
    // The parent is watched beside the wait, so that the program's end is seen at once (a poll of
    // the child added up to 50 ms to every run).
    std::thread::spawn(move || {
        loop {
            if check_parent(parent).is_err() {
                // Our group: the program, what it forked, and us.
                let _ = killpg(nix::unistd::getpgrp(), Signal::SIGKILL);
                return;
            }
            std::thread::sleep(PARENT_CHECK);
        }
    });
    match child.wait() {
        Ok(status) => {
            if let Some(code) = status.code() {
                return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
            }
            // Killed by a signal: end the same way, so that our parent sees it.
            if let Some(signal) = status.signal().and_then(|n| Signal::try_from(n).ok()) {
                let _ = raise(signal);
            }
            std::process::ExitCode::from(1)
        }
        Err(_) => std::process::ExitCode::from(1),
    }
}

/// How the restriction went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforced {
    /// Every right asked for is enforced.
    Fully,
    /// The file-system rules are enforced, some newer features (scoping) are not.
    Partially,
}

/// Whether this kernel enforces Landlock (its first ABI at least). Creates a ruleset and drops it:
/// nothing is restricted.
pub fn kernel_has_landlock() -> bool {
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .and_then(|r| r.create())
        .is_ok()
}

/// `PATH` lookup for a program given by name.
pub fn resolve_program(program: &OsStr) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 || p.is_absolute() {
        return Some(p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(p)).find(|c| c.is_file())
}

fn is_dir(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_dir())
}

/// Rights on a path: a rule on a file may carry only the rights that apply to files.
fn rule(path: &Path, rights: BitFlags<AccessFs>) -> Result<Option<PathBeneath<PathFd>>, String> {
    let fd = match PathFd::new(path) {
        Ok(fd) => fd,
        Err(_) if !path.exists() => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let rights = if is_dir(path) { rights } else { rights & AccessFs::from_file(FS_ABI) };
    Ok(Some(PathBeneath::new(fd, rights).set_compatibility(CompatLevel::BestEffort)))
}

/// Restricts the calling process (and what it will exec) to `policy`, plus the system paths and
/// `program`. An error when Landlock is not available: the caller must not run unconfined.
pub fn restrict(policy: &Policy, program: Option<&Path>) -> Result<Enforced, String> {
    let all = AccessFs::from_all(FS_ABI);
    let no_nodes = AccessFs::MakeChar | AccessFs::MakeBlock | AccessFs::MakeFifo | AccessFs::MakeSock;
    let write = all & !no_nodes;
    let read = AccessFs::from_read(FS_ABI);
    let mut rules = Vec::new();
    for path in &policy.write {
        // A directory to write beneath (or a file to write, such as a run's log) must exist: a
        // missing one would silently grant nothing.
        if !path.exists() {
            return Err(format!("{} does not exist", path.display()));
        }
        rules.extend(rule(path, write)?);
    }
    for p in policy.read.iter().map(PathBuf::as_path).chain(SYSTEM_READ.iter().map(Path::new)).chain(program) {
        rules.extend(rule(p, read)?);
    }
    rules.extend(rule(Path::new(DEV_NULL), AccessFs::from_file(FS_ABI))?);
    let fail = |e: landlock::RulesetError| format!("Landlock: {e}");
    let ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(fail)?
        .scope(Scope::from_all(ABI::V6))
        .map_err(fail)?
        .create()
        .map_err(fail)?
        .add_rules(rules.into_iter().map(Ok::<_, landlock::RulesetError>))
        .map_err(fail)?;
    let status = ruleset.restrict_self().map_err(fail)?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(Enforced::Fully),
        RulesetStatus::PartiallyEnforced => Ok(Enforced::Partially),
        RulesetStatus::NotEnforced => {
            Err("Landlock is not available in this kernel: refusing to run unconfined".into())
        }
    }
}

/// Finds the helper: the configured path, else beside the running binary (or one directory up,
/// where cargo puts binaries next to a test's `deps/`), else in `PATH`.
pub fn find_helper(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = configured {
        return Some(p.to_path_buf());
    }
    let exe = std::env::current_exe().ok()?;
    let beside = exe.parent().map(|d| d.join(HELPER_NAME));
    let above = exe.parent().and_then(Path::parent).map(|d| d.join(HELPER_NAME));
    beside.into_iter().chain(above).find(|c| c.is_file()).or_else(|| resolve_program(OsStr::new(HELPER_NAME)))
}

/// Runs `helper --probe`: `Ok` with what it printed when the kernel confines, `Err` with why not.
/// Blocking: call it at start, or from a blocking thread.
pub fn probe(helper: &Path) -> Result<String, String> {
    let out = std::process::Command::new(helper)
        .arg("--probe")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", helper.display()))?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    if out.status.success() { Ok(text(&out.stdout)) } else { Err(text(&out.stderr)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> impl Iterator<Item = OsString> {
        s.iter().map(OsString::from).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn arguments_round_trip() {
        let policy = Policy { write: vec!["/srv/m/a".into()], read: vec!["/srv/conf".into()] };
        let argv = policy.helper_args(Path::new("/usr/bin/rsync"), &["-a", "--", "x"]);
        let parsed = parse_args(argv.into_iter()).unwrap();
        let args_after = vec!["-a".into(), "--".into(), "x".into()];
        assert_eq!(
            parsed,
            Invocation::Run {
                launch: Launch { policy: Some(policy.clone()), parent: None, limits: Limits::default() },
                program: "/usr/bin/rsync".into(),
                args: args_after.clone(),
            }
        );
        assert_eq!(parse_args(args(&["--probe"])).unwrap(), Invocation::Probe);
        let limits = Limits { nice: Some(10), memory_bytes: Some(64 << 20), io: Some(IoClass::BestEffort(6)) };
        for launch in [
            Launch { policy: Some(policy), parent: Some(4242), limits },
            Launch { policy: None, parent: Some(7), limits: Limits::default() },
        ] {
            let argv = launch.helper_args(Path::new("/usr/bin/rsync"), &["-a", "--", "x"]);
            let parsed = parse_args(argv.into_iter()).unwrap();
            assert_eq!(parsed, Invocation::Run { launch, program: "/usr/bin/rsync".into(), args: args_after.clone() });
        }
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(parse_args(args(&["--rw", "relative", "--", "x"])).is_err());
        assert!(parse_args(args(&["--rw"])).is_err());
        assert!(parse_args(args(&["--bogus", "--", "x"])).is_err());
        assert!(parse_args(args(&["--rw", "/a"])).is_err());
        assert!(parse_args(args(&["--"])).is_err());
        assert!(parse_args(args(&["--parent", "x", "--", "y"])).is_err());
        assert!(parse_args(args(&["--parent", "1", "--", "y"])).is_err());
        assert!(parse_args(args(&["--unconfined", "--rw", "/a", "--", "y"])).is_err());
    }
}
