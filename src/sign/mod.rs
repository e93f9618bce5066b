//! Signatures in cosign's format: keys, the wire format, signing a digest in a store, and verifying one.
//! Knows stores and keys, never stages or CI hosts.

mod encrypted_key;
pub mod format;
pub mod keys;
mod pem;
pub mod signer;
pub mod verifier;

#[cfg(test)]
mod test_keys;
