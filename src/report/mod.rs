//! Everything that turns events and plans into text for people or machines.

pub mod plan;
