//! Privacy: where DP-SGD's noise keys come from. (Accountants, the sampler and the ledger follow.)

pub mod noise;
