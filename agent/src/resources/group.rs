//! The `group` resource: a local group, created with `groupadd` and removed
//! with `groupdel`.
//!
//! A group is found by name in `/etc/group`. Its gid is only chosen at
//! creation: an existing group with another gid is left alone, because
//! renumbering it would orphan every file that carries the old gid.

use clou_protocol::resource::{GroupSpec, Presence};

use super::{Ctx, Differences, Error, Kind};
use crate::system::Cmd;

impl Kind for GroupSpec {
    type Change = String;

    fn differences(&self, ctx: &mut Ctx<'_>) -> Result<Differences<String>, Error> {
        account_name("group", &self.name)?;
        let accounts = ctx.accounts()?;
        let existing = accounts.group(&self.name);
        match (self.state, existing) {
            (Presence::Present, Some(_)) => {
                ctx.plan(format!("group:{}", self.name));
                Ok(Differences::none())
            }
            (Presence::Present, None) => {
                if let Some(gid) = self.gid
                    && let Some(other) = accounts.group_by_gid(gid)
                {
                    return Err(Error::Invalid(format!(
                        "group {}: gid {gid} already belongs to group {}; choose another gid \
                         or drop `gid`",
                        self.name, other.name
                    )));
                }
                ctx.plan(format!("group:{}", self.name));
                let mut what = format!("create group {}", self.name);
                match (self.system, self.gid) {
                    (true, Some(gid)) => what.push_str(&format!(" (system, gid {gid})")),
                    (true, None) => what.push_str(" (system)"),
                    (false, Some(gid)) => what.push_str(&format!(" (gid {gid})")),
                    (false, None) => {}
                }
                Ok(Differences::of(vec![what]))
            }
            (Presence::Absent, Some(group)) => Ok(Differences::of(vec![format!(
                "remove group {} (gid {})",
                self.name, group.gid
            )])),
            (Presence::Absent, None) => Ok(Differences::none()),
        }
    }

    fn apply(&self, ctx: &mut Ctx<'_>, _diff: &Differences<String>) -> Result<(), Error> {
        let cmd = match self.state {
            Presence::Present => {
                let mut argv = vec!["groupadd".to_owned()];
                if self.system {
                    argv.push("--system".to_owned());
                }
                if let Some(gid) = self.gid {
                    argv.extend(["--gid".to_owned(), gid.to_string()]);
                }
                argv.push(self.name.clone());
                Cmd::new(argv)
            }
            // groupdel refuses the primary group of a user and says so.
            Presence::Absent => Cmd::new(["groupdel", self.name.as_str()]),
        };
        ctx.run_ok(&cmd)?;
        Ok(())
    }
}

/// Refuses a user or group name that the shadow tools would read as an
/// option, or that cannot be a line of `/etc/passwd` or `/etc/group`.
pub(super) fn account_name(kind: &str, name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && !name.chars().all(|c| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{name:?} is not a valid {kind} name (letters, digits, `.`, `_` and `-`, at most \
             32, not starting with `-` nor all digits); fix the {kind} resource"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::user::testhost::TestHost;
    use crate::resources::{RunState, converge};

    fn spec(name: &str) -> GroupSpec {
        GroupSpec {
            name: name.to_owned(),
            state: Presence::Present,
            gid: None,
            system: false,
        }
    }

    fn run(
        sys: &TestHost,
        check: bool,
        state: &mut RunState,
        spec: &GroupSpec,
    ) -> Result<Vec<String>, Error> {
        let mut ctx = Ctx {
            sys,
            check,
            want_diff: false,
            sensitive: false,
            run: state,
        };
        converge(spec, &mut ctx).map(|o| o.changes)
    }

    #[test]
    fn creates_a_missing_group_then_changes_nothing() {
        let sys = TestHost::fresh();
        let mut state = RunState::default();
        assert_eq!(
            run(&sys, false, &mut state, &spec("racines")).unwrap(),
            vec!["create group racines"]
        );
        assert_eq!(sys.commands(), vec!["groupadd racines"]);
        assert!(state.planned.contains("group:racines"));

        let sys = TestHost::with_users();
        assert_eq!(
            run(&sys, false, &mut RunState::default(), &spec("racines")).unwrap(),
            Vec::<String>::new()
        );
        assert!(sys.commands().is_empty());
    }

    #[test]
    fn system_group_with_a_gid() {
        let sys = TestHost::fresh();
        let spec = GroupSpec {
            system: true,
            gid: Some(997),
            ..spec("clou-svc")
        };
        assert_eq!(
            run(&sys, false, &mut RunState::default(), &spec).unwrap(),
            vec!["create group clou-svc (system, gid 997)"]
        );
        assert_eq!(sys.commands(), vec!["groupadd --system --gid 997 clou-svc"]);
    }

    #[test]
    fn gid_of_an_existing_group_is_left_alone() {
        let sys = TestHost::with_users();
        let spec = GroupSpec {
            gid: Some(4242),
            ..spec("racines")
        };
        assert_eq!(
            run(&sys, false, &mut RunState::default(), &spec).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn gid_taken_by_another_group_is_refused() {
        let sys = TestHost::fresh();
        let spec = GroupSpec {
            gid: Some(27),
            ..spec("racines")
        };
        let err = run(&sys, false, &mut RunState::default(), &spec).unwrap_err();
        assert!(
            err.to_string().contains("already belongs to group sudo"),
            "{err}"
        );
        assert!(sys.commands().is_empty());
    }

    #[test]
    fn absent_removes_the_group() {
        let sys = TestHost::with_users();
        let spec = GroupSpec {
            state: Presence::Absent,
            ..spec("racines")
        };
        assert_eq!(
            run(&sys, false, &mut RunState::default(), &spec).unwrap(),
            vec!["remove group racines (gid 1000)"]
        );
        assert_eq!(sys.commands(), vec!["groupdel racines"]);
        let sys = TestHost::fresh();
        assert_eq!(
            run(&sys, false, &mut RunState::default(), &spec).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn check_mode_plans_the_group_and_runs_nothing() {
        let sys = TestHost::fresh();
        let mut state = RunState::default();
        assert_eq!(
            run(&sys, true, &mut state, &spec("racines")).unwrap(),
            vec!["create group racines"]
        );
        assert!(sys.commands().is_empty());
        assert!(state.planned.contains("group:racines"));
    }

    #[test]
    fn names_groupadd_would_misread_are_refused() {
        for name in ["", "-r", "a:b", "a b", "1000", "a,b", "x/y"] {
            let sys = TestHost::fresh();
            let result = run(&sys, false, &mut RunState::default(), &spec(name));
            assert!(matches!(result, Err(Error::Invalid(_))), "{name:?}");
            assert!(sys.commands().is_empty());
        }
    }
}
