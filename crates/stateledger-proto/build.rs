//! Compiles `proto/stateledger/v1/*.proto` with protox (pure Rust, no system `protoc`).
//!
//! Without the `grpc` feature only the messages are generated (prost). With it, madsim-tonic-build
//! also generates client and server stubs, both the real ones and the simulated ones (under
//! `OUT_DIR/sim/`) that `cfg(madsim)` builds pick.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let dir = root.join("stateledger/v1");
    let mut protos: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    protos.sort();
    println!("cargo:rerun-if-changed={}", dir.display());
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }

    let fds = protox::compile(&protos, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);

    if std::env::var_os("CARGO_FEATURE_GRPC").is_some() {
        let fds_path = out.join("stateledger_descriptor.bin");
        std::fs::write(&fds_path, prost::Message::encode_to_vec(&fds))?;
        madsim_tonic_build::configure()
            .file_descriptor_set_path(&fds_path)
            .skip_protoc_run()
            .build_client(true)
            .build_server(true)
            .emit_rerun_if_changed(false)
            .compile_protos(&protos, &[root])?;
    } else {
        prost_build::Config::new().compile_fds(fds)?;
    }
    Ok(())
}
