//! Signatures stored as OCI 1.1 referrers, and whether a host has the referrers API.

use oci_spec::image::ImageIndex;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};

use super::{MAX_MANIFEST_BYTES, RegistryStore};
use crate::model::reference::Digest;
use crate::store::error::StoreError;
use crate::store::registry::WholeBody;
use crate::store::{Descriptor, media_type};

/// The artifact type cosign gives signatures stored as referrers.
const COSIGN_SIGNATURE_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const REFERRERS_INDEX: WholeBody = WholeBody {
    limit: MAX_MANIFEST_BYTES,
    what: "a referrers index",
};

impl RegistryStore {
    /// The referrers of a digest that are cosign signatures; `None` when the registry has no referrers API.
    pub(super) async fn signature_referrers(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<Descriptor>>, StoreError> {
        // Until the host's answer is known, one caller at a time asks: the first answer teaches the rest.
        let _probe = match self.client.has_referrers(&self.host).await {
            Some(false) => return Ok(None),
            Some(true) => None,
            None => {
                let probe = self.client.referrers_probe.lock().await;
                match self.client.has_referrers(&self.host).await {
                    Some(false) => return Ok(None),
                    Some(true) => None,
                    None => Some(probe),
                }
            }
        };
        let mut request = self.request(
            Method::GET,
            format!("/v2/{repository}/referrers/{digest}"),
            repository,
            false,
        );
        request
            .headers
            .insert(ACCEPT, HeaderValue::from_static(media_type::OCI_INDEX));
        request.whole = Some(REFERRERS_INDEX);
        let reply = self.client.send(&request).await?;
        let is_index = reply
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with(media_type::OCI_INDEX));
        if reply.status() != StatusCode::OK || !is_index {
            // Registries without the API answer 404 (distribution 2.8) or something that is not an index.
            self.client.remember_referrers(&self.host, false).await;
            return Ok(None);
        }
        self.client.remember_referrers(&self.host, true).await;
        let body = reply
            .bytes(REFERRERS_INDEX.limit, REFERRERS_INDEX.what)
            .await?;
        let index: ImageIndex =
            serde_json::from_slice(&body).map_err(|source| StoreError::InvalidManifest {
                store: self.host.clone(),
                reference: format!("{repository} referrers of {digest}"),
                source,
            })?;
        Ok(Some(
            index
                .manifests()
                .iter()
                .filter(|descriptor| {
                    descriptor
                        .artifact_type()
                        .as_ref()
                        .is_some_and(|artifact| artifact.to_string() == COSIGN_SIGNATURE_ARTIFACT)
                })
                .cloned()
                .collect(),
        ))
    }
}
