//! Running local programs with errors that say what was run.
//!
//! Commands are always argv vectors. A failure names the program, its
//! arguments and the last lines of what it printed on stderr.

use std::fmt;
use std::process::{Command, Output, Stdio};

/// A program that could not be started or did not succeed.
#[derive(Debug, thiserror::Error)]
pub struct CommandError {
    /// The command line, for the message.
    pub argv: String,
    /// Exit status, or `None` when it could not start or was killed.
    pub status: Option<i32>,
    /// Why it could not start, or the tail of its stderr.
    pub detail: String,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(code) => write!(f, "`{}` exited with status {code}", self.argv)?,
            None => write!(f, "`{}` failed", self.argv)?,
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// The command line of `cmd`, quoted enough to be read and pasted.
pub fn display(cmd: &Command) -> String {
    let mut out = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&shell_quote(&arg.to_string_lossy()));
    }
    out
}

/// `arg` quoted for a POSIX shell, left bare when nothing in it needs it.
pub fn shell_quote(arg: &str) -> String {
    if arg.is_empty()
        || arg.contains(|c: char| c.is_whitespace() || "'\"$`\\;&|<>*?(){}#~".contains(c))
    {
        format!("'{}'", arg.replace('\'', r"'\''"))
    } else {
        arg.to_owned()
    }
}

/// Runs `cmd` to completion, capturing its output; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<Output, CommandError> {
    let argv = display(cmd);
    tracing::debug!(command = %argv, "running");
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|err| CommandError {
            argv: argv.clone(),
            status: None,
            detail: err.to_string(),
        })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(CommandError {
            argv,
            status: output.status.code(),
            detail: tail(&String::from_utf8_lossy(&output.stderr), 8),
        })
    }
}

/// Runs `cmd` and returns its stdout as text.
pub fn stdout(cmd: &mut Command) -> Result<String, CommandError> {
    run(cmd).map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last `n` non-empty lines of `text`, joined with " | ".
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Whether `program` is found on `PATH` (or is an existing absolute path).
pub fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Asks `question [y/N]` on the terminal; refuses (an error saying to pass
/// `--yes`) when stdin is not one, so that nothing is done unasked.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!(
            "clou asks before it changes anything, and stdin is not a terminal\n  \
             hint: pass --yes once you have read the plan above"
        );
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "oui"))
}

/// Reads a password: the first line of stdin when `from_stdin`, otherwise
/// from the terminal with echo off. It is never an argument: those show
/// in `ps` and in the shell's history.
pub fn read_password(prompt: &str, from_stdin: bool) -> anyhow::Result<String> {
    use anyhow::Context;
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    use std::io::{BufRead, Write};
    let mut line = String::new();
    if from_stdin {
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
    } else {
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .context(
                "no terminal to ask the password on\n  hint: pipe it in with --password-stdin",
            )?;
        let before = tcgetattr(&tty).context("cannot read the terminal's settings")?;
        let mut quiet = before.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&tty, SetArg::TCSANOW, &quiet).context("cannot turn the echo off")?;
        let mut out = &tty;
        let asked = write!(out, "{prompt}")
            .and_then(|()| out.flush())
            .and_then(|()| std::io::BufReader::new(&tty).read_line(&mut line));
        // The echo comes back whatever happened.
        let _ = tcsetattr(&tty, SetArg::TCSANOW, &before);
        let _ = writeln!(out);
        asked.context("cannot read the password")?;
    }
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        anyhow::bail!("the password is empty");
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_what_a_shell_would_split() {
        let mut cmd = Command::new("echo");
        cmd.args(["a b", "it's", "plain"]);
        assert_eq!(display(&cmd), r"echo 'a b' 'it'\''s' plain");
    }

    #[test]
    fn failure_names_the_command_and_its_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo boom >&2; exit 3"])).unwrap_err();
        assert_eq!(err.status, Some(3));
        assert!(err.to_string().contains("boom"), "{err}");
        assert!(err.to_string().contains("sh -c"), "{err}");
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_panic() {
        let err = run(&mut Command::new("/nonexistent/clou-test")).unwrap_err();
        assert_eq!(err.status, None);
    }
}
