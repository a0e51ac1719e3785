//! Integration tests of the `rbuild` binary: one binary, one module per area.

mod bake;
mod build;
mod cache;
mod chroot;
mod cli;
mod contexts;
mod correctness;
mod crash;
mod interop;
mod isolation;
mod layers;
mod parse;
mod platforms;
mod registry;
mod registry_safety;
mod registry_server;
mod run;
mod solve;
mod store;
mod support;
