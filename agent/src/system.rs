//! The one seam between the agent and the operating system.
//!
//! Every resource reads and changes the host through [`System`]: running a
//! program (an argv, never a shell string), reading, stat-ing and writing
//! files. [`Host`] is the real thing; unit tests use [`testing::Recorder`],
//! which does file work for real under a temporary directory but records the
//! programs it is asked to run and answers them from a script.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// A program to run: argv, optional stdin, extra environment, directory,
/// and how long it may take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmd {
    pub argv: Vec<String>,
    pub stdin: Option<Vec<u8>>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    /// Killed (with every process it started) after this long.
    pub timeout: Option<std::time::Duration>,
}

impl Cmd {
    /// A command from its argv.
    pub fn new<I, S>(argv: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Cmd::default()
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Cmd {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Feeds this to the program's stdin.
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(input.into());
        self
    }

    /// The argv as one line, for messages.
    pub fn display(&self) -> String {
        self.argv.join(" ")
    }
}

/// A unit's last ten journal lines (`journalctl -u UNIT -n 10 -o cat`):
/// what an admin reads first when a service fails. `Err` says why there
/// are none.
pub fn journal_tail(sys: &dyn System, unit: &str) -> Result<String, String> {
    let cmd = Cmd::new([
        "journalctl",
        "-u",
        unit,
        "-n",
        "10",
        "--no-pager",
        "-o",
        "cat",
    ])
    .env("LC_ALL", "C");
    match sys.run(&cmd) {
        Ok(out) if out.success() => Ok(out.stdout_text().trim_end().to_owned()),
        Ok(out) => Err(format!("journalctl failed: {}", out.tail())),
        Err(e) => Err(e.to_string()),
    }
}

/// What a finished program left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// Whether the program was killed for running past its time limit.
    pub fn timed_out(&self) -> bool {
        self.code.is_none() && self.stderr.ends_with(TIMED_OUT.as_bytes())
    }

    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last lines of stderr (or stdout when stderr is empty), for
    /// error messages.
    pub fn tail(&self) -> String {
        let text = if self.stderr.iter().all(u8::is_ascii_whitespace) {
            &self.stdout
        } else {
            &self.stderr
        };
        let text = String::from_utf8_lossy(text);
        let lines: Vec<&str> = text.trim_end().lines().collect();
        lines[lines.len().saturating_sub(6)..].join("\n")
    }
}

/// What `lstat` says about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: FileKind,
    /// Permission bits, including setuid/setgid/sticky (mode & 0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub len: u64,
}

/// The type of a filesystem entry (symlinks are not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

impl FileKind {
    /// As said in messages.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::File => "a regular file",
            FileKind::Dir => "a directory",
            FileKind::Symlink => "a symbolic link",
            FileKind::Other => "a special file",
        }
    }
}

/// Owner, group and mode for something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perms {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// Everything the agent may do to the host.
pub trait System {
    /// Runs a program to completion. An `Err` means it could not be started.
    fn run(&self, cmd: &Cmd) -> io::Result<Output>;

