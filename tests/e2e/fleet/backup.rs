//! (filled in by the roles' authors)

use super::Test;

pub const TESTS: &[(&str, Test)] = &[];
