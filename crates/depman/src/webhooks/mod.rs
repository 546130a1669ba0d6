//! Webhooks: each follows its owner's events with a cursor of its own, and
//! the worker role delivers them one at a time, in order, signed as the
//! Standard Webhooks specification says, to addresses checked at every
//! delivery.

pub mod delivery;
pub mod destination;
pub mod secret;
pub mod signature;
