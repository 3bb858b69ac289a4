//! The run report (written by a helper).
