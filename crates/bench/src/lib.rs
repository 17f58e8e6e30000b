//! # metareason-bench
//!
//! How configurations are compared. [`datasets`] loads benchmark items
//! (built-in development sets and local JSONL/CSV files); [`metrics`] holds the measures
//! (accuracy, calibration, error detection, selective prediction,
//! abstention) with bootstrap intervals.
#![deny(missing_docs)]

pub mod datasets;
pub mod grade;
pub mod manifest;
pub mod metrics;
pub mod report;
pub mod run;