    /// The whole content of a file, `None` when it does not exist.
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// A small text file (under /proc, /sys, /etc), `None` when it cannot
    /// be read: probes treat an unreadable file as nothing to say.
    fn read_text(&self, path: &str) -> Option<String> {
        self.read(Path::new(path))
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// `lstat`, `None` when nothing is there.
    fn stat(&self, path: &Path) -> io::Result<Option<Stat>> {
        match fs::symlink_metadata(path) {
            Ok(meta) => Ok(Some(stat_of(&meta))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// When a file was last modified, `None` when it does not exist.
    fn modified(&self, path: &Path) -> io::Result<Option<std::time::SystemTime>> {
        match fs::metadata(path) {
            Ok(meta) => meta.modified().map(Some),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Where a symbolic link points.
    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        fs::read_link(path)
    }

    /// Replaces (or creates) a file atomically: writes a temporary file in
    /// the same directory, fsyncs it, gives it `perms`, renames it over
    /// `path` and fsyncs the directory. Readers see the old or the new
    /// content, never a mix, even if the agent dies halfway.
    fn write_atomic(&self, path: &Path, content: &[u8], perms: Perms) -> io::Result<()> {
        let dir = path
            .parent()
            .ok_or_else(|| invalid("a file path needs a parent directory"))?;
        let name = path
            .file_name()
            .ok_or_else(|| invalid("a file path needs a file name"))?;
        let tmp = dir.join(temp_name(name));
        let result = (|| {
            // Private until it has its owner and mode: the content may be
            // a secret meant for one user.
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(content)?;
            std::os::unix::fs::fchown(&file, Some(perms.uid), Some(perms.gid))?;
            // chown clears setuid/setgid bits, so the mode comes after it.
            file.set_permissions(fs::Permissions::from_mode(perms.mode))?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Changes owner and/or group (of the link itself for a symlink).
    fn chown(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        std::os::unix::fs::lchown(path, uid, gid)
    }

    /// Sets the permission bits.
    fn chmod(&self, path: &Path, mode: u32) -> io::Result<()> {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }

    /// Creates one directory (its parent must exist) with `perms`.
    fn create_dir(&self, path: &Path, perms: Perms) -> io::Result<()> {
        fs::create_dir(path)?;
        std::os::unix::fs::chown(path, Some(perms.uid), Some(perms.gid))?;
        fs::set_permissions(path, fs::Permissions::from_mode(perms.mode))
    }

    /// Removes a file or a symbolic link.
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    /// Removes an empty directory.
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    /// Removes a directory and everything in it.
    fn remove_tree(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }

    /// Creates or replaces a symbolic link atomically (a new link beside it,
    /// then a rename over the old one).
    fn symlink_atomic(&self, target: &Path, path: &Path) -> io::Result<()> {
        let dir = path
            .parent()
            .ok_or_else(|| invalid("a link path needs a parent directory"))?;
        let name = path
            .file_name()
            .ok_or_else(|| invalid("a link path needs a file name"))?;
        let tmp = dir.join(temp_name(name));
        std::os::unix::fs::symlink(target, &tmp)?;
        fs::rename(&tmp, path).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }

    /// Renames within one filesystem.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    /// The names in a directory, sorted.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
}

/// Appended to the stderr of a program killed for its time limit.
pub const TIMED_OUT: &str = "\n(clou: killed after its time limit)";

/// The real host.
#[derive(Debug, Default, Clone, Copy)]
pub struct Host;

impl System for Host {
    fn run(&self, cmd: &Cmd) -> io::Result<Output> {
        let (program, args) = cmd
            .argv
            .split_first()
            .ok_or_else(|| invalid("empty argv"))?;
        let mut command = std::process::Command::new(program);
        command
            .args(args)
            .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(cmd.cwd.as_deref().unwrap_or("/"))
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group, so that a time limit kills everything it
        // started, not only the first process.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn()?;
        if let (Some(input), Some(mut pipe)) = (&cmd.stdin, child.stdin.take()) {
            // A program that exits without reading all its input is not an
            // error of ours: its exit code says what happened.
            let _ = pipe.write_all(input);
        }
        let Some(limit) = cmd.timeout else {
            let out = child.wait_with_output()?;
            return Ok(Output {
                code: out.status.code(),
                stdout: out.stdout,
                stderr: out.stderr,
            });
        };
        // Read both pipes on threads while the clock runs.
        let reader = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = reader(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        );
        let stderr = reader(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        );
        let deadline = std::time::Instant::now() + limit;
        let mut killed = false;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if std::time::Instant::now() >= deadline && !killed {
                // The whole group: a shell and what it started. `kill` is
                // procps', on every Debian; the direct child is killed too
                // in case it is not there.
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                let _ = child.kill();
                killed = true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let stdout = stdout.join().unwrap_or_default();
        let mut stderr = stderr.join().unwrap_or_default();
        if killed {
            stderr.extend_from_slice(TIMED_OUT.as_bytes());
        }
        Ok(Output {
            code: if killed { None } else { status.code() },
            stdout,
            stderr,
        })
    }
}

/// `Stat` from std metadata.
pub fn stat_of(meta: &fs::Metadata) -> Stat {
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    };
    Stat {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        len: meta.len(),
    }
}

fn temp_name(name: &OsStr) -> String {
    format!(
        ".{}.clou-tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    )
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.to_owned())
}

/// A `System` for unit tests.
pub mod testing {
    use std::cell::RefCell;

    use super::*;

    /// Does file work for real (give it paths under a temporary directory),
    /// records every program it is asked to run, and answers each from the
    /// first scripted reply whose argv prefix matches (exit 0 and no output
    /// when none does).
    #[derive(Debug, Default)]
    pub struct Recorder {
        pub ran: RefCell<Vec<Cmd>>,
        replies: RefCell<Vec<(Vec<String>, Output)>>,
    }

    impl Recorder {
        pub fn new() -> Recorder {
            Recorder::default()
        }

        /// Answers programs whose argv starts with `prefix`.
        pub fn reply(&self, prefix: &[&str], code: i32, stdout: &str) {
            self.replies.borrow_mut().push((
                prefix.iter().map(|s| s.to_string()).collect(),
                Output {
                    code: Some(code),
                    stdout: stdout.as_bytes().to_vec(),
                    stderr: Vec::new(),
                },
            ));
        }

        /// The argv of every program run so far, each joined by spaces.
        pub fn commands(&self) -> Vec<String> {
            self.ran.borrow().iter().map(Cmd::display).collect()
        }
    }

    impl System for Recorder {
        fn run(&self, cmd: &Cmd) -> io::Result<Output> {
            self.ran.borrow_mut().push(cmd.clone());
            let replies = self.replies.borrow();
            let reply = replies
                .iter()
                .find(|(prefix, _)| cmd.argv.starts_with(prefix))
                .map(|(_, out)| out.clone())
                .unwrap_or(Output {
                    code: Some(0),
                    ..Output::default()
                });
            Ok(reply)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Perms {
        Perms {
            uid: fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0),
            gid: fs::metadata("/proc/self").map(|m| m.gid()).unwrap_or(0),
            mode: 0o640,
        }
    }

    #[test]
    fn atomic_write_replaces_content_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("motd");
        fs::write(&path, "old\n").unwrap();
        Host.write_atomic(&path, b"new\n", me()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new\n");
        let stat = Host.stat(&path).unwrap().unwrap();
        assert_eq!((stat.kind, stat.mode), (FileKind::File, 0o640));
        // No temporary file is left behind.
        assert_eq!(Host.list_dir(dir.path()).unwrap(), vec!["motd"]);
    }

    #[test]
    fn atomic_symlink_replaces_the_old_link() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("current");
        Host.symlink_atomic(Path::new("releases/1"), &link).unwrap();
        Host.symlink_atomic(Path::new("releases/2"), &link).unwrap();
        assert_eq!(Host.read_link(&link).unwrap(), Path::new("releases/2"));
        assert_eq!(Host.list_dir(dir.path()).unwrap(), vec!["current"]);
    }

    #[test]
    fn run_reports_exit_code_and_output() {
        let out = Host
            .run(&Cmd::new(["sh", "-c", "cat; echo err >&2; exit 3"]).stdin("in"))
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, b"in");
        assert_eq!(out.tail(), "err");
    }

    #[test]
    fn a_command_past_its_time_limit_is_killed_with_what_it_started() {
        let started = std::time::Instant::now();
        let cmd = Cmd {
            timeout: Some(std::time::Duration::from_millis(300)),
            // The shell starts a child that would keep the pipes open.
            ..Cmd::new(["sh", "-c", "sleep 30 & sleep 30; echo never"])
        };
        let out = Host.run(&cmd).unwrap();
        assert!(out.timed_out(), "{out:?}");
        assert!(!out.stdout_text().contains("never"));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // A quick command is not affected.
        let quick = Cmd {
            timeout: Some(std::time::Duration::from_secs(5)),
            ..Cmd::new(["sh", "-c", "echo out; echo err >&2; exit 3"])
        };
        let out = Host.run(&quick).unwrap();
        assert_eq!((out.code, out.stdout_text().as_str()), (Some(3), "out\n"));
        assert!(!out.timed_out());
    }

    #[test]
    fn recorder_answers_from_its_script() {
        let sys = testing::Recorder::new();
        sys.reply(&["dpkg-query"], 1, "nope");
        let out = sys.run(&Cmd::new(["dpkg-query", "-W", "x"])).unwrap();
        assert_eq!((out.code, out.stdout_text().as_str()), (Some(1), "nope"));
        assert!(sys.run(&Cmd::new(["true"])).unwrap().success());
        assert_eq!(sys.commands(), vec!["dpkg-query -W x", "true"]);
    }
}
