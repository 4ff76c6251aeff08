//! HL7 v2 ADT over MLLP: the way hospital interface engines already talk.
//!
//! - [`mllp`]: the TCP listener (framing 0x0B … 0x1C 0x0D) with a bounded buffer, a
//!   read timeout and a connection limit, so partial frames, bytes that are not HL7,
//!   oversized messages, slow or silent senders and many connections at once leave
//!   it standing;
//! - [`adt`]: reading an ADT message (hl7-parser does the HL7 structure, escapes and
//!   timestamps; careloop only picks the fields it needs);
//! - [`inbound`]: what each trigger does, the acknowledgement (MSA AA/AE/AR echoing
//!   MSH-10), and the same MSH-10 from the same sender acknowledged again with no
//!   second effect.

pub mod adt;
pub mod inbound;
pub mod mllp;
