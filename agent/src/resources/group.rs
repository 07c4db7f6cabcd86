//! The `group` resource (placeholder: being written).

use clou_protocol::resource::GroupSpec;

use super::{Ctx, Differences, Error, Kind};

impl Kind for GroupSpec {
    type Change = String;

    fn differences(&self, _ctx: &mut Ctx<'_>) -> Result<Differences<String>, Error> {
        Err(Error::Invalid(
            "the group resource is not written yet".into(),
        ))
    }

    fn apply(&self, _ctx: &mut Ctx<'_>, _diff: &Differences<String>) -> Result<(), Error> {
        Err(Error::Invalid(
            "the group resource is not written yet".into(),
        ))
    }
}
