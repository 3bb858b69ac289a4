//! Evaluation metrics (written by a helper).
