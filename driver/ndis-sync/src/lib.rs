//! ndis-sync (being written).
#![cfg_attr(target_os = "windows", no_std)]
