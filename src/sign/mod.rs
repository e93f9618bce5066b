//! Signatures in cosign's format: keys, the wire format, signing a digest in a store, and verifying one.
//! Knows stores and keys, never stages or CI hosts.

pub mod format;
pub mod keys;
pub mod signer;
pub mod verifier;
