//! The browser app. Not built yet (issue 6); it will unpack results with `shared::cpio`.
#![forbid(unsafe_code)]
