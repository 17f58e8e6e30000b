//! # metareason-bench
//!
//! How configurations are compared. [`datasets`] loads benchmark items
//! (built-in development sets and local JSONL/CSV files); [`metrics`] holds the measures
//! (accuracy, calibration, error detection, selective prediction,
//! abstention) with bootstrap intervals; [`run`] runs items resumably;
//! [`manifest`] records what produced a run; [`replay`] replays stopping
//! and voting rules over the replies a run recorded; [`paired`] compares
//! two runs item by item (exact McNemar test, paired bootstrap); [`probe`]
//! fits linear probes (the harm classifier among them) on labelled learn
//! halves.
#![deny(missing_docs)]

pub mod datasets;
pub mod grade;
pub mod manifest;
pub mod metrics;
pub mod paired;
pub mod probe;
pub mod replay;
pub mod report;
pub mod run;
pub mod safety;
