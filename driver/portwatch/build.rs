//! Build script of the driver.
//!
//! On Linux (the default) it does nothing: the link settings of the
//! cross-built `portwatch.sys` live in `.cargo/config.toml`. With the `wdk`
//! feature (Windows host with the WDK) it hands over to windows-drivers-rs,
//! which emits the WDK library paths and kernel-mode linker arguments.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "wdk")]
    wdk_build::configure_wdk_binary_build()?;
    Ok(())
}
