//! One module per route family.

pub(crate) mod build;
pub(crate) mod builds;
pub(crate) mod health;
pub(crate) mod images;
pub(crate) mod web;
