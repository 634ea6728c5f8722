//! Content-defined chunk store: a chunk index per payload and a bounded-memory assembler that reuses the running slot's chunks.
