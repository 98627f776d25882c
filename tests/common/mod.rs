//! Helpers shared by several test files (each declares `mod common;`).
#![allow(dead_code, unreachable_pub)]

pub mod kafka;
