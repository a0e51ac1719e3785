//! Integration tests of the `rbuild` binary: one binary, one module per area.

mod parse;
mod support;
