//! hako-engine (being written).
