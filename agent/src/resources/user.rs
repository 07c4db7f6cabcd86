//! The `user` resource (placeholder: being written).

use clou_protocol::resource::UserSpec;

use super::{Ctx, Differences, Error, Kind};

impl Kind for UserSpec {
    type Change = String;

    fn differences(&self, _ctx: &mut Ctx<'_>) -> Result<Differences<String>, Error> {
        Err(Error::Invalid(
            "the user resource is not written yet".into(),
        ))
    }

    fn apply(&self, _ctx: &mut Ctx<'_>, _diff: &Differences<String>) -> Result<(), Error> {
        Err(Error::Invalid(
            "the user resource is not written yet".into(),
        ))
    }
}
