//! Prepared data read through memory maps (written by a helper).
