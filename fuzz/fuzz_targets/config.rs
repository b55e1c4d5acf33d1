//! The config loader on arbitrary files: errors with positions, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn workdir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

fuzz_target!(|data: &[u8]| {
    let path = workdir().path().join("gateway.toml");
    std::fs::write(&path, data).expect("write");
    let env = [(
        "POSTERN_GATEWAY__THREADS".to_string(),
        "3".to_string(),
    )];
    if let Err(diags) = postern_config::load(&path, &env) {
        // Every error says where it is.
        let _ = diags.to_string();
    }
});
