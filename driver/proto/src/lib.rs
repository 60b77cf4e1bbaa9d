//! proto (being written).
#![no_std]
