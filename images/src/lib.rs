//! Container images: a container's root filesystem as one read-only file (squashfs or erofs),
//! stored by content digest, ready to attach to a VM or to mount for the sandbox. The executor
//! runs jobs; this crate makes and finds what they run in.
//!
//! 1. [`build::build`] turns a [`build::Recipe`] into a root filesystem directory: Debian
//!    packages installed with mmdebstrap, the built-in busybox recipe, or an OCI image archive
//!    (`docker save`, `skopeo copy ... oci-archive:`) flattened by [`oci::import`].
//! 2. The builder adds what every job needs (the job user, `/input`, `/output`, `/tmp`) and
//!    packs the directory with `mksquashfs` into one file.
//! 3. [`ImageStore`] keeps that file under its sha256 and points a ref (`refs/<id>.json`) at it,
//!    atomically, so a half-built image is never visible.
//! 4. [`ImageStore::resolve`] turns a container id (or an image file's path) into an
//!    [`ImageInfo`]: path, format, digest, and the image's own environment.
//!
//! Each step has its error type: [`ImageError`] (the store), [`build::BuildError`],
//! [`oci::OciError`]. An OCI archive is untrusted input: [`oci`] documents what it refuses.
#![forbid(unsafe_code)]

pub mod build;
pub mod oci;
pub mod store;

pub use store::{ImageError, ImageFormat, ImageInfo, ImageStore, Ref};
