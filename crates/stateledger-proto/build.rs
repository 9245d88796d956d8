//! Compiles `proto/stateledger/v1/*.proto` with protox (pure Rust, no system `protoc`).
//!
//! Without the `grpc` feature only the messages are generated (prost). With it, madsim-tonic-build
//! also generates client and server stubs, both the real ones and the simulated ones (under
//! `OUT_DIR/sim/`) that `cfg(madsim)` builds pick.

use std::path::PathBuf;

/// Points the generated server stubs (the `*_server` modules of the real, not simulated, code)
/// at `crate::server_codec::ServerCodec`, which answers an undecodable request with
/// INVALID_ARGUMENT instead of INTERNAL. madsim-tonic-build has no option for a codec path, so
/// the generated text is edited; the build fails if the expected text is not there.
fn use_server_codec(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    const TONIC: &str = "tonic_prost::ProstCodec::default()";
    const OURS: &str = "crate::server_codec::ServerCodec::default()";
    let text = std::fs::read_to_string(path)?;
    let mut out = String::with_capacity(text.len());
    let mut replaced = 0;
    // Top-level modules start with "pub mod " at the start of a line.
    let mut rest = text.as_str();
    while let Some(start) = rest.find("\npub mod ") {
        let (head, tail) = rest.split_at(start + 1);
        out.push_str(head);
        let next = tail[1..].find("\npub mod ").map_or(tail.len(), |i| i + 1);
        let (module, after) = tail.split_at(next);
        let name = module["pub mod ".len()..]
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .next()
            .unwrap_or_default();
        if name.ends_with("_server") {
            replaced += module.matches(TONIC).count();
            out.push_str(&module.replace(TONIC, OURS));
        } else {
            out.push_str(module);
        }
        rest = after;
    }
    out.push_str(rest);
    if replaced == 0 {
        return Err(format!("no server codec to replace in {}", path.display()).into());
    }
    std::fs::write(path, out)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let dir = root.join("stateledger/v1");
    let mut protos: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    protos.sort();
    // etcd's KV subset, for the comparison benchmark (gRPC stubs only with the `grpc` feature).
    let etcd = root.join("etcd/rpc.proto");
    println!("cargo:rerun-if-changed={}", etcd.display());
    protos.push(etcd);
    println!("cargo:rerun-if-changed={}", dir.display());
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }

    let fds = protox::compile(&protos, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);

    // JSON for records (record.proto only): serde derives, bytes as base64, missing fields default,
    // oneof bodies as {"code": {...}}.
    let record_messages = [
        "Record",
        "Artifact",
        "CodeState",
        "ConfigSnapshot",
        "ConfigEntry",
        "EnvironmentState",
        "Runtime",
        "FeatureFlag",
        "TimeSource",
        "Mutation",
        "KafkaRef",
        "DatabaseTx",
        "Nondeterminism",
        "RandomSeed",
        "ClockReading",
        "ExternalCall",
        "StateDigest",
        "Policy",
        "WriterGrant",
        "SignedRecord",
    ];
    let record_oneofs = [
        "Record.body",
        "Mutation.external_ref",
        "Nondeterminism.capture",
        "Policy.change",
    ];
    let bytes_fields = [
        "RandomSeed.seed",
        "ExternalCall.response",
        "WriterGrant.writer_key",
        "SignedRecord.record",
        "SignedRecord.writer_key",
        "SignedRecord.signature",
    ];
    let derive = "#[derive(serde::Serialize, serde::Deserialize)]";

    if std::env::var_os("CARGO_FEATURE_GRPC").is_some() {
        let fds_path = out.join("stateledger_descriptor.bin");
        std::fs::write(&fds_path, prost::Message::encode_to_vec(&fds))?;
        let mut builder = madsim_tonic_build::configure();
        for m in record_messages {
            let path = format!(".stateledger.v1.{m}");
            builder = builder
                .message_attribute(&path, derive)
                .message_attribute(&path, "#[serde(default, deny_unknown_fields)]");
        }
        for o in record_oneofs {
            builder = builder
                .enum_attribute(format!(".stateledger.v1.{o}"), derive)
                .enum_attribute(
                    format!(".stateledger.v1.{o}"),
                    "#[serde(rename_all = \"snake_case\")]",
                );
        }
        for f in bytes_fields {
            builder = builder.field_attribute(
                format!(".stateledger.v1.{f}"),
                "#[serde(with = \"crate::base64_bytes\")]",
            );
        }
        builder
            .file_descriptor_set_path(&fds_path)
            .skip_protoc_run()
            .build_client(true)
            .build_server(true)
            .emit_rerun_if_changed(false)
            .compile_protos(&protos, &[root])?;
        for file in ["stateledger.v1.rs", "etcdserverpb.rs"] {
            use_server_codec(&out.join(file))?;
        }
    } else {
        let mut config = prost_build::Config::new();
        for m in record_messages {
            let path = format!(".stateledger.v1.{m}");
            config.message_attribute(&path, derive);
            config.message_attribute(&path, "#[serde(default, deny_unknown_fields)]");
        }
        for o in record_oneofs {
            config.enum_attribute(format!(".stateledger.v1.{o}"), derive);
            config.enum_attribute(
                format!(".stateledger.v1.{o}"),
                "#[serde(rename_all = \"snake_case\")]",
            );
        }
        for f in bytes_fields {
            config.field_attribute(
                format!(".stateledger.v1.{f}"),
                "#[serde(with = \"crate::base64_bytes\")]",
            );
        }
        config.compile_fds(fds)?;
    }
    Ok(())
}
