//! Base images with a shell, for builds that `RUN`: no such image exists offline, so each is made here from
//! Debian's static busybox for one architecture (extracted into the tools dir by `scripts/install-test-deps.sh`):
//! one uncompressed layer holding `/bin/busybox` and `/bin/sh` linking to it.

use bytes::Bytes;
use serde_json::json;

use super::images::TestImage;
use super::tools;

/// Links made in `/bin`, each to `busybox`.
const APPLETS: &[&str] = &["sh", "cat", "echo", "ls"];

/// The busybox base image for `architecture` (`amd64`, `arm64`); the same binary always gives the same digest.
/// Push it with [`TestImage::push`].
pub fn image(architecture: &str) -> TestImage {
    let binary = tools::busybox(architecture);
    let busybox = std::fs::read(&binary)
        .unwrap_or_else(|error| panic!("reading `{}`: {error}", binary.display()));
    let mut tar = Tar::default();
    tar.directory("bin/");
    tar.file("bin/busybox", 0o755, &busybox);
    for applet in APPLETS {
        tar.symlink(&format!("bin/{applet}"), "busybox");
    }
    TestImage::with_layer(
        "linux",
        architecture,
        None,
        Bytes::from(tar.finish()),
        json!({
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
            "history": [{"created_by": "imagepipe tests: busybox-static"}]
        }),
    )
}

/// A ustar archive, enough for a layer: entries owned by root, dated 0.
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn directory(&mut self, name: &str) {
        self.entry(name, 0o755, b'5', "", 0);
    }

    fn file(&mut self, name: &str, mode: u32, contents: &[u8]) {
        self.entry(name, mode, b'0', "", contents.len());
        self.0.extend_from_slice(contents);
        let padding = (512 - contents.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0, padding));
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o777, b'2', target, 0);
    }

    fn entry(&mut self, name: &str, mode: u32, kind: u8, link: &str, size: usize) {
        let mut header = [0u8; 512];
        let mut put = |offset: usize, bytes: &[u8]| {
            header[offset..offset + bytes.len()].copy_from_slice(bytes);
        };
        assert!(name.len() < 100 && link.len() < 100, "short names only");
        put(0, name.as_bytes());
        put(100, format!("{mode:07o}\0").as_bytes());
        put(108, b"0000000\0");
        put(116, b"0000000\0");
        put(124, format!("{size:011o}\0").as_bytes());
        put(136, b"00000000000\0");
        put(148, b"        ");
        put(156, &[kind]);
        put(157, link.as_bytes());
        put(257, b"ustar\0");
        put(263, b"00");
        put(265, b"root");
        put(297, b"root");
        let checksum: u32 = header.iter().map(|&byte| u32::from(byte)).sum();
        header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
        self.0.extend_from_slice(&header);
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0, 1024));
        self.0
    }
}
