//! limpet-build
