//! Build-cache tarballs byte-identical to Spack v1.1.0's (see the tarball issue).
//! Placeholder: filled in by the tarball work.
