//! Generates the gRPC code for `proto/augur/v1` and the descriptor set served by reflection.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure().file_descriptor_set_path(out.join("augur_descriptor.bin")).compile_protos(
        &[
            "proto/augur/v1/prediction.proto",
            "proto/augur/v1/admin.proto",
            "proto/augur/v1/samples.proto",
            "proto/augur/v1/features.proto",
        ],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
