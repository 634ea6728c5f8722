//! limpet-image
