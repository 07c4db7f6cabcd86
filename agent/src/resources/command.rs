//! The `command` resource: a program run when its guards say so, for what
//! no other kind covers (`occ maintenance:repair`, a database migration).
//!
//! The guards decide whether it is a change: `creates` (a path that exists
//! means done), then `unless` (success means done), then `onlyif` (failure
//! means nothing to do). Guards run in check mode too, so that check mode
//! tells the truth: they must only read, as `test -e`, `grep -q` or
//! `occ status` do. A guard that writes would change the host during a
//! check; that is the role author's promise to keep. Guards and the command
//! run in `cwd` (default `/`), with the agent's environment, never through a
//! shell.

use clou_protocol::resource::CommandSpec;

use super::{Ctx, Differences, Error, Kind, absolute};
use crate::system::{Cmd, Output};

impl Kind for CommandSpec {
    type Change = String;

    fn differences(&self, ctx: &mut Ctx<'_>) -> Result<Differences<String>, Error> {
        let run = build(self, &self.argv, "argv")?;
        if let Some(path) = &self.creates {
            let path = absolute(path)?;
            let exists = ctx
                .sys
                .stat(path)
                .map_err(Error::io(format!("cannot stat {}", path.display())))?
                .is_some();
            // In check mode an earlier resource may create it first; the
            // real run would then skip the command.
            if exists || ctx.path_planned(path) {
                return Ok(Differences::none());
            }
        }
        if let Some(unless) = &self.unless {
            let guard = build(self, unless, "unless")?;
            if ctx.run(&guard).map_err(|e| hide(ctx, &guard, e))?.success() {
                return Ok(Differences::none());
            }
        }
        if let Some(onlyif) = &self.onlyif {
            let guard = build(self, onlyif, "onlyif")?;
            if !ctx.run(&guard).map_err(|e| hide(ctx, &guard, e))?.success() {
                return Ok(Differences::none());
            }
        }
        Ok(Differences::of(vec![format!("run {}", shown(ctx, &run))]))
    }

    fn apply(&self, ctx: &mut Ctx<'_>, _diff: &Differences<String>) -> Result<(), Error> {
        let cmd = build(self, &self.argv, "argv")?;
        let out = ctx.run(&cmd).map_err(|err| hide(ctx, &cmd, err))?;
        if out.success() {
            Ok(())
        } else {
            Err(failed(ctx, &cmd, &out))
        }
    }
}

/// The command or one of its guards, in the resource's directory.
fn build(spec: &CommandSpec, argv: &[String], field: &str) -> Result<Cmd, Error> {
    if argv.first().is_none_or(|program| program.is_empty()) {
        return Err(Error::Invalid(format!(
            "command: `{field}` needs a program and its arguments, e.g. [test, -e, /path]"
        )));
    }
    let cwd = match &spec.cwd {
        Some(cwd) => Some(absolute(cwd)?.display().to_string()),
        None => None,
    };
    Ok(Cmd {
        cwd,
        timeout: Some(std::time::Duration::from_secs(
            spec.timeout.unwrap_or(DEFAULT_TIMEOUT),
        )),
        ..Cmd::new(argv.iter().cloned())
    })
}

/// Seconds a command may run when its spec says nothing: long enough for a
/// database migration, short enough that a hung one frees the host's lock.
pub const DEFAULT_TIMEOUT: u64 = 1800;

/// The command as said in change lines and errors: without its arguments
/// when the resource is sensitive (they may hold a password).
fn shown(ctx: &Ctx<'_>, cmd: &Cmd) -> String {
    if ctx.sensitive {
        let program = cmd.argv.first().map(String::as_str).unwrap_or_default();
        format!("{program} (arguments hidden)")
    } else {
        cmd.display()
    }
}

fn failed(ctx: &Ctx<'_>, cmd: &Cmd, out: &Output) -> Error {
    Error::Command {
        command: shown(ctx, cmd),
        status: match out.code {
            Some(code) => format!("exit {code}"),
            None if out.timed_out() => format!(
                "killed after {} s, its time limit; raise `timeout` if it needs longer",
                cmd.timeout.map(|t| t.as_secs()).unwrap_or_default()
            ),
            None => "killed by a signal".to_owned(),
        },
        tail: out.tail(),
    }
}

