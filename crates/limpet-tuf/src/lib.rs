//! The Update Framework (specification 1.0): metadata, a static repository writer and the client workflow of section 5.
