//! OCI and Docker media types used by Spack build caches.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Manifest media types (image manifests, not indexes).
pub const MANIFESTS: [&str; 2] = [OCI_MANIFEST, DOCKER_MANIFEST];
/// Index media types.
pub const INDEXES: [&str; 2] = [OCI_INDEX, DOCKER_MANIFEST_LIST];

/// The `Accept` header Spack sends for manifests: manifest types first, then index types.
pub fn accept_all() -> String {
    [
        OCI_MANIFEST,
        DOCKER_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST_LIST,
    ]
    .join(", ")
}

pub fn is_manifest(media_type: &str) -> bool {
    MANIFESTS.contains(&media_type)
}

pub fn is_index(media_type: &str) -> bool {
    INDEXES.contains(&media_type)
}
