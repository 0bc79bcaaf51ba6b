//! The host side of a job: "run this input in this image with these limits".
//!
//! Not built yet (issue 3): the VM pool, the QEMU command line and the image store land here.
#![forbid(unsafe_code)]
