//! Regenerates `proto/src/gen/lakehouse.v1.rs` from `proto/lakehouse.proto`.
//!
//! Run from anywhere in the workspace: `cargo run -p lakehouse-proto-gen`. Needs `protoc` on the
//! `PATH` (Debian: `protobuf-compiler`). With `--check` it writes to a temporary directory and
//! exits non-zero when the checked-in file differs.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let check = std::env::args().any(|a| a == "--check");
    let proto_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let checked_in = proto_dir.join("src").join("gen");
    let out_dir: PathBuf = if check {
        std::env::temp_dir().join(format!("lakehouse-proto-gen-{}", std::process::id()))
    } else {
        checked_in.clone()
    };
    std::fs::create_dir_all(&out_dir)?;
    prost_build::Config::new()
        .out_dir(&out_dir)
        .enable_type_names()
        .type_name_domain(["."], "type.googleapis.com")
        .compile_protos(
            &[proto_dir.join("lakehouse.proto")],
            std::slice::from_ref(&proto_dir),
        )?;
    if check {
        let name = "lakehouse.v1.rs";
        let fresh = std::fs::read_to_string(out_dir.join(name))?;
        let current = std::fs::read_to_string(checked_in.join(name))?;
        std::fs::remove_dir_all(&out_dir)?;
        if fresh != current {
            eprintln!("proto/src/gen/{name} is stale: run `cargo run -p lakehouse-proto-gen`");
            std::process::exit(1);
        }
        println!("proto/src/gen/{name} is up to date");
    }
    Ok(())
}
