//! The data path of the real `portwatch.sys` calls only what it must: the
//! send and receive handlers (found by the imports they forward with) reach
//! the port table's read lock, NdisGetDataBuffer and the forwarding
//! functions, and nothing else.

use portwatch_bench::artifacts::Artifact;
use portwatch_bench::handlers::{DataPath, RECEIVE, RETURN, SEND, SEND_COMPLETE};
use portwatch_bench::pe::Image;

fn driver() -> Image {
    Image::open(&Artifact::Driver.path()).expect("read portwatch.dll")
}

fn check(path: &DataPath) {
    println!(
        "{} at {:#x}: {} functions, {} instructions",
        path.handler.name,
        path.entry,
        path.graph.functions.len(),
        path.graph.len()
    );
    println!("  imports: {:?}", path.graph.imports());
    println!("  panic call sites: {:x?}", path.panic_sites());
    for w in path.shared_writes() {
        println!("  write {w}");
    }
    assert!(
        path.graph.unknowns().is_empty(),
        "{}: indirect calls or jumps: {:?}",
        path.handler.name,
        path.graph.unknowns()
    );
    assert!(path.unexpected_imports().is_empty(), "{} reaches {:?}", path.handler.name, path.unexpected_imports());
    assert!(path.missing_imports().is_empty(), "{} never reaches {:?}", path.handler.name, path.missing_imports());
}

#[test]
fn send_handler_calls_only_the_expected_imports() {
    check(&DataPath::of(&driver(), SEND).expect("find the send handler"));
}

#[test]
fn receive_handler_calls_only_the_expected_imports() {
    check(&DataPath::of(&driver(), RECEIVE).expect("find the receive handler"));
}

#[test]
fn completion_handlers_call_only_the_expected_imports() {
    check(&DataPath::of(&driver(), SEND_COMPLETE).expect("find the send-complete handler"));
    check(&DataPath::of(&driver(), RETURN).expect("find the return handler"));
}
