//! The `package` resource (placeholder: being written).

use std::fmt;

use clou_protocol::resource::PackageSpec;

use super::{Ctx, Differences, Error, Kind};

/// Every package resource of a plan, converged in one apt transaction.
#[derive(Debug, Clone)]
pub struct Batch {
    pub specs: Vec<PackageSpec>,
}

impl Batch {
    pub fn new(specs: Vec<PackageSpec>) -> Batch {
        Batch { specs }
    }
}

/// One package to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The package it is about (the engine reports it under that resource).
    pub name: String,
    pub what: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl Kind for Batch {
    type Change = Change;

    fn differences(&self, _ctx: &mut Ctx<'_>) -> Result<Differences<Change>, Error> {
        Err(Error::Invalid(
            "the package resource is not written yet".into(),
        ))
    }

    fn apply(&self, _ctx: &mut Ctx<'_>, _diff: &Differences<Change>) -> Result<(), Error> {
        Err(Error::Invalid(
            "the package resource is not written yet".into(),
        ))
    }
}
