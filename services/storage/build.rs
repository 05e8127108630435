//! Compiles the storage service's protobuf definitions with the vendored `protoc`, so a
//! fresh machine builds without a system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../../proto/switchboard/v1/storage.proto";
    println!("cargo:rerun-if-changed={proto}");
    // sqlx::migrate! embeds the migrations when the crate compiles; rebuild it when they
    // change (a new or edited file), or a stale copy would be applied.
    println!("cargo:rerun-if-changed=migrations");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(config, &[proto], &["../../proto"])?;
    Ok(())
}
