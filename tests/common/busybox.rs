//! Base images with a shell, for builds that `RUN`: no such image exists offline, so each is made here from
//! Debian's static busybox for one architecture (extracted into the tools dir by `scripts/install-test-deps.sh`):
//! one uncompressed layer holding `/bin/busybox` and `/bin/sh` linking to it, pushed by digest.

use bytes::Bytes;
use imagepipe::model::reference::Digest;
use imagepipe::store::{ManifestReference, Store, StoredManifest, media_type};
use serde_json::json;

use super::tools;

const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// Links made in `/bin`, each to `busybox`.
const APPLETS: &[&str] = &["sh", "cat", "echo", "ls"];

/// A busybox base image for one architecture.
pub struct BusyboxImage {
    pub architecture: String,
    layer: Bytes,
    config: Bytes,
    pub manifest: StoredManifest,
}

impl BusyboxImage {
    /// The image for `architecture` (`amd64`, `arm64`); the same binary always gives the same digest.
    pub fn new(architecture: &str) -> Self {
        let binary = tools::busybox(architecture);
        let busybox = std::fs::read(&binary)
            .unwrap_or_else(|error| panic!("reading `{}`: {error}", binary.display()));
        let mut tar = Tar::default();
        tar.directory("bin/");
        tar.file("bin/busybox", 0o755, &busybox);
        for applet in APPLETS {
            tar.symlink(&format!("bin/{applet}"), "busybox");
        }
        let layer = Bytes::from(tar.finish());
        let config = json!({
            "architecture": architecture,
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).as_str()]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "imagepipe tests: busybox-static"}]
        });
        let config = Bytes::from(serde_json::to_vec(&config).expect("serializes"));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": Digest::of(&config).as_str(), "size": config.len()},
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": Digest::of(&layer).as_str(), "size": layer.len()}]
        });
        Self {
            architecture: architecture.to_owned(),
            layer,
            config,
            manifest: StoredManifest {
                media_type: media_type::OCI_MANIFEST.to_owned(),
                bytes: Bytes::from(serde_json::to_vec(&manifest).expect("serializes")),
            },
        }
    }

    pub fn digest(&self) -> Digest {
        self.manifest.digest()
    }

    /// Pushes layer, config and manifest (by digest) to `repository` of `store`.
    pub async fn push(&self, store: &impl Store, repository: &str) {
        for blob in [&self.layer, &self.config] {
            store
                .put_blob(repository, &Digest::of(blob), blob.clone())
                .await
                .expect("busybox blob pushed");
        }
        store
            .put_manifest(
                repository,
                ManifestReference::Digest(&self.digest()),
                &self.manifest,
            )
            .await
            .expect("busybox manifest pushed");
    }
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
