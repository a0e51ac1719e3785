//! One module per route family.

pub(crate) mod health;