fn hide(ctx: &Ctx<'_>, cmd: &Cmd, err: Error) -> Error {
    match err {
        Error::Command { status, tail, .. } => Error::Command {
            command: shown(ctx, cmd),
            status,
            tail,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{RunState, converge};
    use crate::system::testing::Recorder;

    fn spec(argv: &[&str]) -> CommandSpec {
        CommandSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            creates: None,
            unless: None,
            onlyif: None,
            cwd: None,
            timeout: None,
        }
    }

    fn argv(words: &[&str]) -> Option<Vec<String>> {
        Some(words.iter().map(|s| s.to_string()).collect())
    }

    fn run_with(
        sys: &Recorder,
        check: bool,
        sensitive: bool,
        state: &mut RunState,
        spec: &CommandSpec,
    ) -> Result<Vec<String>, Error> {
        let mut ctx = Ctx {
            sys,
            check,
            want_diff: false,
            sensitive,
            run: state,
        };
        converge(spec, &mut ctx).map(|o| o.changes)
    }

    fn run(sys: &Recorder, check: bool, spec: &CommandSpec) -> Result<Vec<String>, Error> {
        run_with(sys, check, false, &mut RunState::default(), spec)
    }

    #[test]
    fn without_guards_it_runs_every_time_in_its_directory() {
        let sys = Recorder::new();
        let spec = CommandSpec {
            cwd: Some("/srv/nextcloud".into()),
            ..spec(&["occ", "maintenance:repair"])
        };
        assert_eq!(
            run(&sys, false, &spec).unwrap(),
            vec!["run occ maintenance:repair"]
        );
        assert_eq!(
            run(&sys, false, &spec).unwrap(),
            vec!["run occ maintenance:repair"]
        );
        let ran = sys.ran.borrow();
        assert_eq!(ran.len(), 2);
        assert_eq!(ran[0].cwd.as_deref(), Some("/srv/nextcloud"));
    }

    #[test]
    fn existing_creates_path_skips_it() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("done");
        let spec = CommandSpec {
            creates: Some(done.display().to_string()),
            ..spec(&["touch", &done.display().to_string()])
        };
        let sys = Recorder::new();
        assert_eq!(run(&sys, false, &spec).unwrap().len(), 1);
        std::fs::write(&done, "").unwrap();
        let sys = Recorder::new();
        assert_eq!(run(&sys, false, &spec).unwrap(), Vec::<String>::new());
        assert!(sys.commands().is_empty());
    }

    #[test]
    fn creates_path_planned_earlier_skips_it_in_check_mode() {
        let sys = Recorder::new();
        let mut state = RunState::default();
        state.planned.insert("path:/srv/paheko".into());
        let spec = CommandSpec {
            creates: Some("/srv/paheko/config.local.php".into()),
            ..spec(&["paheko-setup"])
        };
        assert_eq!(
            run_with(&sys, true, false, &mut state, &spec).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn unless_success_skips_it() {
        for (code, expected) in [(0, 0), (1, 1)] {
            let sys = Recorder::new();
            sys.reply(&["test"], code, "");
            let spec = CommandSpec {
                unless: argv(&["test", "-e", "/srv/nextcloud/.repaired"]),
                ..spec(&["occ", "maintenance:repair"])
            };
            assert_eq!(run(&sys, false, &spec).unwrap().len(), expected);
            assert_eq!(sys.commands()[0], "test -e /srv/nextcloud/.repaired");
            assert_eq!(sys.commands().len(), 1 + expected);
        }
    }

    #[test]
    fn onlyif_failure_skips_it() {
        for (code, expected) in [(1, 0), (0, 1)] {
            let sys = Recorder::new();
            sys.reply(&["grep"], code, "");
            let spec = CommandSpec {
                onlyif: argv(&["grep", "-q", "maintenance", "/srv/nextcloud/config.php"]),
                ..spec(&["occ", "maintenance:repair"])
            };
            assert_eq!(run(&sys, false, &spec).unwrap().len(), expected);
        }
    }

    #[test]
    fn check_mode_runs_the_guards_but_not_the_command() {
        let sys = Recorder::new();
        sys.reply(&["test"], 1, "");
        let spec = CommandSpec {
            unless: argv(&["test", "-e", "/srv/nextcloud/.repaired"]),
            ..spec(&["occ", "maintenance:repair"])
        };
        assert_eq!(
            run(&sys, true, &spec).unwrap(),
            vec!["run occ maintenance:repair"]
        );
        assert_eq!(sys.commands(), vec!["test -e /srv/nextcloud/.repaired"]);
    }

    #[test]
    fn a_command_past_its_timeout_fails_and_says_so() {
        let mut run = RunState::default();
        let mut ctx = Ctx {
            sys: &crate::system::Host,
            check: false,
            want_diff: false,
            sensitive: false,
            run: &mut run,
        };
        let mut slow = spec(&["sleep", "30"]);
        slow.timeout = Some(1);
        let started = std::time::Instant::now();
        let err = converge(&slow, &mut ctx).unwrap_err().to_string();
        assert!(err.contains("killed after 1 s, its time limit"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn failure_is_an_error_with_the_output_tail() {
        let sys = Recorder::new();
        let output = include_str!("testdata/ls-missing-directory-bookworm.txt");
        sys.reply(&["ls"], 2, output);
        let err = run(&sys, false, &spec(&["ls", "/srv/nextcloud"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`ls /srv/nextcloud` failed (exit 2)"), "{err}");
        assert!(err.contains("No such file or directory"), "{err}");
    }

    #[test]
    fn sensitive_arguments_never_reach_change_lines_or_errors() {
        let sys = Recorder::new();
        sys.reply(&["occ"], 1, "");
        let spec = spec(&["occ", "user:add", "--password-from-env", "s3cret"]);
        let mut state = RunState::default();
        let err = run_with(&sys, false, true, &mut state, &spec)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("occ (arguments hidden)"), "{err}");
        let sys = Recorder::new();
        let changes = run_with(&sys, true, true, &mut state, &spec).unwrap();
        assert_eq!(changes, vec!["run occ (arguments hidden)"]);
    }

    #[test]
    fn empty_argv_and_relative_paths_are_refused() {
        for spec in [
            spec(&[]),
            spec(&[""]),
            CommandSpec {
                unless: argv(&[]),
                ..spec(&["true"])
            },
            CommandSpec {
                creates: Some("relative/path".into()),
                ..spec(&["true"])
            },
            CommandSpec {
                cwd: Some("srv".into()),
                ..spec(&["true"])
            },
        ] {
            let sys = Recorder::new();
            assert!(
                matches!(run(&sys, false, &spec), Err(Error::Invalid(_))),
                "{spec:?}"
            );
            assert!(sys.commands().is_empty());
        }
    }
}
