//! # metareason-bench
//!
//! How configurations are compared. [`metrics`] holds the measures
//! (accuracy, calibration, error detection, selective prediction,
//! abstention) with bootstrap intervals.
#![deny(missing_docs)]

pub mod metrics;
