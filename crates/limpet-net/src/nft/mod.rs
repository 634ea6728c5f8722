//! nf_tables over netlink, hand-encoded: framing ([`wire`]), the kernel's numbers
//! ([`consts`]), expressions ([`expr`]), table objects ([`object`]), batches ([`batch`]) and
//! replies ([`reply`]). Pure: bytes in, bytes out; the socket lives in the crate's private
//! `sys` module.

pub mod batch;
#[allow(missing_docs)]
pub mod consts;
pub mod expr;
pub mod object;
pub mod reply;
pub mod wire;
