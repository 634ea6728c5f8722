//! A global allocator that counts the bytes the program holds and the peak since a mark.
//!
//! A memory test installs it in its own test binary, with one test in that binary so that
//! nothing else allocates meanwhile:
//!
//! ```ignore
//! #[global_allocator]
//! static HEAP: limpet_heap_meter::Meter = limpet_heap_meter::Meter::new();
//!
//! let mark = HEAP.mark();
//! apply_the_update();
//! let peak = HEAP.peak_since(mark);
//! ```
//!
//! It sees Rust's allocations only: libraries that call `malloc` themselves (libzstd) are
//! accounted for by the test, from their own size functions.

#![warn(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counted.
#[derive(Debug)]
pub struct Meter {
    current: AtomicUsize,
    peak: AtomicUsize,
}

impl Meter {
    /// A meter at zero.
    pub const fn new() -> Self {
        Meter {
            current: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Bytes held now; the peak restarts from here.
    pub fn mark(&self) -> usize {
        let now = self.current.load(Ordering::SeqCst);
        self.peak.store(now, Ordering::SeqCst);
        now
    }

    /// The highest number of bytes held since `mark`, above what was held at it.
    pub fn peak_since(&self, mark: usize) -> usize {
        self.peak.load(Ordering::SeqCst).saturating_sub(mark)
    }

    fn grew(&self, n: usize) {
        let now = self.current.fetch_add(n, Ordering::SeqCst) + n;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    fn shrank(&self, n: usize) {
        self.current.fetch_sub(n, Ordering::SeqCst);
    }
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are
// only bookkeeping.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.grew(layout.size());
        // SAFETY: same contract as ours, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.grew(layout.size());
        // SAFETY: same contract as ours, forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.shrank(layout.size());
        // SAFETY: same contract as ours, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            self.grew(new_size - layout.size());
        } else {
            self.shrank(layout.size() - new_size);
        }
        // SAFETY: same contract as ours, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
