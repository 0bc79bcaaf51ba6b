//! The HTTP API's wire types, one module per version. A breaking change gets a new module; the
//! server keeps serving the old one until no client uses it.

pub mod live;
pub mod v1;
