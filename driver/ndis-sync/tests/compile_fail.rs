//! The bugs the types rule out must not compile: each file in `tests/ui`
//! is one such bug, with the compiler's expected complaint next to it.
#![cfg(not(any(miri, loom)))]

#[test]
fn misuse_does_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
